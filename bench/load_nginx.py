"""Load through nginx and TLS on a provisioned test host: logins, searches, chat streams.

What a real client meets: HTTPS (TLS 1.3) to nginx, nginx's proxy to the live app
colour, the app's Postgres. Run by ``bench/load_host.sh`` (which provisions or reuses the
test host ``kt-bench`` with rate limits raised for the load generator, since every
request comes from one address); direct use against any provisioned test host:

    .venv/bin/python bench/load_nginx.py --domain kt-bench.knowledgetree.test \\
        --address 10.99.0.60 [--duration 60] [--concurrency 8,16,32] [--streams 10,25,50,100]

1. Set-up: ``--users`` accounts are registered and logged in, each gets a project with
   ``--documents`` of the sample documents (samples/corpus), and the run waits until
   they are indexed.
2. Request rate: for each concurrency C, C clients send requests back to back for
   ``--duration`` seconds, a fixed mix: 10 % logins (argon2: the expensive one), 60 %
   searches of a project, 20 % reads (projects, documents), 10 % chat streams (read to
   the end). Reported per kind and in all: requests/s, p50/p95/p99 latency, errors.
3. Concurrent streams: S chat streams opened at once (for each S), each read to its
   ``done`` event. Reported: time to the first token and to ``done`` (p50/p95/p99),
   failed streams. The largest S with p95 of the first token under 1 s and no error is
   the figure in docs/BENCHMARKS.md.

Chat answers come in offline mode (no ANTHROPIC_API_KEY on a test host: the app quotes
the best passages, streamed as tokens), so the figures are the host's own work (retrieval,
streaming, saving), not a model's. The load generator runs on the same machine as the
test host: both share its cores. Prints one JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import ssl
import time
import uuid
from collections import defaultdict
from pathlib import Path

import aiohttp
from aiohttp.abc import AbstractResolver

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples" / "corpus"
PEBBLE_ROOT = (
    Path(os.environ.get("KT_TESTHOST_STATE", "/var/lib/knowledgetree-testhost"))
    / "pebble"
    / "issuer-root.pem"
)
PASSWORD = "load test password 4 the bench"
QUESTIONS = [
    "How often should I clean a bicycle chain?",
    "How do bees make honey?",
    "What does a solar inverter do?",
    "How long does a sourdough starter need?",
    "At what temperature should green tea be brewed?",
    "Why do volcanoes erupt?",
]
INDEXING_TIMEOUT_SECONDS = 900
MIX = [("login", 10), ("search", 60), ("read", 20), ("chat", 10)]


class PinnedResolver(AbstractResolver):
    """The test domain exists only in the test DNS: resolve it to the host's address."""

    def __init__(self, domain: str, address: str) -> None:
        self.domain, self.address = domain, address

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        if host != self.domain:
            raise OSError(f"{host}: only {self.domain} is reachable from this benchmark")
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": at(1.0)}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.base = f"https://{args.domain}"
        self.args = args
        context = ssl.create_default_context(cafile=str(args.cacert))
        self.connector = aiohttp.TCPConnector(
            ssl=context, resolver=PinnedResolver(args.domain, args.address), limit=0
        )
        self.session = aiohttp.ClientSession(
            connector=self.connector, timeout=aiohttp.ClientTimeout(total=120)
        )
        self.users: list[dict] = []

    async def close(self) -> None:
        await self.session.close()

    # -- set-up ---------------------------------------------------------------------
    async def login(self, email: str) -> tuple[int, dict | None]:
        async with self.session.post(
            f"{self.base}/api/auth/login", json={"email": email, "password": PASSWORD}
        ) as response:
            body = await response.json(content_type=None)
            return response.status, body

    async def make_user(self, n: int) -> dict:
        email = f"load-{uuid.uuid4().hex[:10]}-{n}@example.com"
        async with self.session.post(
            f"{self.base}/api/auth/register", json={"email": email, "password": PASSWORD}
        ) as response:
            assert response.status == 202, (response.status, await response.text())
        status, tokens = await self.login(email)
        assert status == 200, (status, tokens)
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        async with self.session.post(
            f"{self.base}/api/projects", json={"name": f"Load {n}"}, headers=headers
        ) as response:
            assert response.status == 201, (response.status, await response.text())
            project = (await response.json())["id"]
        form = aiohttp.FormData()
        samples = [
            path
            for path in sorted(SAMPLES.iterdir())
            if path.suffix in (".md", ".txt", ".html") and path.name != "LICENSE.md"
        ]
        for path in samples[: self.args.documents]:
            form.add_field("files", path.read_bytes(), filename=path.name)
        async with self.session.post(
            f"{self.base}/api/projects/{project}/documents", data=form, headers=headers
        ) as response:
            assert response.status == 202, (response.status, await response.text())
        return {"email": email, "headers": headers, "project": project}

    async def wait_indexed(self, user: dict) -> None:
        deadline = time.monotonic() + INDEXING_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            async with self.session.get(
                f"{self.base}/api/projects/{user['project']}/documents", headers=user["headers"]
            ) as response:
                documents = await response.json()
            states = {d["status"] for d in documents}
            if states == {"ready"}:
                return
            assert "failed" not in states, documents
            await asyncio.sleep(2)
        raise TimeoutError("the sample documents were not indexed in time")

    async def set_up(self) -> float:
        started = time.monotonic()
        self.users = list(
            await asyncio.gather(*(self.make_user(n) for n in range(self.args.users)))
        )
        await asyncio.gather(*(self.wait_indexed(user) for user in self.users))
        return round(time.monotonic() - started, 1)

    # -- one request of each kind (returns ok, seconds to done, seconds to first token)
    async def chat(self, user: dict) -> tuple[bool, float, float | None]:
        started = time.monotonic()
        first: float | None = None
        ok = False
        body = {"message": random.choice(QUESTIONS), "project_id": user["project"]}
        async with self.session.post(
            f"{self.base}/api/chat/stream", json=body, headers=user["headers"]
        ) as response:
            if response.status != 200:
                await response.read()
                return False, time.monotonic() - started, None
            event = ""
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                    if event == "token" and first is None:
                        first = time.monotonic() - started
                    elif event == "error":
                        ok = False
                elif line.startswith("data:") and event == "done":
                    ok = json.loads(line[5:])["status"] == "complete"
        return ok, time.monotonic() - started, first

    async def one(self, kind: str, user: dict) -> tuple[bool, float, float | None]:
        started = time.monotonic()
        if kind == "chat":
            return await self.chat(user)
        if kind == "login":
            status, _ = await self.login(user["email"])
            return status == 200, time.monotonic() - started, None
        if kind == "search":
            request = self.session.post(
                f"{self.base}/api/projects/{user['project']}/search",
                json={"query": random.choice(QUESTIONS)},
                headers=user["headers"],
            )
        else:
            path = random.choice(["/api/projects", f"/api/projects/{user['project']}/documents"])
            request = self.session.get(f"{self.base}{path}", headers=user["headers"])
        async with request as response:
            await response.read()
            return response.status == 200, time.monotonic() - started, None

    # -- phases ---------------------------------------------------------------------
    async def rate(self, concurrency: int, duration: float) -> dict:
        kinds = [kind for kind, weight in MIX for _ in range(weight)]
        latencies: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, int] = defaultdict(int)
        stop = time.monotonic() + duration

        async def client(n: int) -> None:
            rng = random.Random(n)
            while time.monotonic() < stop:
                kind = rng.choice(kinds)
                try:
                    ok, seconds, _ = await self.one(kind, self.users[n % len(self.users)])
                except (aiohttp.ClientError, TimeoutError):
                    ok, seconds = False, 0.0
                latencies[kind].append(seconds)
                if not ok:
                    errors[kind] += 1

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(concurrency)))
        elapsed = time.monotonic() - started
        everything = [s for values in latencies.values() for s in values]
        return {
            "concurrency": concurrency,
            "seconds": round(elapsed, 1),
            "requests": len(everything),
            "requests_per_s": round(len(everything) / elapsed, 1),
            "errors": sum(errors.values()),
            "latency_ms": percentiles(everything),
            "by_kind": {
                kind: {
                    "requests": len(values),
                    "requests_per_s": round(len(values) / elapsed, 1),
                    "errors": errors[kind],
                    "latency_ms": percentiles(values),
                }
                for kind, values in sorted(latencies.items())
            },
        }

    async def streams(self, count: int) -> dict:
        results = await asyncio.gather(
            *(self.chat(self.users[n % len(self.users)]) for n in range(count)),
            return_exceptions=True,
        )
        done = [r for r in results if isinstance(r, tuple)]
        failed = len(results) - len(done) + sum(1 for ok, _, _ in done if not ok)
        return {
            "streams": count,
            "failed": failed,
            "first_token_ms": percentiles([f for ok, _, f in done if ok and f is not None]),
            "done_ms": percentiles([t for ok, t, _ in done if ok]),
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--cacert", type=Path, default=PEBBLE_ROOT)
    # The free plan allows 100 messages a month per account: enough accounts for the chats.
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--documents", type=int, default=2, help="sample documents per project")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--concurrency", default="8,16,32")
    parser.add_argument("--streams", default="10,25,50,100")
    args = parser.parse_args()

    bench = Bench(args)
    try:
        setup_seconds = await bench.set_up()
        print(f"set-up: {args.users} users with indexed projects in {setup_seconds} s", flush=True)
        rates = []
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            result = await bench.rate(concurrency, args.duration)
            rates.append(result)
            print(json.dumps(result), flush=True)
        streams = []
        for count in (int(s) for s in args.streams.split(",")):
            result = await bench.streams(count)
            streams.append(result)
            print(json.dumps(result), flush=True)
    finally:
        await bench.close()
    good = [
        s["streams"]
        for s in streams
        if s["failed"] == 0 and (s["first_token_ms"]["p95"] or 1e9) < 1000
    ]
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "rate": rates,
                "streams": streams,
                "most_streams_p95_first_token_under_1s": max(good) if good else 0,
                "best_requests_per_s_without_errors": max(
                    (r["requests_per_s"] for r in rates if r["errors"] == 0), default=0
                ),
                "load_average": [round(x, 2) for x in load],
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
