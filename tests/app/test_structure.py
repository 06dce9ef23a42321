"""The package's layering, checked by reading its source (nothing is imported or run).

* No import cycle inside ``app/``, counting imports inside functions as well (a lazy
  import hides a cycle from Python, not from the reader).
* ``app/services/`` knows nothing about HTTP: no FastAPI or Starlette import; the routes
  (``app/api/``) turn domain errors into HTTP answers.
"""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
HTTP_PACKAGES = ("fastapi", "starlette", "sse_starlette")


def _module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(APP.rglob("*.py"))}


def _imports(name: str) -> list[tuple[str, int]]:
    """Every module ``name`` imports, absolute, with the line of the import."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from package import module` imports the module.
            found += [
                (f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base, node.lineno)
                for alias in node.names
            ]
    return found


def _graph() -> dict[str, set[str]]:
    return {
        name: {target for target, _ in _imports(name) if target in MODULES and target != name}
        for name in MODULES
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One example path for each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_module_walk_sees_the_package() -> None:
    graph = _graph()
    assert "app.services.chat" in graph
    assert "app.services.passages" in graph["app.services.chat"]


def test_no_import_cycle_in_app() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "modules that import each other (directly or around a loop): " + (
        "; ".join(" <-> ".join(group) for group in cycles)
    )


def test_services_do_not_import_http_frameworks() -> None:
    offenders = [
        f"{MODULES[name].relative_to(APP.parent)}:{line} imports {target}"
        for name in MODULES
        if name.startswith("app.services.")
        for target, line in _imports(name)
        if target.split(".")[0] in HTTP_PACKAGES
    ]
    assert not offenders, (
        "services must not know HTTP (raise a domain error; the route maps it): "
        + "; ".join(offenders)
    )
