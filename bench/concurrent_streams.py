"""Many chat streams at once on ONE app process (uvicorn, one worker).

N clients (default 200) ask a question within --ramp seconds (default 5) and read the
whole answer (400 deltas, 20 s). The model stand-in (its own process) sends a delta
every --token-delay seconds (default 50 ms: 20 events/s per stream, 4000 events/s in
all at 200 streams). Each delta's text carries the moment the stand-in sent it
(`time.monotonic()`, one clock for all processes of the machine), so for two
consecutive tokens the client knows both gaps: the one the stand-in sent and the one
it received. The difference is the inter-token delay the app added (with the
loopback); the stand-in's own lateness on a busy 2-core machine is not counted
against the app. Reported: that added inter-token delay (p50/p95/p99/max), the same
in the steady window (all N streams open, none starting or ending), each token's
transit time (sent by the stand-in -> read by the client), the gap against the
nominal 50 ms schedule (which does include the stand-in's lateness), time to the first
token under load, streams completed/failed, CPU seconds of each process, and the
app's memory (RSS) before, at the peak and after. The clients use aiohttp (C HTTP
parser), so the measuring side takes as little of the machine as it can.
The target and the current figure: docs/BENCHMARKS.md.

    .venv/bin/python bench/concurrent_streams.py [--streams 200] [--tokens 400] [--ramp 5]

Prints a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._chat_stack import ChatStack, parse_stamp, percentile


async def one_stream(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict,
    start: asyncio.Event,
    results: list,
    delay: float = 0,
) -> None:
    """Ask one question; keep (arrival, stand-in send time) per token, and the status."""
    await start.wait()
    await asyncio.sleep(delay)
    sent = time.perf_counter()  # CLOCK_MONOTONIC on Linux, like time.monotonic()
    tokens: list[tuple[float, float]] = []
    status = "failed"
    event = ""
    try:
        async with session.post(
            url, json={"message": "Tell me a story"}, headers=headers
        ) as response:
            response.raise_for_status()
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    if event == "token":
                        arrived = time.perf_counter()
                        _, stamped = parse_stamp(json.loads(line[5:])["text"])
                        tokens.append((arrived, stamped))
                    elif event == "done":
                        status = json.loads(line[5:])["status"]
                    elif event == "error":
                        status = "error: " + json.loads(line[5:])["kind"]
    except (aiohttp.ClientError, TimeoutError) as error:
        status = f"error: {type(error).__name__}"
    results.append((sent, tokens, status))


def _added_ms(earlier: tuple[float, float], later: tuple[float, float]) -> float:
    """How much longer the client waited between two tokens than the stand-in did."""
    received_gap = later[0] - earlier[0]
    sent_gap = later[1] - earlier[1]
    return max(0.0, (received_gap - sent_gap) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=400, help="deltas per answer")
    parser.add_argument("--token-delay", type=float, default=0.05)
    parser.add_argument(
        "--ramp", type=float, default=5.0, help="spread the stream starts over this many seconds"
    )
    args = parser.parse_args()

    text = " ".join(f"w{i}" for i in range(args.tokens))  # 400 deltas (stamped on the way)
    with ChatStack(token_delay=args.token_delay, text=text, stamp_tokens=True) as stack:
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
            url = f"{stack.base_url}/api/chat/stream"
            connector = aiohttp.TCPConnector(limit=args.streams + 10, force_close=True)
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                # Warm-up: one stream, so model/client pools exist before the burst.
                await one_stream(session, url, headers, _set_event(), [])
                start = asyncio.Event()
                results: list = []
                tasks = [
                    asyncio.create_task(
                        one_stream(
                            session, url, headers, start, results, args.ramp * i / args.streams
                        )
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
    nominal: list[float] = []
    transit: list[float] = []
    first: list[float] = []
    for sent, tokens, _ in results:
        if tokens:
            first.append((tokens[0][0] - sent) * 1000)
        transit.extend((arrived - stamped) * 1000 for arrived, stamped in tokens)
        for earlier, later in itertools.pairwise(tokens):
            added.append(_added_ms(earlier, later))
            nominal.append(max(0.0, (later[0] - earlier[0] - args.token_delay) * 1000))
    # The steady window: every stream has started answering and none has finished. Gaps
    # there measure "N open streams" alone, without the work of starting new ones.
    window_start = max((tokens[0][0] for _, tokens, _ in results if tokens), default=0)
    window_end = min((tokens[-1][0] for _, tokens, _ in results if tokens), default=0)
    steady = [
        _added_ms(earlier, later)
        for _, tokens, _ in results
        for earlier, later in itertools.pairwise(tokens)
        if earlier[0] >= window_start and later[0] <= window_end
    ]
    completed = sum(1 for _, _, status in results if status == "complete")
    failures = Counter(status for _, _, status in results if status != "complete")
    summary = {
        "benchmark": "concurrent_streams",
        "streams": args.streams,
        "tokens_per_stream": args.tokens,
        "model_token_delay_ms": args.token_delay * 1000,
        "completed": completed,
        "failed": args.streams - completed,
        "failures": dict(failures),
        "added_inter_token_ms_p50": round(percentile(added, 0.50), 1),
        "added_inter_token_ms_p95": round(percentile(added, 0.95), 1),
        "added_inter_token_ms_p99": round(percentile(added, 0.99), 1),
        "added_inter_token_ms_max": round(max(added, default=float("nan")), 1),
        "steady_window_s": round(max(0.0, window_end - window_start), 1),
        "steady_added_inter_token_ms_p50": round(percentile(steady, 0.50), 1),
        "steady_added_inter_token_ms_p95": round(percentile(steady, 0.95), 1),
        "steady_added_inter_token_ms_p99": round(percentile(steady, 0.99), 1),
        "token_transit_ms_p50": round(percentile(transit, 0.50), 1),
        "token_transit_ms_p95": round(percentile(transit, 0.95), 1),
        "nominal_added_inter_token_ms_p95": round(percentile(nominal, 0.95), 1),
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
