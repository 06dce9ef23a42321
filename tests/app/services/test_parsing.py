"""Type detection and parsing of real files (no database needed)."""

from __future__ import annotations

import zipfile

import pytest

from app.services.parsing import (
    DocumentKind,
    ParseError,
    UnsupportedFile,
    decode_text,
    detect_type,
    parse_file,
)
from tests.app.utils import samples


@pytest.mark.parametrize(
    ("maker", "kind"),
    [
        (samples.make_pdf, DocumentKind.PDF),
        (samples.make_docx, DocumentKind.DOCX),
        (samples.make_markdown, DocumentKind.MARKDOWN),
        (samples.make_html, DocumentKind.HTML),
        (samples.make_cp1252_text, DocumentKind.TEXT),
    ],
)
def test_type_comes_from_content(tmp_path, maker, kind):
    path = maker(tmp_path)
    assert detect_type(path, path.name) is kind
    # Without an extension the content still decides (Markdown then reads as text).
    expected = DocumentKind.TEXT if kind is DocumentKind.MARKDOWN else kind
    assert detect_type(path, "no-extension") is expected


def test_html_is_sniffed_even_when_named_txt(tmp_path):
    path = samples.make_html(tmp_path)
    assert detect_type(path, "page.txt") is DocumentKind.HTML


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.txt", "empty"),
        (b"MZ\x90\x00" + b"\x00" * 100, "setup.pdf", "Windows executable"),
        (b"\x7fELF\x02\x01" + b"\x00" * 100, "report.docx", "Linux executable"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "photo.png", "PNG image"),
        (b"just some words", "notes.pdf", "contains plain text"),
        (b"just some words", "notes.exe", "unsupported extension"),
        (b"\x00\x01\x02\x03" * 50, "blob", "binary data"),
    ],
)
def test_unsupported_content_is_refused_with_a_reason(tmp_path, content, name, message):
    path = tmp_path / "upload"
    path.write_bytes(content)
    with pytest.raises(UnsupportedFile, match=message):
        detect_type(path, name)


def test_zip_that_is_not_a_word_document_is_refused(tmp_path):
    path = tmp_path / "archive.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(UnsupportedFile, match="ZIP archive that is not a Word document"):
        detect_type(path, path.name)


def test_pdf_sections_carry_page_numbers(tmp_path):
    parsed = parse_file(samples.make_pdf(tmp_path), DocumentKind.PDF)
    assert parsed.page_count == 2
    assert [s.page for s in parsed.sections] == [1, 2]
    assert "lighthouse keeper" in parsed.sections[0].text
    assert "rye bread" in parsed.sections[1].text


def test_docx_sections_carry_heading_paths_and_tables(tmp_path):
    parsed = parse_file(samples.make_docx(tmp_path), DocumentKind.DOCX)
    by_heading = {s.heading: s.text for s in parsed.sections}
    assert "twenty-eight days" in by_heading["Employee Handbook > Holidays"]
    assert "Hotel night | 150 EUR" in by_heading["Employee Handbook > Expenses"]


def test_markdown_heading_path_and_plain_inline_text(tmp_path):
    parsed = parse_file(samples.make_markdown(tmp_path), DocumentKind.MARKDOWN)
    by_heading = {s.heading: s.text for s in parsed.sections}
    assert by_heading["Install Guide > On Debian"] == (
        "Run apt-get install first, then start the service."
    )
    assert by_heading["Install Guide > On Debian > Firewall"] == "Open port 443 for HTTPS."
    # A later h2 closes the h3 above it.
    assert "Install Guide > Upgrading" in by_heading


def test_markdown_keeps_code_blocks(tmp_path):
    path = tmp_path / "code.md"
    path.write_text("# Usage\n\nRun this:\n\n```sh\nknowledgetree migrate\n```\n")
    [section] = parse_file(path, DocumentKind.MARKDOWN).sections
    assert "knowledgetree migrate" in section.text


def test_html_strips_scripts_and_styles(tmp_path):
    parsed = parse_file(samples.make_html(tmp_path), DocumentKind.HTML)
    text = " ".join(s.text for s in parsed.sections)
    assert "Tomatoes need full sun" in text
    assert "secret" not in text and "tracking" not in text and "color:red" not in text
    assert [s.heading for s in parsed.sections] == ["Gardening", "Gardening > Pests"]


@pytest.mark.parametrize(
    ("maker", "message"),
    [
        (samples.make_corrupt_pdf, "damaged"),
        (samples.make_encrypted_pdf, "password-protected"),
        (samples.make_blank_pdf, "No extractable text"),
        (samples.make_docx_zip_bomb, "zip bomb"),
    ],
)
def test_unreadable_files_raise_parse_error_with_reason(tmp_path, maker, message):
    path = maker(tmp_path)
    kind = detect_type(path, path.name)
    with pytest.raises(ParseError, match=message):
        parse_file(path, kind)


def test_pdf_with_only_an_owner_password_opens(tmp_path):
    from pypdf import PdfReader, PdfWriter

    plain = samples.make_pdf(tmp_path)
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt(user_password="", owner_password="owner-only", algorithm="AES-128")
    path = tmp_path / "restricted.pdf"
    with path.open("wb") as handle:
        writer.write(handle)
    parsed = parse_file(path, DocumentKind.PDF)
    assert "lighthouse keeper" in parsed.sections[0].text


def test_legacy_encodings_decode_correctly():
    french = "Crème brûlée à la française, très délicieux et naïf. " * 4
    assert decode_text(french.encode("cp1252")) == french
    assert decode_text(french.encode("utf-8")) == french
    assert decode_text(b"\xef\xbb\xbf" + french.encode("utf-8")) == french
    assert decode_text(french.encode("utf-16")) == french
    german = "Grüße aus München: Äpfel, Öfen und Übermut für alle Straßen. " * 4
    assert decode_text(german.encode("iso-8859-1")) == german


def test_utf16_text_file_is_text(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("Hello in UTF-16, with a BOM.".encode("utf-16"))
    assert detect_type(path, path.name) is DocumentKind.TEXT
    [section] = parse_file(path, DocumentKind.TEXT).sections
    assert section.text == "Hello in UTF-16, with a BOM."
