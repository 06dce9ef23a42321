"""Build the retrieval evaluation corpus from Debian's ``git-doc`` package.

    .venv/bin/python bench/eval/build_corpus.py [--out bench/eval/corpus]

Real third-party documentation nobody on this team wrote: the Git manual pages and
guides as Debian ships them (HTML made by asciidoc). Every page of 600 to 10,000 words
is taken (122 pages, about 275k words) and saved in the format a user might upload,
converted the way a user would: most stay HTML, the rest become Markdown and plain text
(pandoc), DOCX (pandoc) and PDF (weasyprint, "print to PDF"). Each file is named after
its page (``git-push.md``), which is how ``questions.yaml`` names the right document.

The tools are Debian packages; missing ones are installed with apt-get (root). The
corpus is built data: it is not committed (``bench/eval/.gitignore``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path("/usr/share/doc/git-doc")
PACKAGES = {"git-doc": SOURCE, "pandoc": Path("/usr/bin/pandoc"),
            "weasyprint": Path("/usr/bin/weasyprint")}  # fmt: skip
MIN_WORDS, MAX_WORDS = 600, 10_000
# Formats by position in the sorted page list: 4 of 10 stay HTML, 2 Markdown, 2 text,
# 1 DOCX, 1 PDF.
FORMATS = ["html", "md", "txt", "html", "docx", "html", "md", "pdf", "html", "txt"]
DEFAULT_OUT = Path(__file__).resolve().parent / "corpus"


def ensure_packages() -> None:
    missing = [name for name, path in PACKAGES.items() if not path.exists()]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True
        )


def pages() -> list[Path]:
    """The HTML pages whose plain-text twin has MIN_WORDS..MAX_WORDS words, sorted."""
    chosen = []
    for html in sorted(SOURCE.glob("*.html")):
        twin = html.with_suffix(".txt")
        if (
            twin.is_file()
            and MIN_WORDS <= len(twin.read_text(errors="replace").split()) <= MAX_WORDS
        ):
            chosen.append(html)
    return chosen


def convert(html: Path, fmt: str, out: Path) -> Path:
    target = out / f"{html.stem}.{fmt}"
    if fmt == "html":
        shutil.copyfile(html, target)
    elif fmt == "pdf":
        subprocess.run(
            ["weasyprint", "--quiet", str(html), str(target)], check=True, capture_output=True
        )
    else:
        writer = {"md": "gfm", "txt": "plain", "docx": "docx"}[fmt]
        subprocess.run(
            [
                "pandoc",
                "--from=html",
                f"--to={writer}",
                "--wrap=none",
                "-o",
                str(target),
                str(html),
            ],
            check=True,
        )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    options = parser.parse_args()
    ensure_packages()
    options.out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for position, html in enumerate(pages()):
        fmt = FORMATS[position % len(FORMATS)]
        convert(html, fmt, options.out)
        counts[fmt] = counts.get(fmt, 0) + 1
    summary = ", ".join(f"{count} {fmt}" for fmt, count in sorted(counts.items()))
    print(f"{sum(counts.values())} documents in {options.out} ({summary})")


if __name__ == "__main__":
    main()
