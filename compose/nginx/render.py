"""Render roles/nginx/templates for the nginx container, with roles/nginx/defaults.

The same templates and values as on the VPS (headers, TLS, SSE unbuffered, body and
rate limits); only what a container changes is set here: the upstream is the `app`
service (or KT_APP_HOST, one app container: see switch-app.sh), the web root is the
`current` release in the web volume, the access log goes to stdout.
KT_NGINX_<NAME>=value overrides nginx_<name> (e.g. KT_NGINX_CLIENT_MAX_BODY_SIZE_MB=520
next to MAX_UPLOAD_MB). Writes every template's output into the output folder, under the
name without ".j2".
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import jinja2
import yaml


def values(defaults: Path, domain: str, app_host: str, app_port: int) -> dict:
    found = yaml.safe_load(defaults.read_text())
    for name, value in os.environ.items():
        if name.startswith("KT_NGINX_"):
            found["nginx_" + name.removeprefix("KT_NGINX_").lower()] = yaml.safe_load(value)
    found.update(
        nginx_domain=domain,
        nginx_access_log="/dev/stdout",
        nginx_app_initial_port=app_port,
        nginx_upstream_hosts=[app_host],
        nginx_upstream_web_host="nginx",
        hostvars={app_host: {}},
        # compose/app/publish-frontend.sh switches this link from release to release.
        nginx_web_root="/var/www/knowledgetree/current",
        ansible_managed="Rendered by compose/nginx/render.py from roles/nginx/templates",
    )
    return found


def environment() -> jinja2.Environment:
    # Ansible's template settings: trim_blocks, StrictUndefined (a missing value fails),
    # no autoescape (nginx configuration, not HTML).
    env = jinja2.Environment(  # noqa: S701
        trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined
    )
    env.filters["regex_replace"] = lambda value, pattern, replacement="": re.sub(
        pattern, replacement, value
    )
    return env


def resolve(env: jinja2.Environment, found: dict) -> dict:
    """Template the defaults that refer to other variables, as Ansible does lazily."""
    for _ in range(5):
        pending = {k: v for k, v in found.items() if isinstance(v, str) and "{{" in v}
        if not pending:
            return found
        for name, value in pending.items():
            found[name] = env.from_string(value).render(found)
    raise SystemExit(f"render.py: unresolved defaults: {sorted(pending)}")


def main() -> None:
    source, output = Path(sys.argv[1]), Path(sys.argv[2])
    domain = os.environ.get("KT_DOMAIN", "")
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", domain):
        raise SystemExit(f"render.py: KT_DOMAIN is not a domain name: {domain!r}")
    app_host = os.environ.get("KT_APP_HOST", "app")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", app_host):
        raise SystemExit(f"render.py: KT_APP_HOST is not a host name: {app_host!r}")
    env = environment()
    found = resolve(env, values(source / "defaults.yml", domain, app_host, 8000))
    output.mkdir(parents=True, exist_ok=True)
    for template in sorted((source / "templates").glob("*.j2")):
        text = env.from_string(template.read_text()).render(found)
        (output / template.name.removesuffix(".j2")).write_text(text)


if __name__ == "__main__":
    main()
