"""Chat latency: time from sending a question to the first `token` event, minus the
model's own first-token delay, with N chunks indexed in the project (default 100 000).

What it measures is the app's own overhead on the way to the first token: auth, saving
the question, query embedding, hybrid retrieval over the index (HNSW + full text, RRF),
prompt building, the call to the model (the local stand-in, in its own process, that
waits --model-delay seconds before its first token), and SSE delivery. The model's own
first-token time is read from the stand-in's first delta, stamped with when the stand-in
received the request and when it sent that delta (`time.monotonic()`, one clock for
every process of the machine); the figure against the nominal --model-delay is shown too.
The target and the current figure: docs/BENCHMARKS.md.

    .venv/bin/python bench/chat_latency.py [--chunks 100000] [--requests 200]

Each request starts a new conversation (no history) in the indexed project; a few
warm-up requests are not counted. Prints a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._chat_stack import ChatStack, parse_stamp, percentile

QUESTIONS = [
    "What is the refund policy for a returned product?",
    "How long does shipping and delivery take?",
    "Who climbs the lighthouse steps every evening?",
    "When is the backup and restore of the database done?",
    "What notice period does the contract clause give an employee?",
]


def first_token_latency(
    client: httpx.Client, headers: dict, body: dict
) -> tuple[float, float, float]:
    """Seconds from sending to the `sources` event and to the first `token` event, and
    the model's own first-token time (its first delta is stamped "<received>/<sent>")."""
    started = time.perf_counter()  # CLOCK_MONOTONIC on Linux, like the stand-in's stamps
    sources_at = token_at = None
    model_own = 0.0
    with client.stream("POST", "/api/chat/stream", json=body, headers=headers) as response:
        response.raise_for_status()
        lines = response.iter_lines()
        for line in lines:
            if line == "event: sources" and sources_at is None:
                sources_at = time.perf_counter()
            elif line == "event: token" and token_at is None:
                token_at = time.perf_counter()
                received, sent = parse_stamp(json.loads(next(lines)[5:])["text"])
                model_own = sent - received
        # Read to the end, as a person does: leaving early would cancel the turn and its
        # clean-up (saving the partial answer) would overlap the next measured request.
    if token_at is None or sources_at is None:
        raise RuntimeError("the stream ended without a token")
    return sources_at - started, token_at - started, model_own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--model-delay", type=float, default=0.2, help="stand-in first-token delay")
    parser.add_argument("--context-chunks", type=int, default=6)
    parser.add_argument(
        "--query-embedding",
        choices=["onnx", "torch"],
        default="onnx",
        help="the app's QUERY_EMBEDDING_BACKEND (onnx is the default; torch to compare)",
    )
    args = parser.parse_args()

    with ChatStack(
        first_token_delay=args.model_delay,
        text="Answer [1] " * 20,
        stamp_tokens=True,
        app_env={"QUERY_EMBEDDING_BACKEND": args.query_embedding},
    ) as stack:
        headers = stack.login()
        project_id = stack.create_project(headers)
        index_seconds = 0.0
        if args.chunks:
            print(f"indexing {args.chunks} synthetic chunks…", flush=True)
            index_seconds = stack.index_synthetic_chunks(project_id, args.chunks)
            print(f"indexed in {index_seconds:.1f} s", flush=True)
        to_sources: list[float] = []
        overhead: list[float] = []
        nominal: list[float] = []
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            for number in range(args.warmup + args.requests):
                body = {
                    "message": QUESTIONS[number % len(QUESTIONS)],
                    "project_id": project_id,
                    "max_context_chunks": args.context_chunks,
                    "min_similarity": 0.0,
                }
                sources, token, model_own = first_token_latency(client, headers, body)
                if number >= args.warmup:
                    to_sources.append(sources * 1000)
                    overhead.append((token - model_own) * 1000)
                    nominal.append((token - args.model_delay) * 1000)
            search_ms: list[float] = []
            for number in range(args.requests):
                started = time.perf_counter()
                response = client.post(
                    f"/api/projects/{project_id}/search",
                    json={
                        "query": QUESTIONS[number % len(QUESTIONS)],
                        "top_k": args.context_chunks,
                    },
                    headers=headers,
                )
                response.raise_for_status()
                search_ms.append((time.perf_counter() - started) * 1000)
        summary = {
            "benchmark": "chat_first_token_overhead",
            "chunks": args.chunks,
            "requests": args.requests,
            "model_first_token_delay_ms": args.model_delay * 1000,
            "overhead_ms_p50": round(percentile(overhead, 0.50), 1),
            "overhead_ms_p95": round(percentile(overhead, 0.95), 1),
            "overhead_ms_mean": round(statistics.fmean(overhead), 1),
            # Minus the nominal --model-delay instead: also counts the stand-in's own time
            # (reading the request, its sleep running late).
            "overhead_vs_nominal_delay_ms_p50": round(percentile(nominal, 0.50), 1),
            "overhead_vs_nominal_delay_ms_p95": round(percentile(nominal, 0.95), 1),
            "to_sources_ms_p50": round(percentile(to_sources, 0.50), 1),
            "to_sources_ms_p95": round(percentile(to_sources, 0.95), 1),
            # The same retrieval alone, through the search API: the part of the overhead
            # that is the index's, not the chat's.
            "search_api_ms_p50": round(percentile(search_ms, 0.50), 1),
            "search_api_ms_p95": round(percentile(search_ms, 0.95), 1),
            "index_build_s": round(index_seconds, 1),
            "query_embedding": stack.query_embedding,
            "targets": {"p50_ms": 50, "p95_ms": 150},
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
