"""Turn an uploaded file into plain-text sections that keep their place in the source.

Two stages, for two kinds of failure:

* ``detect_type(path, filename)`` runs while the upload request is still open. It looks
  at the bytes (magic numbers, zip directory, HTML sniffing, text vs binary) and only
  then at the name, so an executable renamed ``report.pdf`` is refused with a 4xx
  (``UnsupportedFile``) before anything is stored.
* ``parse_file(path, kind)`` runs in the background worker. A file that passes the
  sniffing but cannot be read (damaged PDF, password-protected PDF, DOCX zip bomb, no
  extractable text, undecodable text) raises ``ParseError`` whose message is shown to
  the user as the reason the document ``failed``.

Every parser returns ``Section``s: a run of text plus where it came from (PDF page
number, heading path such as ``"Install > On Debian"`` for Markdown/HTML/DOCX), so each
chunk cut from it can be cited precisely.
"""

from __future__ import annotations

import enum
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# How much of the file the sniffers look at. Enough for any magic number, an HTML
# prologue, and a fair text/binary verdict.
_SNIFF_BYTES = 8192

# DOCX guards, checked from the zip directory before python-docx inflates anything.
MAX_DOCX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024
MAX_DOCX_COMPRESSION_RATIO = 200  # real Word XML compresses ~10-30x; bombs 1000x+
MAX_DOCX_MEMBERS = 10_000

HEADING_SEPARATOR = " > "


class DocumentKind(enum.StrEnum):
    PDF = "pdf"
    DOCX = "docx"
    MARKDOWN = "markdown"
    HTML = "html"
    TEXT = "text"


# The content type stored for each kind (what a download of the original would send).
CONTENT_TYPES = {
    DocumentKind.PDF: "application/pdf",
    DocumentKind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    DocumentKind.MARKDOWN: "text/markdown",
    DocumentKind.HTML: "text/html",
    DocumentKind.TEXT: "text/plain",
}

_EXTENSIONS = {
    ".pdf": DocumentKind.PDF,
    ".docx": DocumentKind.DOCX,
    ".md": DocumentKind.MARKDOWN,
    ".markdown": DocumentKind.MARKDOWN,
    ".html": DocumentKind.HTML,
    ".htm": DocumentKind.HTML,
    ".xhtml": DocumentKind.HTML,
    ".txt": DocumentKind.TEXT,
    ".text": DocumentKind.TEXT,
    ".rst": DocumentKind.TEXT,
    ".csv": DocumentKind.TEXT,
    ".log": DocumentKind.TEXT,
}
SUPPORTED_EXTENSIONS = tuple(sorted(_EXTENSIONS))

# Magic numbers of things people upload by mistake, to name them in the refusal.
_KNOWN_BINARIES: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "a Linux executable"),
    (b"\xcf\xfa\xed\xfe", "a macOS executable"),
    (b"\xca\xfe\xba\xbe", "a macOS/Java binary"),
    (b"#!", "a script"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0", "an old Office (.doc/.xls) file"),
)
_HTML_SNIFF = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body|<\?xml[^>]*>\s*<html)", re.I)
_UTF_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


class UnsupportedFile(ValueError):
    """The upload is not a file we accept (answered with 415 before anything is stored)."""


class ParseError(ValueError):
    """The file has an accepted type but its text cannot be extracted; message for users."""


@dataclass
class Section:
    """A run of text from one place of the source document."""

    text: str
    page: int | None = None  # 1-based PDF page
    heading: str | None = None  # heading path, outermost first, joined by " > "


@dataclass
class ParsedDocument:
    kind: DocumentKind
    sections: list[Section] = field(default_factory=list)
    page_count: int | None = None


# --------------------------------------------------------------------------------------
# type detection


def detect_type(path: Path, filename: str) -> DocumentKind:
    """Decide what ``path`` really is; raise ``UnsupportedFile`` (with the reason) if unusable.

    Content decides; the extension only picks between text flavours (Markdown vs plain
    text) and must not contradict the content (a ``.pdf`` that is not a PDF is refused).
    """
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head:
        raise UnsupportedFile("The file is empty.")
    claimed = _EXTENSIONS.get(Path(filename).suffix.lower())
    actual = _sniff(path, head)

    if actual is None:
        what = _describe_binary(head)
        if claimed is not None:
            raise UnsupportedFile(
                f"'{filename}' is named like a {claimed.value.upper()} file but its content is "
                f"{what}. Supported: PDF, DOCX, Markdown, HTML and plain text."
            )
        raise UnsupportedFile(
            f"'{filename}' is {what}, which is not supported. "
            "Supported: PDF, DOCX, Markdown, HTML and plain text."
        )
    if actual in (DocumentKind.PDF, DocumentKind.DOCX):
        if claimed not in (None, actual) and claimed is not DocumentKind.TEXT:
            raise UnsupportedFile(
                f"'{filename}' is named like a {claimed.value.upper()} file but is a "
                f"{actual.value.upper()} file; rename it and upload again."
            )
        return actual
    # Text content: the extension may refine it, but may not claim a binary format.
    if claimed in (DocumentKind.PDF, DocumentKind.DOCX):
        raise UnsupportedFile(
            f"'{filename}' is named like a {claimed.value.upper()} file but contains plain "
            "text; rename it (e.g. .txt) and upload again."
        )
    if actual is DocumentKind.HTML:
        return DocumentKind.HTML
    if claimed is None and Path(filename).suffix:
        raise UnsupportedFile(
            f"'{filename}' has an unsupported extension. Supported: "
            + ", ".join(SUPPORTED_EXTENSIONS)
            + "."
        )
    return claimed or DocumentKind.TEXT


def _sniff(path: Path, head: bytes) -> DocumentKind | None:
    """The kind the bytes say, or None for a binary we do not take."""
    if head.lstrip(b"\r\n\t \x00")[:5] == b"%PDF-":
        return DocumentKind.PDF
    if head.startswith(b"PK\x03\x04"):
        return DocumentKind.DOCX if _is_docx(path) else None
    if not _looks_like_text(head):
        return None
    if _HTML_SNIFF.match(_strip_bom(head)):
        return DocumentKind.HTML
    return DocumentKind.TEXT  # Markdown vs text is decided by the name


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _strip_bom(data: bytes) -> bytes:
    for bom in _UTF_BOMS:
        if data.startswith(bom):
            return data[len(bom) :]
    return data


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True  # UTF-16 with BOM: NUL bytes are expected
    if any(head.startswith(magic) for magic, _ in _KNOWN_BINARIES if magic != b"#!"):
        return False
    if b"\x00" in head:
        return False
    # Control characters other than whitespace/form feed/escape are rare in text.
    controls = sum(1 for byte in head if byte < 32 and byte not in b"\t\n\r\f\x1b")
    return controls <= len(head) // 100


def _describe_binary(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive that is not a Word document"
    for magic, description in _KNOWN_BINARIES:
        if head.startswith(magic):
            return description
    return "binary data"


# --------------------------------------------------------------------------------------
# parsing


def parse_file(path: Path, kind: DocumentKind) -> ParsedDocument:
    """Extract sections from ``path``; raise ``ParseError`` with a user-facing reason."""
    parser = {
        DocumentKind.PDF: _parse_pdf,
        DocumentKind.DOCX: _parse_docx,
        DocumentKind.MARKDOWN: _parse_markdown,
        DocumentKind.HTML: _parse_html,
        DocumentKind.TEXT: _parse_text,
    }[kind]
    parsed = parser(path)
    parsed.sections = [
        Section(text=cleaned, page=s.page, heading=s.heading)
        for s in parsed.sections
        if (cleaned := _normalise_whitespace(s.text))
    ]
    if not parsed.sections:
        hint = (
            " (a scanned PDF needs OCR first, which is not supported)"
            if kind is DocumentKind.PDF
            else ""
        )
        raise ParseError(f"No extractable text was found in the document{hint}.")
    return parsed


def _normalise_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\f\v\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _parse_pdf(path: Path) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (only editing is
            # restricted); those open fine. A real password we cannot know.
            try:
                opened = reader.decrypt("")
            except (NotImplementedError, FileNotDecryptedError):
                opened = 0
            if not opened:
                raise ParseError(
                    "The PDF is password-protected. Remove the password and upload it again."
                )
        page_count = len(reader.pages)
    except ParseError:
        raise
    except FileNotDecryptedError:
        raise ParseError(
            "The PDF is password-protected. Remove the password and upload it again."
        ) from None
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, OSError) as error:
        raise ParseError(f"The PDF is damaged and cannot be read ({error}).") from None

    sections: list[Section] = []
    unreadable = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception:
            unreadable += 1
            continue
        sections.append(Section(text=text, page=number))
    if page_count and unreadable == page_count:
        raise ParseError("The PDF is damaged: none of its pages could be read.")
    return ParsedDocument(DocumentKind.PDF, sections, page_count=page_count)


def check_docx_archive(path: Path) -> None:
    """Refuse zip bombs by looking at the zip directory, before anything is inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ParseError(f"The DOCX file is damaged and cannot be read ({error}).") from None
    if len(members) > MAX_DOCX_MEMBERS:
        raise ParseError(f"The DOCX file has too many parts ({len(members)}); refused.")
    total = sum(member.file_size for member in members)
    if total > MAX_DOCX_UNCOMPRESSED_BYTES:
        raise ParseError(
            f"The DOCX file would expand to {total // (1024 * 1024)} MiB "
            f"(limit {MAX_DOCX_UNCOMPRESSED_BYTES // (1024 * 1024)} MiB); refused as a "
            "possible zip bomb."
        )
    for member in members:
        if member.compress_size and member.file_size / member.compress_size > (
            MAX_DOCX_COMPRESSION_RATIO
        ):
            raise ParseError(
                f"The DOCX part '{member.filename}' is compressed "
                f"{member.file_size // member.compress_size}:1, far beyond any real document; "
                "refused as a possible zip bomb."
            )


def _parse_docx(path: Path) -> ParsedDocument:
    import docx
    from docx.table import Table

    check_docx_archive(path)
    try:
        document = docx.Document(str(path))
    except Exception as error:
        raise ParseError(f"The DOCX file is damaged and cannot be read ({error}).") from None

    headings = _HeadingPath()
    sections: list[Section] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            sections.append(Section(text="\n\n".join(current), heading=headings.path()))
            current.clear()

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            rows = [
                " | ".join(cell.text.strip() for cell in row.cells if cell.text.strip())
                for row in block.rows
            ]
            if text := "\n".join(row for row in rows if row):
                current.append(text)
            continue
        text = block.text.strip()
        level = _docx_heading_level(block.style.name if block.style is not None else "")
        if level is not None and text:
            flush()
            headings.enter(level, text)
        elif text:
            current.append(text)
    flush()
    return ParsedDocument(DocumentKind.DOCX, sections)


def _docx_heading_level(style_name: str) -> int | None:
    if style_name == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style_name)
    return int(match.group(1)) if match else None


class _HeadingPath:
    """The stack of headings above the current position ("A > B > C")."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, " ".join(title.split())))

    def path(self) -> str | None:
        return HEADING_SEPARATOR.join(title for _, title in self._stack) or None


def _parse_markdown(path: Path) -> ParsedDocument:
    from markdown_it import MarkdownIt

    source = decode_text(path.read_bytes())
    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    headings = _HeadingPath()
    sections: list[Section] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            sections.append(Section(text="\n\n".join(current), heading=headings.path()))
            current.clear()

    in_heading: int | None = None
    for token in tokens:
        if token.type == "heading_open":
            in_heading = int(token.tag[1])
        elif token.type == "heading_close":
            in_heading = None
        elif token.type == "inline":
            text = _markdown_inline_text(token)
            if in_heading is not None:
                flush()
                headings.enter(in_heading, text)
            elif text.strip():
                current.append(text)
        elif token.type in ("fence", "code_block") and token.content.strip():
            current.append(token.content.rstrip())
        elif token.type == "html_block" and (text := _html_fragment_text(token.content)):
            current.append(text)
    flush()
    return ParsedDocument(DocumentKind.MARKDOWN, sections)


def _markdown_inline_text(token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
    return "".join(parts)


def _html_fragment_text(fragment: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(fragment, "lxml")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    return soup.get_text(" ", strip=True)


_HTML_BLOCKS = (
    "p", "div", "section", "article", "main", "aside", "header", "footer", "nav", "li", "ul",
    "ol", "dl", "dt", "dd", "pre", "blockquote", "table", "tr", "td", "th", "caption",
    "figure", "figcaption", "form", "fieldset", "address", "hr", "details", "summary",
)  # fmt: skip
_HEADING_MARK = "\x00H{}\x00"
_HEADING_MARK_RE = re.compile("\x00H(\\d+)\x00")


def _parse_html(path: Path) -> ParsedDocument:
    from bs4 import BeautifulSoup

    raw = path.read_bytes()
    # BeautifulSoup's UnicodeDammit honours <meta charset> and BOMs; text decoding via
    # charset-normalizer is the fallback when the page declares nothing usable.
    soup = BeautifulSoup(raw, "lxml")
    if soup.original_encoding is None and not raw.isascii():
        soup = BeautifulSoup(decode_text(raw), "lxml")
    for tag in soup(["script", "style", "noscript", "template", "svg", "iframe", "head"]):
        tag.decompose()

    # Replace each heading by a marker, lay out block elements as paragraphs, then cut
    # the text at the markers: every piece belongs under the heading before it.
    titles: list[tuple[int, str]] = []
    for heading in soup.find_all(re.compile(r"^h[1-6]$")):
        titles.append((int(heading.name[1]), heading.get_text(" ", strip=True)))
        heading.replace_with(_HEADING_MARK.format(len(titles) - 1))
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    for tag in soup.find_all("br"):
        tag.replace_with("\n")

    pieces = _HEADING_MARK_RE.split(soup.get_text())
    headings = _HeadingPath()
    sections = [Section(text=pieces[0])]
    for index in range(1, len(pieces), 2):
        level, title = titles[int(pieces[index])]
        if title:
            headings.enter(level, title)
        sections.append(Section(text=pieces[index + 1], heading=headings.path()))
    return ParsedDocument(DocumentKind.HTML, sections)


def _parse_text(path: Path) -> ParsedDocument:
    return ParsedDocument(DocumentKind.TEXT, [Section(text=decode_text(path.read_bytes()))])


def decode_text(data: bytes) -> str:
    """Decode text of unknown encoding: UTF-8 (with/without BOM) first, then detection.

    Raises ``ParseError`` when no encoding explains the bytes, rather than silently
    producing mojibake.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise ParseError(
            "The text encoding could not be recognised; save the file as UTF-8 and upload it again."
        )
    # Several code pages often explain the bytes equally well (cp1250 and cp1252 both
    # read French text without "chaos"). Among the equally good ones, prefer the
    # encodings that legacy Western text is actually written in.
    best = matches[0]
    ties = [m for m in matches if (m.chaos, -m.coherence) <= (best.chaos, -best.coherence)]
    for preferred in _PREFERRED_LEGACY_ENCODINGS:
        for match in ties:
            if preferred in match.could_be_from_charset:
                return data.decode(preferred)
    return str(best)


_PREFERRED_LEGACY_ENCODINGS = ("cp1252", "iso8859_1", "iso8859_15", "mac_roman")
