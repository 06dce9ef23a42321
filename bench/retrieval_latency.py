"""Retrieval latency (p50/p95) and HNSW recall@10 against exact search, at 10k and 100k chunks.

    .venv/bin/python bench/retrieval_latency.py [--sizes 10000 100000] [--queries 200]

What is measured, on an embedded Postgres 18 + pgvector 0.8 (own throw-away database):
* ``vector top-10``: the HNSW part alone (``ORDER BY embedding <=> q LIMIT 10`` within the
  project, ``hnsw.ef_search`` = HNSW_EF_SEARCH, and a higher value at the largest size),
  and its recall@10 against exact search (numpy brute force over the same vectors);
* ``hybrid search``: the whole SQL of ``app.services.retrieval.search_by_vector`` (vector
  candidates + full-text candidates, reciprocal rank fusion, cosine similarity, document
  join), top 10, as the app runs it through SQLAlchemy/asyncpg; and the same with 20
  candidates per list instead of the default ``Fusion.depth``, alternating with it (the
  cost of the deeper fusion, measured in one run).
Latencies are wall-clock from the Python client over the Unix socket, excluding the query
embedding, which is measured separately (last table: 1 vs 2 torch threads).

The chunks are SYNTHETIC: 384-d unit vectors drawn around one random centre per 100
chunks (real embeddings bunch by topic; the spread gives a cosine of about 0.8 to the
centre), and texts of 40 pseudo-words drawn with Zipf frequencies from an 8000-word
vocabulary, so the full-text part has realistic work. Queries are stored vectors plus
noise of the within-cluster size (0.04 per dimension) and two content words. The index
is built after loading (COPY), with the configured HNSW_M / HNSW_EF_CONSTRUCTION.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from dataclasses import replace

import numpy as np
from _ingest_db import bench_database, percentile

DIMENSION = 384
_SYLLABLES = [a + b for a in "klmstrnvpd" for b in "aeiou"][:20]  # ka, ke, ki, ...
# 8000 pseudo-words ("kalo", "mitesu", ...) used with Zipf frequencies, like real text:
# a few very common words, a long tail of rare ones.
WORDS = [a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in ("", *_SYLLABLES)][:8000]
ZIPF_WEIGHTS = [1 / rank for rank in range(1, len(WORDS) + 1)]


def synthetic_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors around one random centre per 100 (embeddings bunch by topic)."""
    centres = rng.standard_normal((max(1, count // 100), DIMENSION), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = centres[rng.integers(0, len(centres), count)]
    vectors = vectors + 0.04 * rng.standard_normal((count, DIMENSION), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def load_chunks(settings, vectors: np.ndarray, rng: random.Random) -> tuple[uuid.UUID, float]:
    """Fresh user/project/document and ``len(vectors)`` chunks; returns (project, build s)."""
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    from app.core.db import sync_database_url
    from app.services.vector_store import hnsw_index_ddl

    url = sync_database_url(settings).replace("postgresql+psycopg://", "postgresql://", 1)
    user_id, project_id, document_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as connection:
        register_vector(connection)
        connection.execute("TRUNCATE users CASCADE")
        connection.execute(
            "INSERT INTO users (id, email, password_hash) VALUES (%s, %s, 'x')",
            (user_id, f"{user_id}@bench"),
        )
        connection.execute(
            "INSERT INTO projects (id, owner_id, name) VALUES (%s, %s, 'bench')",
            (project_id, user_id),
        )
        connection.execute(
            "INSERT INTO documents (id, project_id, owner_id, filename, content_type, kind, "
            "size_bytes, sha256, storage_path, status) VALUES "
            "(%s, %s, %s, 'synthetic.txt', 'text/plain', 'text', 0, %s, 'x', 'ready')",
            (document_id, project_id, user_id, uuid.uuid4().hex * 2),
        )
        connection.execute("DROP INDEX IF EXISTS data_chunks_embedding_idx")
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY data_chunks (text, metadata_, node_id, embedding) "
                "FROM STDIN WITH (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["varchar", "jsonb", "varchar", "vector"])
            for index, vector in enumerate(vectors):
                metadata = {
                    "project_id": str(project_id),
                    "document_id": str(document_id),
                    "page": index % 50 + 1,
                    "heading": None,
                    "filename": "synthetic.txt",
                }
                text = " ".join(rng.choices(WORDS, ZIPF_WEIGHTS, k=40))
                copy.write_row((text, Jsonb(metadata), str(uuid.uuid4()), vector))
        connection.execute("SET maintenance_work_mem = '1GB'")
        started = time.perf_counter()
        connection.execute(hnsw_index_ddl(settings))
        build_seconds = time.perf_counter() - started
        connection.execute("VACUUM ANALYZE data_chunks")
    return project_id, build_seconds


async def measure(settings, project_id, queries, exact_ids, node_index, ef_search):
    from sqlalchemy import text

    from app.core.db import get_sessionmaker
    from app.services.retrieval import (
        DEFAULT_FUSION,
        search_by_vector,
        set_hnsw_search_parameters,
        vector_literal,
    )

    maker = get_sessionmaker(settings)
    vector_sql = text(
        "SELECT node_id FROM data_chunks WHERE project_id = :p AND embedding IS NOT NULL "
        "ORDER BY embedding <=> CAST(:q AS vector) LIMIT 10"
    )
    vector_latencies, hybrid_latencies, shallow_latencies, recalls = [], [], [], []
    shallow = replace(DEFAULT_FUSION, depth=20)
    async with maker() as session:
        for _ in range(2):  # warm-up: caches, plans
            await session.execute(vector_sql, {"p": project_id, "q": vector_literal(queries[0])})
            await session.rollback()
        for query, truth in zip(queries, exact_ids, strict=True):
            literal = vector_literal(query.tolist())
            started = time.perf_counter()
            await set_hnsw_search_parameters(session, ef_search)
            rows = (await session.execute(vector_sql, {"p": project_id, "q": literal})).scalars()
            found = {node_index[node_id] for node_id in rows}
            vector_latencies.append(time.perf_counter() - started)
            await session.rollback()
            recalls.append(len(found & set(truth)) / 10)

            words = " ".join(random.sample(WORDS[20:2000], 2))  # content words
            for fusion, latencies in (
                (DEFAULT_FUSION, hybrid_latencies),
                (shallow, shallow_latencies),
            ):
                started = time.perf_counter()
                await search_by_vector(
                    session,
                    project_id,
                    words,
                    query.tolist(),
                    top_k=10,
                    settings=settings.model_copy(update={"hnsw_ef_search": ef_search}),
                    fusion=fusion,
                )
                latencies.append(time.perf_counter() - started)
                await session.rollback()
    return vector_latencies, hybrid_latencies, shallow_latencies, recalls


async def node_ids(settings) -> list[str]:
    from sqlalchemy import text

    from app.core.db import get_sessionmaker

    async with get_sessionmaker(settings)() as session:
        return list(await session.scalars(text("SELECT node_id FROM data_chunks ORDER BY id")))


def query_embedding_latency(settings, repeats: int = 50) -> list[tuple[int, float, float]]:
    import torch

    from app.services import embeddings

    embeddings.load_model(settings)
    questions = [f"How do I configure the firewall for release {i}?" for i in range(repeats)]
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for question in questions[:5]:
            embeddings.embed_query(question, settings)
        timings = []
        for question in questions:
            started = time.perf_counter()
            embeddings.embed_query(question, settings)
            timings.append(time.perf_counter() - started)
        results.append((threads, percentile(timings, 0.5), percentile(timings, 0.95)))
    torch.set_num_threads(settings.torch_threads)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    options = parser.parse_args()

    rows = []
    with bench_database("kt_bench_retrieval") as settings:
        from app.core.db import dispose_engines

        numpy_rng = np.random.default_rng(42)
        text_rng = random.Random(42)
        for size in options.sizes:
            vectors = synthetic_vectors(size, numpy_rng)
            project_id, build_seconds = load_chunks(settings, vectors, text_rng)
            picks = numpy_rng.integers(0, size, options.queries)
            queries = vectors[picks] + 0.04 * numpy_rng.standard_normal(
                (options.queries, DIMENSION), dtype=np.float32
            )
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
            # The configured ef_search, and at the largest size a higher one for the trade-off.
            ef_values = [settings.hnsw_ef_search]
            if size == max(options.sizes):
                ef_values.append(max(100, 2 * settings.hnsw_ef_search))

            async def run(ef_values=ef_values, project_id=project_id, queries=queries, exact=exact):
                try:
                    ids = await node_ids(settings)
                    index = {node_id: position for position, node_id in enumerate(ids)}
                    return [
                        await measure(settings, project_id, queries, exact, index, ef)
                        for ef in ef_values
                    ]
                finally:
                    await dispose_engines()  # its connections belong to this event loop

            for ef, (vector_lat, hybrid_lat, shallow_lat, recalls) in zip(
                ef_values, asyncio.run(run()), strict=True
            ):
                rows.append(
                    (
                        f"{size:,}",
                        str(ef),
                        f"{build_seconds:.1f}",
                        f"{percentile(vector_lat, 0.5) * 1000:.2f}",
                        f"{percentile(vector_lat, 0.95) * 1000:.2f}",
                        f"{statistics.mean(recalls):.3f}",
                        f"{percentile(hybrid_lat, 0.5) * 1000:.2f}",
                        f"{percentile(hybrid_lat, 0.95) * 1000:.2f}",
                        f"{percentile(shallow_lat, 0.5) * 1000:.2f}",
                        f"{percentile(shallow_lat, 0.95) * 1000:.2f}",
                    )
                )
        embedding_rows = query_embedding_latency(settings)

    print(
        f"\n### Retrieval latency (synthetic 384-d chunks, HNSW m={settings.hnsw_m}, "
        f"ef_construction={settings.hnsw_ef_construction}, ef_search={settings.hnsw_ef_search}, "
        f"{options.queries} queries)\n"
    )
    from app.services.retrieval import DEFAULT_FUSION

    print(
        "| chunks | ef_search | index build s | vector top-10 p50 ms | p95 ms | recall@10 "
        f"| hybrid search ({DEFAULT_FUSION.depth} per list) p50 ms | p95 ms "
        "| hybrid, 20 per list p50 ms | p95 ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\n### Query embedding latency (all-MiniLM-L6-v2, one short question)\n")
    print("| torch threads | p50 ms | p95 ms |")
    print("|---:|---:|---:|")
    for threads, p50, p95 in embedding_rows:
        print(f"| {threads} | {p50 * 1000:.1f} | {p95 * 1000:.1f} |")


if __name__ == "__main__":
    main()
