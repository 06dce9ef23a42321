"""GET /api/account: plan, usage this period with percentages, storage, reset date."""

from __future__ import annotations

from datetime import UTC, datetime

from app.services.usage import calendar_month


async def test_a_new_account_is_on_free_with_nothing_used(client, user_factory, settings):
    user = await user_factory()
    response = await client.get("/api/account", headers=user.headers)
    assert response.status_code == 200, response.text
    account = response.json()
    assert account["email"] == user.email
    assert account["subscription"]["plan"] == "free"
    assert account["subscription"]["status"] == "none"
    assert account["limits"]["messages_per_month"] == 100
    assert account["limits"]["max_upload_mb"] == min(10, settings.max_upload_mb)
    assert account["usage"]["messages"] == {"used": 0, "limit": 100, "percent": 0.0}
    assert account["usage"]["projects"] == {"used": 0, "limit": 3, "percent": 0.0}
    assert account["storage_bytes"] == 0
    reset = calendar_month(datetime.now(UTC))[1]
    assert datetime.fromisoformat(account["reset_at"]) == reset
    assert account["upgrade_url"] == f"{settings.public_url}/pricing"


async def test_usage_and_percentages_follow_what_the_user_does(
    billing_client, user_factory, set_usage
):
    user = await user_factory()
    await billing_client.post("/api/projects", json={"name": "One"}, headers=user.headers)
    await set_usage(user.id, 25)
    account = (await billing_client.get("/api/account", headers=user.headers)).json()
    assert account["usage"]["messages"] == {"used": 25, "limit": 100, "percent": 25.0}
    assert account["usage"]["projects"] == {"used": 1, "limit": 3, "percent": 33.3}


async def test_the_account_needs_a_login(client):
    assert (await client.get("/api/account")).status_code == 401
