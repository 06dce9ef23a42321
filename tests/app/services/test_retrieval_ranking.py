"""The ranking on a small real corpus: BM25 keyword list, fusion, context, reindex.

The corpus is the sample documents (``samples/corpus``) plus one page of error codes,
ingested through the API with the real embedding model.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import get_settings
from app.core.db import sync_database_url
from app.services.chunking import Chunk
from app.services.parsing import detect_type, parse_file
from tests.app.utils.documents import make_project, upload, wait_until_done

pytestmark = pytest.mark.timeout(600)

CORPUS = Path(__file__).resolve().parents[3] / "samples" / "corpus"

# Codes that look alike to the embedding model (word pieces "z", "##q", "-", "44"...),
# each in a chunk of its own: only the exact token tells the right one apart.
_REASONS = [
    "the archive is protected by a password and cannot be opened",
    "the file is larger than the upload limit",
    "the spreadsheet contains macros, which are refused",
    "the image has no text layer to read",
    "the document is a scan without recognised text",
    "the file name contains characters the server cannot store",
]
ERROR_CODES = "# Upload errors\n\n" + "\n".join(
    f"## Refusal {n}\n\nCode ZQ-44{n}1 means {reason}.\n\n" + "Try again after fixing it. " * 40
    for n, reason in enumerate(_REASONS, start=5)
)
CODE = "ZQ-4471"  # the third: "macros"


def corpus_files(folder: Path) -> list[Path]:
    paths = [shutil.copy(p, folder) for p in sorted(CORPUS.iterdir()) if p.name != "LICENSE.md"]
    errors = folder / "upload-errors.md"
    errors.write_text(ERROR_CODES)
    return [Path(p) for p in paths] + [errors]


async def ingested_project(client, user, folder: Path) -> str:
    project_id = await make_project(client, user, "Ranking")
    response = await upload(client, user, project_id, *corpus_files(folder))
    assert response.status_code == 202, response.text
    for document in response.json():
        done = await wait_until_done(client, user, project_id, document["id"])
        assert done["status"] == "ready", done
    return project_id


async def search(client, user, project_id: str, query: str, **options) -> list[dict]:
    response = await client.post(
        f"/api/projects/{project_id}/search",
        json={"query": query, "top_k": 5, **options},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()["results"]


async def test_keyword_only_answer_ranks_first(client, user_factory, tmp_path):
    user = await user_factory()
    project_id = await ingested_project(client, user, tmp_path)

    vector_only = await search(client, user, project_id, f"What does {CODE} mean?", mode="vector")
    assert CODE not in vector_only[0]["text"], "premise: its vector is not the closest"

    [best, *_] = await search(client, user, project_id, f"What does {CODE} mean?")
    assert CODE in best["text"]
    assert best["text_rank"] == 1
    assert best["vector_rank"] != 1


@pytest.mark.parametrize(
    ("question", "document", "phrase"),
    [
        ("What do the insects do to stay alive when it is freezing?", "honeybees.md", "cluster"),
        (
            "My bike's drive links have lengthened: when must they go?",
            "bicycle-maintenance.md",
            "0.5 percent",
        ),
        ("Which way should the roof modules point?", "solar-power.md", "face south"),
    ],
)
async def test_paraphrased_question_ranks_its_passage_in_top_three(
    client, user_factory, tmp_path, question, document, phrase
):
    user = await user_factory()
    project_id = await ingested_project(client, user, tmp_path)
    results = await search(client, user, project_id, question, top_k=3)
    assert any(r["document_name"] == document and phrase in r["text"] for r in results), [
        (r["document_name"], r["text"][:60]) for r in results
    ]


async def test_context_is_embedded_and_indexed_but_not_shown(
    client, user_factory, tmp_path, db_session
):
    user = await user_factory()
    project_id = await ingested_project(client, user, tmp_path)
    # "Refusal 7" is only in the context (the heading), not in the text shown.
    [best, *_] = await search(client, user, project_id, "refusal 7", mode="keyword")
    assert best["document_name"] == "upload-errors.md"
    assert best["heading"] == "Upload errors > Refusal 7"
    assert CODE in best["text"] and "Refusal" not in best["text"]
    context = await db_session.scalar(
        text("SELECT metadata_ ->> 'context' FROM data_chunks WHERE text LIKE :code"),
        {"code": f"%{CODE}%"},
    )
    assert context == "upload-errors > Upload errors > Refusal 7"


def test_node_embed_content_is_what_was_embedded():
    from llama_index.core.schema import MetadataMode

    from app.services.vector_store import build_nodes

    class Document:  # the attributes build_nodes reads
        id = project_id = owner_id = "00000000-0000-0000-0000-000000000000"
        filename = "guide.md"

    chunks = [
        Chunk("Open port 443.", 0, None, "Install > Firewall", "guide"),
        Chunk("No context.", 1, None, None, None),
    ]
    nodes = build_nodes(Document, chunks, [[0.0], [0.0]])
    for node, chunk in zip(nodes, chunks, strict=True):
        assert node.get_content(MetadataMode.EMBED) == chunk.embedding_text
        assert node.get_content(MetadataMode.NONE) == chunk.text
    assert chunks[0].embedding_text == "guide > Install > Firewall\n\nOpen port 443."


def _words(value: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", value.lower()))


def _assert_term_statistics_exact(connection) -> None:
    """The trigger-kept BM25 statistics equal a recount from the chunks themselves."""
    recount = text(
        """
        SELECT
          (SELECT count(*) FROM data_chunks, unnest(text_search_tsv)) AS postings,
          (SELECT count(*) FROM chunk_terms) AS stored_postings,
          (SELECT count(*) FROM (
              SELECT project_id, lexeme, count(*) AS n FROM data_chunks, unnest(text_search_tsv)
              GROUP BY 1, 2
              EXCEPT SELECT project_id, term, chunks FROM term_stats) AS t) AS wrong_terms,
          (SELECT count(*) FROM term_stats) AS terms,
          (SELECT count(DISTINCT (project_id, lexeme))
             FROM data_chunks, unnest(text_search_tsv)) AS distinct_terms,
          (SELECT count(*) FROM (
              SELECT project_id, count(*), sum(chunk_term_count(text_search_tsv))
              FROM data_chunks GROUP BY 1
              EXCEPT SELECT project_id, chunks, terms FROM project_text_stats) AS p
          ) AS wrong_projects
        """
    )
    row = connection.execute(recount).one()
    assert row.postings == row.stored_postings, row
    assert row.wrong_terms == 0 and row.terms == row.distinct_terms, row
    assert row.wrong_projects == 0, row


def test_reindex_brings_an_old_project_to_the_new_chunking(settings, tmp_path, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["create-admin", "old@example.com", "--password-stdin"], input="a long password 123\n"
    )
    assert result.exit_code == 0, result.output
    files = corpus_files(tmp_path)

    # The old scheme: small chunks, and no context stored with them.
    monkeypatch.setenv("CHUNK_SIZE", "64")
    monkeypatch.setenv("CHUNK_OVERLAP", "8")
    get_settings.cache_clear()
    result = runner.invoke(cli, ["ingest", str(tmp_path), "--project", "Old"])
    assert result.exit_code == 0, result.output
    engine = create_engine(sync_database_url(settings))
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE data_chunks SET metadata_ = metadata_ - 'context'"))
            _assert_term_statistics_exact(connection)
            old_chunks = connection.scalar(text("SELECT count(*) FROM data_chunks"))
            documents = dict(connection.execute(text("SELECT id, filename FROM documents")).all())

        for name in ("CHUNK_SIZE", "CHUNK_OVERLAP"):
            monkeypatch.delenv(name)
        get_settings.cache_clear()
        result = runner.invoke(cli, ["reindex", "--project", "Old"])
        assert result.exit_code == 0, result.output
        assert f"Re-indexing {len(files)} document(s)" in result.output

        with engine.begin() as connection:
            rows = connection.execute(
                text(
                    "SELECT d.id, d.filename, d.status, d.chunk_count, "
                    "c.text, c.metadata_ ->> 'context' AS context FROM documents d "
                    "JOIN data_chunks c ON c.document_id = d.id ORDER BY d.id, c.id"
                )
            ).all()
            _assert_term_statistics_exact(connection)
    finally:
        engine.dispose()
        get_settings.cache_clear()

    assert {row.id: row.filename for row in rows} == documents  # the same documents
    assert {row.status for row in rows} == {"ready"}
    assert len(rows) < old_chunks  # the default chunks are larger
    for path in files:
        chunks = [row for row in rows if row.filename == path.name]
        assert chunks and chunks[0].chunk_count == len(chunks)
        assert all(row.context.startswith(path.stem) for row in chunks)
        # Nothing lost: every sentence the parser read from the file is in some chunk.
        joined = " | ".join(_words(row.text) for row in chunks)
        parsed = parse_file(path, detect_type(path, path.name))
        for section in parsed.sections:
            for sentence in re.split(r"(?<=[.!?])\s+", section.text):
                assert _words(sentence) in joined, (path.name, sentence)
    assert os.environ.get("CHUNK_SIZE") is None
