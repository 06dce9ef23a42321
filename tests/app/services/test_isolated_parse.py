"""Parsing in a limited child process: results come back, limits become clear errors."""

from __future__ import annotations

import pytest

from app.services.isolated_parse import parse_file_isolated
from app.services.parsing import DocumentKind, ParseError
from tests.app.utils import samples

LIMITS = {"memory_mb": 512, "cpu_seconds": 60, "timeout_seconds": 60}


async def test_a_document_parses_in_the_child(tmp_path):
    parsed = await parse_file_isolated(samples.make_pdf(tmp_path), DocumentKind.PDF, **LIMITS)
    assert parsed.page_count and parsed.sections
    assert parsed.sections[0].page == 1


async def test_a_parse_error_comes_back_as_such(tmp_path):
    empty = tmp_path / "blank.md"
    empty.write_text("   \n\n")
    with pytest.raises(ParseError, match="No extractable text"):
        await parse_file_isolated(empty, DocumentKind.MARKDOWN, **LIMITS)


async def test_a_file_needing_too_much_memory_fails_without_harming_the_app(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"bees and honey " * 4_000_000)  # 60 MB of text
    with pytest.raises(ParseError, match=r"memory|stopped the reader"):
        await parse_file_isolated(
            big, DocumentKind.TEXT, memory_mb=64, cpu_seconds=60, timeout_seconds=60
        )
    # This process is fine and the next document parses.
    parsed = await parse_file_isolated(
        samples.make_markdown(tmp_path), DocumentKind.MARKDOWN, **LIMITS
    )
    assert parsed.sections


async def test_a_parser_that_takes_too_long_is_stopped(tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"bees and honey\n" * 2_000_000)  # 30 MB: more than 50 ms of work
    with pytest.raises(ParseError, match="PARSE_TIMEOUT_SECONDS"):
        await parse_file_isolated(
            big, DocumentKind.TEXT, memory_mb=2048, cpu_seconds=60, timeout_seconds=0.05
        )
