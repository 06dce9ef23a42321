"""What observability costs: request latency and chat first-token time with Sentry
(traces at the default SENTRY_TRACES_SAMPLE_RATE, sent to a local envelope stand-in)
and the request middleware (request id, JSON access log, HTTP metrics) on, against
both off, in one run.

Two app processes run side by side on the same database and the same Anthropic
stand-in; requests alternate between them, so a slow moment of the machine hits both.
"Off" is the same app built by ``bench/_bare_app.py``: no SENTRY_DSN and without
``RequestContextMiddleware`` (the few counter increments inside the chat code stay:
about a microsecond each). Target: at most 1 ms added at p95 (docs/BENCHMARKS.md).

    .venv/bin/python bench/observability_overhead.py [--requests 400] [--chats 100]

Prints a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._chat_stack import ROOT, ChatStack, _free_port, percentile
from bench.chat_latency import first_token_latency
from tests.fakes.sentry_server import SentryStandIn


def start_bare_app(stack: ChatStack) -> tuple[subprocess.Popen, str]:
    """The same app with observability off, on its own port."""
    port = _free_port()
    env = {key: value for key, value in stack.env.items() if key != "SENTRY_DSN"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench._bare_app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the bare app did not become ready")


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 0.5), 2), "p95": round(percentile(values, 0.95), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="GET /api/projects per app")
    parser.add_argument("--chats", type=int, default=100, help="chat streams per app")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--without-sentry", action="store_true", help="'on' without Sentry: the middleware alone"
    )
    args = parser.parse_args()

    with (
        SentryStandIn() as sentry,
        ChatStack(
            first_token_delay=0.05,
            text="Answer [1] " * 20,
            stamp_tokens=True,
            # INFO as in production, so the access line is written (to this stderr).
            # Enterprise: no monthly message limit in the way of 240 chats.
            app_env={
                "LOG_LEVEL": "INFO",
                "DEFAULT_PLAN": "enterprise",
                **({} if args.without_sentry else {"SENTRY_DSN": sentry.dsn}),
            },
        ) as stack,
    ):
        bare, bare_url = start_bare_app(stack)
        try:
            headers = stack.login()
            project_id = stack.create_project(headers)
            urls = {"on": stack.base_url, "off": bare_url}
            request_ms: dict[str, list[float]] = {"on": [], "off": []}
            token_ms: dict[str, list[float]] = {"on": [], "off": []}
            clients = {name: httpx.Client(base_url=url, timeout=60) for name, url in urls.items()}
            # CPU time each app process spends, per measured phase: unlike wall-clock
            # latency it does not move with the load other processes put on the machine.
            processes = {"on": psutil.Process(stack.app.pid), "off": psutil.Process(bare.pid)}
            cpu_ms: dict[str, dict[str, float]] = {"requests": {}, "chats": {}}

            def cpu_seconds(name: str) -> float:
                times = processes[name].cpu_times()
                return times.user + times.system

            for _ in range(args.warmup):
                for name in ("on", "off"):
                    clients[name].get("/api/projects", headers=headers).raise_for_status()
            cpu_before = {name: cpu_seconds(name) for name in processes}
            for number in range(args.requests):
                for name in ("on", "off") if number % 2 else ("off", "on"):
                    started = time.perf_counter()
                    clients[name].get("/api/projects", headers=headers).raise_for_status()
                    request_ms[name].append((time.perf_counter() - started) * 1000)
            for name in processes:
                spent = cpu_seconds(name) - cpu_before[name]
                cpu_ms["requests"][name] = round(spent * 1000 / args.requests, 3)
            body = {"message": "What is the refund policy?", "project_id": project_id}
            for _ in range(args.warmup):
                for name in ("on", "off"):
                    first_token_latency(clients[name], headers, body)
            cpu_before = {name: cpu_seconds(name) for name in processes}
            for number in range(args.chats):
                for name in ("on", "off") if number % 2 else ("off", "on"):
                    _, token, model_own = first_token_latency(clients[name], headers, body)
                    token_ms[name].append((token - model_own) * 1000)
            for name in processes:
                spent = cpu_seconds(name) - cpu_before[name]
                cpu_ms["chats"][name] = round(spent * 1000 / args.chats, 3)
            for client in clients.values():
                client.close()
        finally:
            ChatStack._stop(bare)
        time.sleep(1)
        transactions = len(sentry.items("transaction"))

    result = {
        "benchmark": "observability_overhead",
        "requests_per_app": args.requests,
        "chats_per_app": args.chats,
        "sentry": not args.without_sentry,
        "sentry_transactions_received": transactions,
        "request_ms": {name: summary(values) for name, values in request_ms.items()},
        "chat_first_token_overhead_ms": {
            name: summary(values) for name, values in token_ms.items()
        },
        # App CPU per request / per chat (the whole answer streamed), each app alone.
        "app_cpu_ms_per_request": cpu_ms["requests"],
        "app_cpu_ms_per_chat": cpu_ms["chats"],
    }
    for key in ("app_cpu_ms_per_request", "app_cpu_ms_per_chat"):
        result[key]["added"] = round(result[key]["on"] - result[key]["off"], 3)
    for key in ("request_ms", "chat_first_token_overhead_ms"):
        on, off = result[key]["on"], result[key]["off"]
        result[key]["added"] = {p: round(on[p] - off[p], 2) for p in ("p50", "p95")}
    print(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
