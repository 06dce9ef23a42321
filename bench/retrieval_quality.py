"""Retrieval quality: hit@1, hit@5 and MRR@10 of every ranker on one corpus and question set.

    .venv/bin/python bench/eval/build_corpus.py          # once: the git-doc corpus
    .venv/bin/python bench/retrieval_quality.py [--corpus DIR] [--questions FILE]
        [--chunk-size N] [--chunk-overlap N] [--rrf-k K ...] [--vector-weight W ...]
        [--depth N ...] [--bm25-b B ...] [--reranker MODEL]

The documents of ``--corpus`` are ingested into a fresh project of a throw-away embedded
Postgres through the app's own ingestion (register the uploads, then the ingest worker:
parse, chunk, embed, store), with the configured settings (CHUNK_SIZE... from the
environment or the options). Then every question is asked of:

* ``search API (fused)``: ``retrieval.search``, what ``POST /projects/{id}/search`` runs;
* ``vector list alone`` / ``keyword list alone``: the same call with ``mode`` set;
* ``LlamaIndex retriever``: the stock ``VectorStoreIndex(...).as_retriever()`` over the
  same table, model and project (a peer, measured in the same run);
* with ``--rrf-k``, ``--vector-weight``, ``--depth``, ``--bm25-b``: the fused search with
  other rank constants, list weights, candidates per list or BM25 length normalisation
  (the tuning table; ``--bm25-b`` also shows the keyword list alone);
* with ``--reranker``: the fused search followed by that cross-encoder.

A hit is a passage of the right document that contains the answer sentence (both
compared lowercase, letters and digits only). The questions file is YAML: a list
``questions`` of ``{kind, question, document, answer}``, ``document`` being the file
name without its extension. To measure your own documents, point ``--corpus`` at a
folder of them and ``--questions`` at such a file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
import unicodedata
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from _ingest_db import ROOT, bench_database, register_files

EVAL = ROOT / "bench" / "eval"
TOP = 10


@dataclass(frozen=True)
class Question:
    kind: str
    question: str
    document: str
    answer: str


@dataclass(frozen=True)
class Passage:
    document: str  # file name without extension
    text: str


def normalise(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", unicodedata.normalize("NFKC", text).lower())


def load_questions(path: Path) -> list[Question]:
    import yaml

    entries = yaml.safe_load(path.read_text())["questions"]
    return [Question(**entry) for entry in entries]


def first_hit(question: Question, passages: list[Passage], top: int = TOP) -> int | None:
    """1-based rank of the first passage that answers ``question`` (None: none does)."""
    answer = normalise(question.answer)
    for rank, passage in enumerate(passages[:top], start=1):
        if passage.document == question.document and answer in normalise(passage.text):
            return rank
    return None


def scores(ranks: list[int | None]) -> tuple[float, float, float]:
    """hit@1, hit@5, MRR@10."""
    count = len(ranks)
    hit1 = sum(1 for rank in ranks if rank == 1) / count
    hit5 = sum(1 for rank in ranks if rank is not None and rank <= 5) / count
    mrr = sum(1 / rank for rank in ranks if rank is not None) / count
    return hit1, hit5, mrr


async def ingest(settings, files: list[Path]) -> tuple[uuid.UUID, int, float]:
    """A fresh project holding ``files``; (project id, chunks, seconds)."""
    from sqlalchemy import text

    from app.core.db import get_engine
    from app.services.ingestion.worker import IngestWorker

    worker = IngestWorker(settings, get_engine(settings))
    try:
        project = await register_files(worker, files, "quality")
        await worker._ensure_context()  # model loading is not ingestion
        started = time.perf_counter()
        await worker.run_until_idle()
        elapsed = time.perf_counter() - started
        async with worker.sessionmaker() as session:
            failed = (
                await session.execute(
                    text("SELECT filename, error FROM documents WHERE status <> 'ready'")
                )
            ).all()
            assert not failed, f"documents not ready: {failed}"
            chunks = await session.scalar(text("SELECT count(*) FROM data_chunks"))
        return project.id, chunks, elapsed
    finally:
        await worker.stop()


async def answer_coverage(settings, project_id: uuid.UUID, questions: list[Question]) -> int:
    """Questions whose answer sentence is inside some chunk of its document (the ceiling)."""
    from sqlalchemy import text

    from app.core.db import get_sessionmaker

    async with get_sessionmaker(settings)() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT d.filename, c.text FROM data_chunks c "
                    "JOIN documents d ON d.id = c.document_id WHERE c.project_id = :p"
                ),
                {"p": project_id},
            )
        ).all()
    by_document: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_document[Path(row.filename).stem].append(normalise(row.text))
    return sum(
        1
        for question in questions
        if any(normalise(question.answer) in chunk for chunk in by_document[question.document])
    )


def app_ranker(settings, project_id: uuid.UUID, top: int = TOP, **options):
    from app.core.db import get_sessionmaker
    from app.services import retrieval

    async def rank(question: str) -> list[Passage]:
        async with get_sessionmaker(settings)() as session:
            hits = await retrieval.search(
                session, project_id, question, top_k=top, settings=settings, **options
            )
        return [Passage(Path(hit.document_name).stem, hit.text) for hit in hits]

    return rank


# The keyword list before BM25 (for comparison): every word required, ts_rank.
_ALL_WORDS_SQL = """
    SELECT d.filename, c.text FROM data_chunks c
    JOIN documents d ON d.id = c.document_id,
         websearch_to_tsquery('english', :q) AS q(query)
    WHERE c.project_id = :p AND c.text_search_tsv @@ q.query
    ORDER BY ts_rank(c.text_search_tsv, q.query) DESC, c.id LIMIT :top
"""


def all_words_ranker(settings, project_id: uuid.UUID):
    from sqlalchemy import text

    from app.core.db import get_sessionmaker

    async def rank(question: str) -> list[Passage]:
        async with get_sessionmaker(settings)() as session:
            rows = await session.execute(
                text(_ALL_WORDS_SQL), {"q": question, "p": project_id, "top": TOP}
            )
        return [Passage(Path(row.filename).stem, row.text) for row in rows]

    return rank


def llamaindex_ranker(settings, project_id: uuid.UUID):
    """The stock LlamaIndex retriever over the same PGVectorStore, filtered to the project."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from app.core.db import get_engine, sync_database_url
    from app.services import embeddings
    from app.services.vector_store import make_vector_store

    store = make_vector_store(
        settings,
        embeddings.embedding_dimension(settings),
        create_engine(sync_database_url(settings), poolclass=NullPool),
        get_engine(settings),
    )
    index = VectorStoreIndex.from_vector_store(store, embed_model=embeddings.get_embed_model())
    retriever = index.as_retriever(
        similarity_top_k=TOP,
        filters=MetadataFilters(
            filters=[ExactMatchFilter(key="project_id", value=str(project_id))]
        ),
    )

    async def rank(question: str) -> list[Passage]:
        nodes = await retriever.aretrieve(question)
        return [
            Passage(Path(n.node.metadata["filename"]).stem, n.node.get_content()) for n in nodes
        ]

    return rank


async def evaluate(rankers, questions: list[Question]):
    """{ranker: [rank of the first hit per question]} and the mean latency per ranker."""
    results, latency = {}, {}
    for name, rank in rankers.items():
        await rank(questions[0].question)  # warm-up
        ranks, started = [], time.perf_counter()
        for question in questions:
            ranks.append(first_hit(question, await rank(question.question)))
        latency[name] = (time.perf_counter() - started) / len(questions)
        results[name] = ranks
    return results, latency


async def diagnose(settings, project_id: uuid.UUID, questions: list[Question]) -> list[str]:
    """For each question: the answer's rank in each list's top 50 (- : not there)."""
    lists = {
        mode: app_ranker(settings, project_id, top=50, mode=mode) for mode in ("vector", "keyword")
    }
    lines = []
    for question in questions:
        ranks = []
        for mode, rank in lists.items():
            found = first_hit(question, await rank(question.question), top=50)
            ranks.append(f"{mode} {found or '-'}")
        lines.append(f"{', '.join(ranks)}")
    return lines


def report(results, latency, questions, chunks, coverage, elapsed, settings, why) -> None:
    from app.services.retrieval import DEFAULT_BM25, DEFAULT_FUSION

    kinds = sorted({q.kind for q in questions})
    print(
        f"\n### Retrieval quality ({len(questions)} questions, {chunks} chunks, "
        f"CHUNK_SIZE={settings.chunk_size} CHUNK_OVERLAP={settings.chunk_overlap}; "
        f"defaults: RRF k={DEFAULT_FUSION.k}, {DEFAULT_FUSION.depth} candidates per list, "
        f"BM25 k1={DEFAULT_BM25.k1} b={DEFAULT_BM25.b}; "
        f"ingested in {elapsed:.0f} s; answer inside some chunk of its document: "
        f"{coverage}/{len(questions)})\n"
    )
    header = " | ".join(f"hit@5 {kind}" for kind in kinds)
    print(f"| ranker | hit@1 | hit@5 | MRR@10 | {header} | ms/question |")
    print("|---|---:|---:|---:|" + "---:|" * len(kinds) + "---:|")
    for name, ranks in results.items():
        hit1, hit5, mrr = scores(ranks)
        per_kind = [
            scores([r for r, q in zip(ranks, questions, strict=True) if q.kind == kind])[1]
            for kind in kinds
        ]
        cells = " | ".join(f"{value:.3f}" for value in per_kind)
        print(
            f"| {name} | {hit1:.3f} | {hit5:.3f} | {mrr:.3f} | {cells} "
            f"| {latency[name] * 1000:.0f} |"
        )
    fused = results["search API (fused)"]
    misses = [q for r, q in zip(fused, questions, strict=True) if r is None or r > 5]
    if misses:
        print("\nFused search, not in the top 5 (the answer's rank in each list's top 50):")
        for question in misses:
            print(
                f"- [{question.kind}] {question.question} ({question.document}): "
                f"{why[questions.index(question)]}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=EVAL / "corpus")
    parser.add_argument("--questions", type=Path, default=EVAL / "questions.yaml")
    parser.add_argument("--chunk-size", type=int, help="CHUNK_SIZE for this run")
    parser.add_argument("--chunk-overlap", type=int, help="CHUNK_OVERLAP for this run")
    parser.add_argument("--rrf-k", type=int, nargs="*", default=[], help="other RRF constants")
    parser.add_argument(
        "--vector-weight", type=float, nargs="*", default=[], help="other vector-list weights"
    )
    parser.add_argument(
        "--depth", type=int, nargs="*", default=[], help="other candidates per list"
    )
    parser.add_argument(
        "--bm25-b", type=float, nargs="*", default=[], help="other BM25 length normalisations"
    )
    parser.add_argument("--reranker", help="also rerank the fused list with this CrossEncoder")
    options = parser.parse_args()
    if not options.corpus.is_dir():
        raise SystemExit(f"{options.corpus} is missing: run bench/eval/build_corpus.py first")
    questions = load_questions(options.questions)
    files = sorted(path for path in options.corpus.iterdir() if path.is_file())
    if options.chunk_size:
        os.environ["CHUNK_SIZE"] = str(options.chunk_size)
    if options.chunk_overlap is not None:
        os.environ["CHUNK_OVERLAP"] = str(options.chunk_overlap)

    with bench_database("kt_bench_quality") as settings:
        from app.core.db import dispose_engines
        from app.services import embeddings, retrieval

        embeddings.load_model(settings)

        async def run():
            try:
                project_id, chunks, elapsed = await ingest(settings, files)
                coverage = await answer_coverage(settings, project_id, questions)
                rankers = {
                    "search API (fused)": app_ranker(settings, project_id),
                    "vector list alone": app_ranker(settings, project_id, mode="vector"),
                    "keyword list alone": app_ranker(settings, project_id, mode="keyword"),
                    "LlamaIndex retriever": llamaindex_ranker(settings, project_id),
                    "keyword, all words + ts_rank (before)": all_words_ranker(settings, project_id),
                }
                default = retrieval.DEFAULT_FUSION
                for k in options.rrf_k:
                    rankers[f"fused, RRF k={k}"] = app_ranker(
                        settings, project_id, fusion=replace(default, k=k)
                    )
                for weight in options.vector_weight:
                    rankers[f"fused, vector weight {weight}"] = app_ranker(
                        settings, project_id, fusion=replace(default, vector_weight=weight)
                    )
                for depth in options.depth:
                    rankers[f"fused, {depth} candidates per list"] = app_ranker(
                        settings, project_id, fusion=replace(default, depth=depth)
                    )
                for b in options.bm25_b:
                    bm25 = replace(retrieval.DEFAULT_BM25, b=b)
                    rankers[f"keyword alone, BM25 b={b}"] = app_ranker(
                        settings, project_id, mode="keyword", bm25=bm25
                    )
                    rankers[f"fused, BM25 b={b}"] = app_ranker(settings, project_id, bm25=bm25)
                if options.reranker:
                    rerank_settings = settings.model_copy(
                        update={"reranker_model": options.reranker}
                    )
                    rankers[f"fused + {options.reranker}"] = app_ranker(rerank_settings, project_id)
                results, latency = await evaluate(rankers, questions)
                why = await diagnose(settings, project_id, questions)
                return results, latency, chunks, coverage, elapsed, why
            finally:
                await dispose_engines()

        results, latency, chunks, coverage, elapsed, why = asyncio.run(run())
        report(results, latency, questions, chunks, coverage, elapsed, settings, why)


if __name__ == "__main__":
    main()
