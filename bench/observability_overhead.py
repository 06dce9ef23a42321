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

``--callgrind N``: instead, the chat's first token by instruction count, which the load
of the machine does not move (wall-clock figures of one run swing by ±15 ms). Both apps
run side by side, each in-process under ``valgrind --tool=callgrind`` with
instrumentation off, driven straight through ASGI, their windows alternating (the order
switching each round); instrumentation is switched on when a chat request is handed to
the app and off when the first `token` event leaves it, so the count is exactly the
path to the first token; each chat's count is dumped on its own, the median and p95
of the event loop's thread (which runs the whole path) are reported, with the windows
whose trace Sentry sampled, and the other threads' instructions in the windows
(Sentry's transport sending envelopes) per chat. Each window starts after a pause and a
garbage collection (else what the previous answer left running, or a collection, falls
into one window or another), and what both apps run on a timer (the ingest worker's
queue poll) is stopped before counting. The request asks without a project: retrieval
is the same code in both apps, and ONNX Runtime's spinning worker threads would make
the count wander. To turn the difference into milliseconds, the same two apps then
run natively (no valgrind, alternating too) and the CPU time of the same windows gives
this machine's instructions per millisecond.

Prints a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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


# --- instruction count of the chat's path to its first token (callgrind) ------------------
# Callgrind's client requests, from C (Python cannot issue them itself).
_CALLGRIND_HELPER = r"""
#include <valgrind/callgrind.h>
void kt_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void kt_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS; }
"""


def build_callgrind_helper(folder: Path) -> Path:
    source, library = folder / "kt_callgrind.c", folder / "kt_callgrind.so"
    source.write_text(_CALLGRIND_HELPER)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", library, source], check=True)
    return library


def _asgi_chat(headers: dict[str, str], body: bytes) -> dict:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    raw += [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/chat/stream",
        "raw_path": b"/api/chat/stream",
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }


async def _chat_to_first_token(
    app, helper, headers: dict[str, str], body: bytes, window: dict | None = None
) -> float:
    """One chat through the app's ASGI interface, counted up to its first `token` event;
    the rest of the answer (saving it) runs uncounted and is awaited, so the next chat
    starts on an idle process. Returns the process's CPU seconds in the counted window;
    ``window["sampled"]``: whether Sentry sampled the chat's trace (None: no Sentry)."""
    ended = asyncio.Event()
    state: dict = {"asked": False, "counted": False}

    async def receive() -> dict:
        if not state["asked"]:
            state["asked"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"the chat answered {message['status']}")
        if message["type"] != "http.response.body":
            return
        if not state["counted"] and b"event: token" in message.get("body", b""):
            state["cpu"] = time.process_time() - started
            if helper is not None:
                helper.kt_stop()
            state["counted"] = True
            if window is not None and "sentry_sdk" in sys.modules:
                transaction = sys.modules["sentry_sdk"].get_current_scope().transaction
                window["sampled"] = bool(transaction and transaction.sampled)
        if not message.get("more_body", False):
            ended.set()

    if helper is not None:
        helper.kt_start()
    started = time.process_time()
    await app(_asgi_chat(headers, body), receive, send)
    if not state["counted"]:
        raise RuntimeError("the stream ended without a token")
    return state["cpu"]


def _join_sdk_import() -> None:
    """The Anthropic SDK's import in the background at start-up, over before counting."""
    for thread in threading.enumerate():
        if thread.name == "sdk-import":
            thread.join()


def callgrind_worker(variant: str, warmup: int, helper_path: str | None) -> None:
    """One app in-process, driven by the parent over stdin/stdout: a ``go`` line counts
    one chat (under callgrind when ``helper_path`` gives the client requests) and
    answers with a ``KT {...}`` line (its CPU time, whether Sentry sampled its trace);
    ``exit`` ends. The parent alternates the two apps' windows."""
    if variant == "on":
        from app.main import create_app
    else:
        from bench._bare_app import create_app
    helper = ctypes.CDLL(helper_path) if helper_path else None
    credentials = json.loads(os.environ["KT_BENCH_LOGIN"])
    app = create_app()
    body = json.dumps({"message": "What is the refund policy?"}).encode()

    def reply(data: dict) -> None:
        print("KT " + json.dumps(data), flush=True)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            # Start-up work in the background (the embedding model) done before counting.
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                for _ in range(1200):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.5)
                # Logged in only now: an access token lasts 15 min, and starting under
                # valgrind on a loaded machine can take longer.
                login = await client.post("/api/auth/login", json=credentials)
                login.raise_for_status()
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            # What runs on its own in both apps, whatever the observability, would fall
            # into one window or another: the ingest worker's poll of the queue (every
            # 5 s; under valgrind into one window in three, about 7 Mi) and the SDK import.
            await app.state.ingest_worker.stop()
            await asyncio.to_thread(_join_sdk_import)
            for _ in range(warmup):
                await _chat_to_first_token(app, None, headers, body)
            reply({"ready": True})
            while (await asyncio.to_thread(sys.stdin.readline)).strip() == "go":
                # Each window starts alike: what the last answer left running has finished
                # and the garbage collector has nothing pending.
                await asyncio.sleep(0.5)
                gc.collect()
                window: dict = {}
                cpu = await _chat_to_first_token(app, helper, headers, body, window)
                reply({"cpu_ms": round(cpu * 1000, 3), "sampled": window.get("sampled")})

    asyncio.run(run())


def _totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def _callgrind_counts(out_file: Path) -> tuple[list[int], int]:
    """Per counted chat, in order, the instructions of the event loop's thread (the path
    to the first token: ``out.N-01``, one file per dump; ``summary:`` stays 0 when
    instrumentation starts off), and the other threads' instructions in all the counted
    windows together (the files written at exit, ``out-NN``: Sentry's transport sending
    envelopes, the model's HTTP client...)."""
    parts = out_file.parent.glob(f"{out_file.name}.*-01")
    ordered = sorted(parts, key=lambda path: int(path.name.rsplit(".", 1)[1].split("-")[0]))
    threads = out_file.parent.glob(f"{out_file.name}-*")
    return [_totals(part) for part in ordered], sum(_totals(part) for part in threads)


class _Worker:
    """One app's worker process (``callgrind_worker``), under valgrind or not."""

    def __init__(self, stack: ChatStack, variant: str, env: dict[str, str], warmup: int,
                 valgrind: list[str], helper: Path | None) -> None:  # fmt: skip
        env = {**env, "KT_BENCH_LOGIN": json.dumps(stack.register())}
        self.process = subprocess.Popen(
            [
                *valgrind, sys.executable, __file__, "--callgrind-worker", variant,
                "--warmup", str(warmup), *(["--helper", str(helper)] if helper else []),
            ],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def read(self) -> dict:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("KT "):
                return json.loads(line[3:])
        raise RuntimeError(f"the worker ended (exit code {self.process.wait()})")

    def window(self) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.write("exit\n")
            self.process.stdin.close()
        if self.process.wait(timeout=600) != 0:
            raise RuntimeError(f"a worker failed (exit code {self.process.returncode})")


def _alternate(workers: dict[str, _Worker], chats: int) -> dict[str, list[dict]]:
    """Both apps' windows in turns, the order switching each round, so a slow moment
    of the machine (and the warm-up of either) falls on both."""
    for worker in workers.values():
        worker.read()  # ready: started, warmed up
    windows: dict[str, list[dict]] = {name: [] for name in workers}
    for number in range(chats):
        for name in ("on", "off") if number % 2 else ("off", "on"):
            windows[name].append(workers[name].window())
    for worker in workers.values():
        worker.close()
    return windows


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values)),
        "p95": round(percentile(values, 0.95)),
        "max": round(max(values)),
    }


def run_callgrind(args: argparse.Namespace) -> dict:
    """Both apps under callgrind side by side, windows alternating; then both natively,
    alternating too, on one stack."""
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="kt-callgrind-") as folder,
        SentryStandIn() as sentry,
        ChatStack(
            first_token_delay=0.0,
            text="Answer [1] " * 5,
            app_env={"LOG_LEVEL": "INFO", "DEFAULT_PLAN": "enterprise"},
        ) as stack,
    ):
        helper = build_callgrind_helper(Path(folder))
        common = {
            **stack.env,
            # No retrieval here: no switch to the ONNX encoder in the background either.
            "QUERY_EMBEDDING_BACKEND": "torch",
        }
        common.pop("SENTRY_DSN", None)
        envs = {"on": {**common, "SENTRY_DSN": sentry.dsn}, "off": common}
        outs = {variant: Path(folder) / f"callgrind.{variant}" for variant in envs}
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes"]
        workers = {
            variant: _Worker(
                stack, variant, envs[variant], args.warmup,
                [*valgrind, f"--callgrind-out-file={outs[variant]}"], helper,
            )
            for variant in envs
        }  # fmt: skip
        counted_windows = _alternate(workers, args.callgrind)
        counted: dict[str, list[int]] = {}
        background: dict[str, int] = {}
        for variant, out in outs.items():
            counted[variant], background[variant] = _callgrind_counts(out)
            if len(counted[variant]) != args.callgrind:
                raise RuntimeError(f"{len(counted[variant])} dumps for {args.callgrind} chats")
        native = _alternate(
            {variant: _Worker(stack, variant, envs[variant], args.warmup, [], None)
             for variant in envs},
            args.native_chats,
        )  # fmt: skip
        transactions = len(sentry.items("transaction"))
    sampled = [number for number, w in enumerate(counted_windows["on"]) if w["sampled"]]
    unsampled = [c for n, c in enumerate(counted["on"]) if n not in sampled]
    instructions = {variant: _spread(counts) for variant, counts in counted.items()}
    native_ms = {v: statistics.median(w["cpu_ms"] for w in ws) for v, ws in native.items()}
    # Instructions per ms of CPU on this machine, from the same windows run natively.
    per_ms = {v: instructions[v]["median"] / native_ms[v] for v in instructions}
    rate = statistics.mean(per_ms.values())
    added = {k: instructions["on"][k] - instructions["off"][k] for k in ("median", "p95")}
    return {
        "benchmark": "observability_overhead_callgrind",
        "chats_per_app": args.callgrind,
        "instructions_to_first_token": instructions,
        "added_instructions": added,
        "added_percent": {k: round(100 * added[k] / instructions["off"][k], 1) for k in added},
        "added_ms_equivalent": {k: round(added[k] / rate, 3) for k in added},
        # The windows whose trace Sentry sampled (of the counted ones), and the Sentry
        # app's spread without them.
        "sampled_windows": sampled,
        "on_unsampled": _spread(unsampled) if unsampled else None,
        "instructions_per_chat": counted,
        # The other threads' work in the counted windows, per chat: under valgrind each
        # window lasts about a second, so what they do after one chat (Sentry sending its
        # transaction, sessions, client reports) falls into the next windows.
        "other_threads_instructions_per_chat": {
            v: round(total / args.callgrind) for v, total in background.items()
        },
        "native_cpu_ms_to_first_token_median": {k: round(v, 3) for k, v in native_ms.items()},
        "instructions_per_ms": {k: round(v) for k, v in per_ms.items()},
        "sentry_transactions_received": transactions,
        "load_average": [load_before, os.getloadavg()],
    }


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
    parser.add_argument(
        "--callgrind", type=int, metavar="N", help="count N chats' instructions to the first token"
    )
    parser.add_argument(
        "--native-chats", type=int, default=200, help="with --callgrind: chats timed natively"
    )
    parser.add_argument("--callgrind-worker", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--helper", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind_worker:
        callgrind_worker(args.callgrind_worker, args.warmup, args.helper)
        return
    if args.callgrind:
        result = run_callgrind(args)
        print(json.dumps(result, indent=2))
        print(json.dumps(result))
        return

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
