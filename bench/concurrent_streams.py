"""Many chat streams at once on ONE app process (uvicorn, one worker).

N clients (default 200) ask a question within --ramp seconds (default 5) and read the
whole answer (400 deltas, 20 s). The model stand-in (its own process) sends a delta
every --token-delay seconds (default 50 ms: 20 events/s per stream, 4000 events/s in
all at 200 streams), so any extra gap a client sees between two `token` events is
delay added by the app (and the loopback). Reported: that added inter-token delay
(p50/p95/p99/max), the same only in the steady window (all N streams open, none
starting or ending), time to the first token under load, streams completed/failed,
CPU seconds of each process, and the app's memory (RSS) before, at the peak and after.
Target (docs/BENCHMARKS.md): 200 open streams, p95 added inter-token delay <= 20 ms.

    .venv/bin/python bench/concurrent_streams.py [--streams 200] [--tokens 400] [--ramp 5]

Prints a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import itertools

from bench._chat_stack import ChatStack, percentile


async def one_stream(
    client: httpx.AsyncClient, headers: dict, start: asyncio.Event, results: list, delay: float = 0
) -> None:
    await start.wait()
    await asyncio.sleep(delay)
    sent = time.perf_counter()
    arrivals: list[float] = []
    status = "failed"
    try:
        async with client.stream(
            "POST", "/api/chat/stream", json={"message": "Tell me a story"}, headers=headers
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line == "event: token":
                    arrivals.append(time.perf_counter())
                elif line.startswith("data:") and '"status"' in line and '"message_id"' in line:
                    status = json.loads(line[5:])["status"]
    except httpx.HTTPError as error:
        status = f"error: {type(error).__name__}"
    results.append((sent, arrivals, status))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=400, help="deltas per answer")
    parser.add_argument("--token-delay", type=float, default=0.05)
    parser.add_argument(
        "--ramp", type=float, default=5.0, help="spread the stream starts over this many seconds"
    )
    args = parser.parse_args()

    text = " ".join(f"w{i}" for i in range(args.tokens))
    with ChatStack(token_delay=args.token_delay, text=text) as stack:
        headers = stack.login()
        rss_before = stack.app_rss_bytes()
        peak = [rss_before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], stack.app_rss_bytes())
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        async def run() -> tuple[list, float]:
            limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=0)
            async with httpx.AsyncClient(
                base_url=stack.base_url, timeout=120, limits=limits
            ) as client:
                # Warm-up: one stream, so model/client pools exist before the burst.
                await one_stream(client, headers, _set_event(), [])
                start = asyncio.Event()
                results: list = []
                tasks = [
                    asyncio.create_task(
                        one_stream(client, headers, start, results, args.ramp * i / args.streams)
                    )
                    for i in range(args.streams)
                ]
                began = time.perf_counter()
                start.set()
                await asyncio.gather(*tasks)
                return results, time.perf_counter() - began

        processes = {
            "app": psutil.Process(stack.app.pid),
            "model_stand_in": psutil.Process(stack.fake.pid),
            "clients": psutil.Process(),
        }
        cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in processes.items()}
        results, wall = asyncio.run(run())
        cpu_seconds = {
            name: round(sum(p.cpu_times()[:2]) - cpu_before[name], 1)
            for name, p in processes.items()
        }
        sampling.set()
        sampler.join()
        time.sleep(1)
        rss_after = stack.app_rss_bytes()

    added: list[float] = []
    first: list[float] = []
    for sent, arrivals, _ in results:
        if arrivals:
            first.append((arrivals[0] - sent) * 1000)
        added.extend(
            max(0.0, (later - earlier - args.token_delay) * 1000)
            for earlier, later in itertools.pairwise(arrivals)
        )
    # The steady window: every stream has started answering and none has finished. Gaps
    # there measure "N open streams" alone, without the work of starting new ones.
    window_start = max((arrivals[0] for _, arrivals, _ in results if arrivals), default=0)
    window_end = min((arrivals[-1] for _, arrivals, _ in results if arrivals), default=0)
    steady = [
        max(0.0, (later - earlier - args.token_delay) * 1000)
        for _, arrivals, _ in results
        for earlier, later in itertools.pairwise(arrivals)
        if earlier >= window_start and later <= window_end
    ]
    completed = sum(1 for _, arrivals, status in results if status == "complete")
    summary = {
        "benchmark": "concurrent_streams",
        "streams": args.streams,
        "tokens_per_stream": args.tokens,
        "model_token_delay_ms": args.token_delay * 1000,
        "completed": completed,
        "failed": args.streams - completed,
        "added_inter_token_ms_p50": round(percentile(added, 0.50), 1),
        "added_inter_token_ms_p95": round(percentile(added, 0.95), 1),
        "added_inter_token_ms_p99": round(percentile(added, 0.99), 1),
        "added_inter_token_ms_max": round(max(added, default=float("nan")), 1),
        "steady_window_s": round(max(0.0, window_end - window_start), 1),
        "steady_added_inter_token_ms_p50": round(percentile(steady, 0.50), 1),
        "steady_added_inter_token_ms_p95": round(percentile(steady, 0.95), 1),
        "steady_added_inter_token_ms_p99": round(percentile(steady, 0.99), 1),
        "first_token_ms_p50": round(percentile(first, 0.50), 1),
        "first_token_ms_p95": round(percentile(first, 0.95), 1),
        "wall_s": round(wall, 1),
        # CPU each process used during the run (with the warm-up stream); compare with
        # wall_s: a process near 1 CPU-second per second was the bottleneck.
        "cpu_s": cpu_seconds,
        "app_rss_mb_before": round(rss_before / 2**20, 1),
        "app_rss_mb_peak": round(peak[0] / 2**20, 1),
        "app_rss_mb_after": round(rss_after / 2**20, 1),
        "target": {"streams": 200, "added_inter_token_ms_p95": 20},
    }
    print(json.dumps(summary))


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


if __name__ == "__main__":
    main()
