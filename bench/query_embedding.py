"""Query embedding: one question's vector through ONNX Runtime and through torch.

Both backends of ``app.services.embeddings.embed_query`` on the same questions, in
alternating order (so a drift in the machine's speed hits both alike), one thread each as
in the app. The ONNX export comes from (or goes to) ``$TMPDIR/kt-bench-models``; the
first run makes it (~30 s). Also prints the largest difference between the two vectors.

    .venv/bin/python bench/query_embedding.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The chat benchmark's questions: the figures of both describe the same queries.
from bench._chat_stack import percentile
from bench.chat_latency import QUESTIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()

    from app.core.config import load_settings
    from app.services import embeddings, query_encoder

    settings = load_settings(
        database_url="postgresql+asyncpg://unused@/unused",
        secret_key="bench",
        model_cache_dir=Path(tempfile.gettempdir()) / "kt-bench-models",
    )
    loaded = embeddings.load_model(settings)
    started = time.monotonic()
    encoder = query_encoder.prepare(loaded.model_path, loaded.model_name, settings.models_cache_dir)
    prepare_seconds = time.monotonic() - started
    # The process's query path, switched between the backends by hand.
    path = embeddings._query_path = embeddings.QueryPath(loaded.model_name)

    def run(backend: str, text: str) -> tuple[float, list[float]]:
        path.encoder = encoder if backend == "onnx" else None
        begun = time.perf_counter()
        vector = embeddings.embed_query(text, settings)
        return (time.perf_counter() - begun) * 1000, vector

    for text in QUESTIONS * 4:  # warm-up
        run("onnx", text)
        run("torch", text)
    times: dict[str, list[float]] = {"onnx": [], "torch": []}
    worst = 0.0
    for number in range(args.rounds):
        text = QUESTIONS[number % len(QUESTIONS)]
        order = ("onnx", "torch") if number % 2 else ("torch", "onnx")
        vectors = {}
        for backend in order:
            elapsed, vectors[backend] = run(backend, text)
            times[backend].append(elapsed)
        worst = max(
            worst, max(abs(a - b) for a, b in zip(vectors["onnx"], vectors["torch"], strict=True))
        )
    summary = {
        "benchmark": "query_embedding",
        "rounds": args.rounds,
        "onnx_ms_p50": round(percentile(times["onnx"], 0.50), 2),
        "onnx_ms_p95": round(percentile(times["onnx"], 0.95), 2),
        "torch_ms_p50": round(percentile(times["torch"], 0.50), 2),
        "torch_ms_p95": round(percentile(times["torch"], 0.95), 2),
        "max_component_difference": worst,
        "encoder_prepare_s": round(prepare_seconds, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
