"""Ingestion throughput: chunks/s through parse + chunk + embed + store, against the bare model.

    .venv/bin/python bench/ingest_throughput.py [--documents 12] [--repeat 2]

The documents are Markdown files assembled from the sample corpus (``samples/corpus``):
each one takes the corpus sections in a different order, so every file has distinct
content (no deduplication) and long sections that fill whole chunks (up to 254 word
pieces, the model's window).

Measured, in one process on an embedded Postgres:
* ``pipeline``: the real ingestion worker (``IngestWorker.run_until_idle``, what its
  background loop runs) over all documents: parse, sentence-aware chunking, embedding
  (INGEST_THREADS threads, torch intra-op threads = TORCH_THREADS), PGVectorStore
  insert, status updates, INGEST_CONCURRENCY documents at once;
* ``bare encode``: ``SentenceTransformer.encode`` on exactly the same chunk texts, with
  nothing else, in the best configuration we know for this machine: torch threads =
  CPU count in one call, and INGEST_THREADS threads x TORCH_THREADS (what the pipeline
  uses), each run twice and the better kept. The ratio pipeline / best bare is the
  figure the target refers to (>= 90 %). On a busy machine the figures swing: compare
  them within one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import tempfile
import time
from pathlib import Path

from _ingest_db import ROOT, bench_database, register_files

CORPUS = ROOT / "samples" / "corpus"


def corpus_sections() -> list[tuple[str, str]]:
    """(heading, body) of every Markdown section of the sample corpus."""
    sections = []
    for path in sorted(CORPUS.glob("*.md")):
        if path.name.startswith("LICENSE"):
            continue
        for block in re.split(r"^## ", path.read_text(), flags=re.M)[1:]:
            heading, _, body = block.partition("\n")
            sections.append((heading.strip(), body.strip()))
    return sections


def make_documents(directory: Path, count: int) -> list[Path]:
    sections = corpus_sections()
    rng = random.Random(7)
    paths = []
    for number in range(count):
        rng.shuffle(sections)
        parts = [f"# Field notes {number + 1}\n"]
        # Three corpus sections per heading: long sections, so chunks are full-size.
        for start in range(0, len(sections) - 2, 3):
            group = sections[start : start + 3]
            parts.append(f"## {' and '.join(h for h, _ in group)}\n")
            parts.append("\n\n".join(body for _, body in group) + "\n")
        path = directory / f"notes-{number + 1:02d}.md"
        path.write_text("\n".join(parts))
        paths.append(path)
    return paths


async def run_pipeline(settings, paths: list[Path]) -> tuple[int, float, list[str]]:
    """Register ``paths`` as documents of a fresh project and process them all."""
    from sqlalchemy import text

    from app.core.db import dispose_engines, get_engine
    from app.services.ingestion.worker import IngestWorker

    engine = get_engine(settings)
    worker = IngestWorker(settings, engine)
    try:
        project = await register_files(worker, paths, "bench")
        await worker._ensure_context()  # model loading is not ingestion
        started = time.perf_counter()
        await worker.run_until_idle()
        elapsed = time.perf_counter() - started
        async with worker.sessionmaker() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT text, metadata_ ->> 'heading' AS heading FROM data_chunks "
                        "WHERE project_id = :p ORDER BY id"
                    ),
                    {"p": project.id},
                )
            ).all()
            failed = await session.scalar(
                text("SELECT count(*) FROM documents WHERE status <> 'ready'")
            )
        assert failed == 0, f"{failed} documents did not become ready"
        texts = [f"{row.heading}\n\n{row.text}" if row.heading else row.text for row in rows]
        return len(rows), elapsed, texts
    finally:
        await worker.stop()
        await dispose_engines()


def bare_encode(settings, texts: list[str]) -> list[tuple[str, float]]:
    import torch

    from app.services import embeddings

    loaded = embeddings.load_model(settings)
    model = loaded.sentence_transformer
    results = []
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    model.encode(texts[:32], batch_size=32)
    started = time.perf_counter()
    model.encode(texts, batch_size=settings.embedding_batch_size, normalize_embeddings=True)
    results.append(
        (f"encode(), {cores} torch threads", len(texts) / (time.perf_counter() - started))
    )
    torch.set_num_threads(settings.torch_threads)
    started = time.perf_counter()
    embeddings.embed_texts(texts, settings)
    results.append(
        (
            f"{settings.ingest_threads} threads x {settings.torch_threads} torch thread",
            len(texts) / (time.perf_counter() - started),
        )
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=2, help="pipeline runs (best is kept)")
    options = parser.parse_args()

    with bench_database("kt_bench_ingest") as settings, tempfile.TemporaryDirectory() as tmp:
        from app.services import embeddings

        embeddings.load_model(settings)
        best = None
        for run in range(options.repeat):
            folder = Path(tmp) / f"run{run}"
            folder.mkdir()
            paths = make_documents(folder, options.documents)
            chunks, elapsed, texts = asyncio.run(run_pipeline(settings, paths))
            if best is None or chunks / elapsed > best[0] / best[1]:
                best = (chunks, elapsed, texts)
        chunks, elapsed, texts = best
        # Bare encode twice, keeping each configuration's best: on a shared machine the
        # comparison should not flatter the pipeline.
        bare = [
            (label, max(first, second))
            for (label, first), (_, second) in zip(
                bare_encode(settings, texts), bare_encode(settings, texts), strict=True
            )
        ]
        tokens = embeddings.token_counter(settings)
        mean_tokens = sum(len(tokens(t)) for t in texts) / len(texts)

    pipeline_rate = chunks / elapsed
    best_bare = max(rate for _, rate in bare)
    print(
        f"\n### Ingestion throughput ({options.documents} Markdown documents, {chunks} chunks "
        f"of {mean_tokens:.0f} word pieces on average, {os.cpu_count()} CPUs)\n"
    )
    print("| what | chunks/s | vs best bare encode |")
    print("|---|---:|---:|")
    print(
        f"| pipeline: parse + chunk + embed + store (INGEST_THREADS={settings.ingest_threads}, "
        f"TORCH_THREADS={settings.torch_threads}, INGEST_CONCURRENCY="
        f"{settings.ingest_concurrency}) | {pipeline_rate:.1f} "
        f"| {100 * pipeline_rate / best_bare:.0f} % |"
    )
    for label, rate in bare:
        print(f"| bare model: {label} | {rate:.1f} | {100 * rate / best_bare:.0f} % |")


if __name__ == "__main__":
    main()
