"""Prometheus metrics: every metric the app exports (``/metrics`` itself and the HTTP
middleware are in ``app.core.request_metrics``; this module imports no web framework,
so services use it freely).

Label values always come from fixed sets: a route template
(``/api/projects/{project_id}``, never the raw path), a method from
``KNOWN_METHODS`` (anything else is ``other``), an error kind from the app's own
classes. A label taken raw from a request would let anybody create series without
end (``curl -X FOO$RANDOM``).

The code that observes a metric imports its object from here; the metric names are
what the alert rules in ``monitoring/`` and the dashboard use.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# --- HTTP --------------------------------------------------------------------------------------
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"

HTTP_REQUESTS = Counter(
    "knowledgetree_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "knowledgetree_http_request_duration_seconds",
    "Time from request to the end of the response body (whole stream for SSE), by route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

# --- chat ----------------------------------------------------------------------------------------
CHAT_FIRST_TOKEN_SECONDS = Histogram(
    "knowledgetree_chat_first_token_seconds",
    "Time from the start of a chat turn to its first token (model delay included).",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30),
)
CHAT_TOKENS_STREAMED = Counter(
    "knowledgetree_chat_tokens_streamed_total",
    "Text pieces (token events) forwarded from the model to browsers.",
)
CHAT_OPEN_STREAMS = Gauge(
    "knowledgetree_chat_open_streams",
    "Chat answers being streamed right now (SSE responses open).",
)
RETRIEVAL_SECONDS = Histogram(
    "knowledgetree_retrieval_seconds",
    "Time to find the passages for a chat question (embedding wait + fused search).",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1),
)
# The kinds of app.services.llm.base's LLMError classes, plus "internal" (a bug).
LLM_ERROR_KINDS = frozenset(
    {
        "model_error",
        "rate_limited",
        "overloaded",
        "unavailable",
        "timeout",
        "stream_interrupted",
        "rejected",
        "internal",
    }
)
LLM_ERRORS = Counter(
    "knowledgetree_llm_errors_total",
    "Chat turns that ended with an error, by kind (rate_limited, overloaded, ...).",
    ["kind"],
)

# --- ingestion -----------------------------------------------------------------------------------
INGEST_QUEUE_LENGTH = Gauge(
    "knowledgetree_ingest_queue_length",
    "Documents waiting to be processed (status queued), as last seen by the worker.",
)
INGEST_DOCUMENTS = Counter(
    "knowledgetree_ingest_documents_total",
    "Documents the worker finished, by outcome (ready or failed).",
    ["status"],
)
INGEST_WORKER_ERRORS = Counter(
    "knowledgetree_ingest_worker_errors_total",
    "Errors that stopped an ingestion lane (database gone, model missing ...).",
)

# --- billing -------------------------------------------------------------------------------------
# Stripe event types the app knows; others are counted as "other".
WEBHOOK_EVENT_TYPES = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
    }
)
WEBHOOK_RESULTS = frozenset({"processed", "ignored", "duplicate", "invalid", "error"})
WEBHOOK_EVENTS = Counter(
    "knowledgetree_webhook_events_total",
    "Stripe webhook events received, by event type and result "
    "(processed, ignored, duplicate, invalid, error).",
    ["type", "result"],
)
# The `limit` names of app.services.usage.LimitExceeded.
QUOTA_LIMITS = frozenset(
    {
        "messages_per_month",
        "projects",
        "documents",
        "storage_mb",
        "max_upload_mb",
        "artifact_versions",
        "model",
    }
)
QUOTA_REJECTIONS = Counter(
    "knowledgetree_quota_rejections_total",
    "Requests refused because a plan limit was reached (402), by limit.",
    ["limit"],
)


INGEST_OUTCOMES = frozenset({"ready", "failed"})


def bounded(value: str, allowed: frozenset[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``other``: the guard for every label."""
    return value if value in allowed else OTHER


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request; ``route`` is a template (or ``(unmatched)``)."""
    method = bounded(method, KNOWN_METHODS)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_REQUEST_SECONDS.labels(method, route).observe(seconds)


def count_webhook_event(event_type: str, result: str) -> None:
    WEBHOOK_EVENTS.labels(
        bounded(event_type, WEBHOOK_EVENT_TYPES), bounded(result, WEBHOOK_RESULTS)
    ).inc()


def count_quota_rejection(limit: str) -> None:
    QUOTA_REJECTIONS.labels(bounded(limit, QUOTA_LIMITS)).inc()


def count_llm_error(kind: str) -> None:
    LLM_ERRORS.labels(bounded(kind, LLM_ERROR_KINDS)).inc()


def _declare_series() -> None:
    """Every label value at 0 from the start: alerts and rate() see a series before its
    first event, and an absent series means "not exported", never "zero so far"."""
    for kind in LLM_ERROR_KINDS | {OTHER}:
        LLM_ERRORS.labels(kind)
    for outcome in INGEST_OUTCOMES:
        INGEST_DOCUMENTS.labels(outcome)
    for event_type in WEBHOOK_EVENT_TYPES | {OTHER}:
        for result in WEBHOOK_RESULTS | {OTHER}:
            WEBHOOK_EVENTS.labels(event_type, result)
    for limit in QUOTA_LIMITS | {OTHER}:
        QUOTA_REJECTIONS.labels(limit)


_declare_series()
