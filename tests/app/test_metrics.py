"""/metrics: bounded labels, local callers only, and the named series after real work.

The registry is the process-wide default one, so each test compares values before
and after what it does instead of expecting absolute numbers.
"""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.app.utils.indexed_project import index_project
from tests.fakes.anthropic_server import FakeAnthropicServer, Script


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics as {(name, labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: dict, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for (n, labels) in samples if n == name and label in dict(labels)}


async def test_unknown_methods_share_one_series(client: httpx.AsyncClient):
    """`curl -X FOO$RANDOM` must not create a series per request."""
    invented = [f"FOO{uuid.uuid4().hex[:8].upper()}" for _ in range(3)]
    before = await scrape(client)
    for method in invented:
        await client.request(method, "/api/projects")
    after = await scrape(client)

    methods = label_values(after, "knowledgetree_http_requests_total", "method")
    assert not methods & set(invented), f"raw methods became labels: {methods & set(invented)}"
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    name = "knowledgetree_http_requests_total"
    counted = sum(
        after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == name and dict(key[1])["method"] == "other"
    )
    assert counted == 3


async def test_routes_are_labelled_by_template_not_raw_path(client, user_factory):
    user = await user_factory()
    project_id = uuid.uuid4()
    response = await client.get(f"/api/projects/{project_id}", headers=user.headers)
    assert response.status_code == 404
    await client.get(f"/no/such/{uuid.uuid4()}")
    routes = label_values(await scrape(client), "knowledgetree_http_requests_total", "route")
    assert "/api/projects/{project_id}" in routes
    assert "(unmatched)" in routes
    assert not any(str(project_id) in route or "/no/such" in route for route in routes)


async def test_metrics_refused_to_remote_and_proxied_callers(app):
    remote = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 403
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=local, base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 200
        # Through nginx the peer is 127.0.0.1 too: the proxy's header gives it away.
        proxied = await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        assert proxied.status_code == 403
        assert (await client.get("/metrics", headers={"X-Real-IP": "1.2.3.4"})).status_code == 403


async def test_allowed_networks_are_a_setting(settings):
    from app.main import create_app

    app = create_app(settings.model_copy(update={"metrics_allowed_networks": []}))
    local = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=local, base_url="http://t") as client:
        assert (await client.get("/metrics")).status_code == 403


async def test_named_series_after_a_chat(
    chat_client: httpx.AsyncClient,
    chat_settings,
    user_factory,
    anthropic_fake: FakeAnthropicServer,
):
    user = await user_factory()
    project = await index_project(chat_client, user.headers, chat_settings)
    before = await scrape(chat_client)

    anthropic_fake.default = Script(text="Three to five days [1].")
    response = await chat_client.post(
        "/api/chat/stream",
        json={"message": "How long is a refund?", "project_id": str(project.id)},
        headers=user.headers,
    )
    tokens = response.text.count("event: token")
    assert tokens
    anthropic_fake.default = Script(failure="rate_limit")
    response = await chat_client.post(
        "/api/chat/stream", json={"message": "Again?"}, headers=user.headers
    )
    assert "event: error" in response.text
    after = await scrape(chat_client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("knowledgetree_chat_first_token_seconds_count") == 1
    assert grew("knowledgetree_chat_tokens_streamed_total") == tokens
    assert grew("knowledgetree_retrieval_seconds_count") == 1
    assert grew("knowledgetree_llm_errors_total", kind="rate_limited") == 1
    assert value(after, "knowledgetree_chat_open_streams") == 0  # both streams closed
    assert (
        grew(
            "knowledgetree_http_requests_total",
            method="POST",
            route="/api/chat/stream",
            status="200",
        )
        == 2
    )
    assert (
        grew(
            "knowledgetree_http_request_duration_seconds_count",
            method="POST",
            route="/api/chat/stream",
        )
        == 2
    )
    # Declared up front, so dashboards and alerts find them before the first event.
    families = {key[0] for key in after}
    for name in (
        "knowledgetree_ingest_queue_length",
        "knowledgetree_query_embedding_seconds_count",
    ):
        assert name in families, name
    assert ("knowledgetree_ingest_documents_total", frozenset({("status", "failed")})) in after
    assert (
        "knowledgetree_webhook_events_total",
        frozenset({("type", "invoice.paid"), ("result", "processed")}),
    ) in after
    assert (
        "knowledgetree_quota_rejections_total",
        frozenset({("limit", "messages_per_month")}),
    ) in after
    assert "knowledgetree_ingest_worker_errors_total" in families


def test_labels_outside_the_fixed_sets_become_other():
    from app.core import metrics

    metrics.count_webhook_event("customer.made_up_event", "processed")
    metrics.count_webhook_event("invoice.paid", "whatever")
    metrics.count_quota_rejection("invented-limit")
    assert metrics.WEBHOOK_EVENTS.labels("other", "processed")._value.get() >= 1
    assert metrics.WEBHOOK_EVENTS.labels("invoice.paid", "other")._value.get() >= 1
    assert metrics.QUOTA_REJECTIONS.labels("other")._value.get() >= 1


async def test_webhook_events_and_quota_rejections_are_counted(
    billing_client: httpx.AsyncClient, deliver, set_usage, user_factory, anthropic_fake
):
    before = await scrape(billing_client)
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "customer.made_up_event",
        "data": {"object": {}},
        "created": 1_700_000_000,
    }
    assert (await deliver(event)).status_code == 200
    assert (await deliver(event, secret="whsec_not_the_secret")).status_code == 400
    user = await user_factory()
    await set_usage(user.id, 100)  # the free plan's whole allowance
    refused = await billing_client.post(
        "/api/chat/stream", json={"message": "One more?"}, headers=user.headers
    )
    assert refused.status_code == 402
    after = await scrape(billing_client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    webhooks = "knowledgetree_webhook_events_total"
    assert grew(webhooks, type="other", result="ignored") == 1  # an unknown type: "other"
    assert grew(webhooks, type="other", result="invalid") == 1
    limit = "messages_per_month"
    assert grew("knowledgetree_quota_rejections_total", limit=limit) == 1
