"""/api/conversations: list, load, rename, delete, search, export; scoped to the user."""

from __future__ import annotations

import asyncio
import uuid

from tests.app.utils.chat import ask
from tests.app.utils.indexed_project import index_project
from tests.fakes.anthropic_server import Script


async def test_list_newest_activity_first_with_titles(
    chat_client, user_factory, anthropic_fake
) -> None:
    user = await user_factory()
    other = await user_factory()
    first = await ask(chat_client, user.headers, "What is the first question?")
    await asyncio.sleep(0.01)
    second = await ask(chat_client, user.headers, "A second one")
    await ask(chat_client, other.headers, "Not yours")
    await asyncio.sleep(0.01)
    # New activity in the first conversation moves it to the top.
    await ask(chat_client, user.headers, "follow-up", conversation_id=first["conversation_id"])

    response = await chat_client.get("/api/conversations", headers=user.headers)
    assert response.status_code == 200
    listed = response.json()
    assert [c["id"] for c in listed] == [first["conversation_id"], second["conversation_id"]]
    assert listed[0]["title"] == "What is the first question?"
    assert listed[0]["message_count"] == 4
    assert listed[0]["last_activity_at"] > listed[1]["last_activity_at"]


async def test_long_first_question_gives_a_short_title(chat_client, user_factory) -> None:
    user = await user_factory()
    question = "Please explain " + "in great detail " * 20 + "everything"
    done = await ask(chat_client, user.headers, question)
    conversation = (
        await chat_client.get(f"/api/conversations/{done['conversation_id']}", headers=user.headers)
    ).json()
    assert len(conversation["title"]) <= 80 and conversation["title"].endswith("…")
    assert conversation["title"].startswith("Please explain in great detail")


async def test_rename_and_delete(chat_client, user_factory, anthropic_fake) -> None:
    user = await user_factory()
    done = await ask(chat_client, user.headers, "original question")
    url = f"/api/conversations/{done['conversation_id']}"

    response = await chat_client.patch(url, json={"title": "  Refunds  "}, headers=user.headers)
    assert response.status_code == 200 and response.json()["title"] == "Refunds"
    # A renamed conversation keeps its name when it goes on.
    await ask(chat_client, user.headers, "more", conversation_id=done["conversation_id"])
    assert (await chat_client.get(url, headers=user.headers)).json()["title"] == "Refunds"

    assert (
        await chat_client.patch(url, json={"title": ""}, headers=user.headers)
    ).status_code == 422
    assert (await chat_client.delete(url, headers=user.headers)).status_code == 204
    assert (await chat_client.get(url, headers=user.headers)).status_code == 404
    assert (await chat_client.get("/api/conversations", headers=user.headers)).json() == []


async def test_search_finds_titles_and_messages_of_own_conversations(
    chat_client, user_factory, anthropic_fake
) -> None:
    user = await user_factory()
    other = await user_factory()
    anthropic_fake.default = Script(text="The keeper climbs 217 steps every evening.")
    lighthouse = await ask(chat_client, user.headers, "Tell me about the lighthouse")
    anthropic_fake.default = Script(text="Nothing special here, 100% sure.")
    plain = await ask(chat_client, user.headers, "Something else")
    await ask(chat_client, other.headers, "lighthouse secrets of another user")

    async def search(q: str) -> list[dict]:
        response = await chat_client.get(
            "/api/conversations/search", params={"q": q}, headers=user.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    by_title = await search("LIGHTHOUSE")
    assert [hit["id"] for hit in by_title] == [lighthouse["conversation_id"]]
    by_answer = await search("217 steps")
    assert [hit["id"] for hit in by_answer] == [lighthouse["conversation_id"]]
    assert "217 steps" in by_answer[0]["snippet"]
    # LIKE wildcards are searched for literally.
    assert [hit["id"] for hit in await search("100%")] == [plain["conversation_id"]]
    assert await search("_") == []
    assert await search("no such words") == []
    missing = await chat_client.get("/api/conversations/search", headers=user.headers)
    assert missing.status_code == 422


async def test_export_markdown_with_sources_as_footnotes(
    chat_client, user_factory, anthropic_fake, chat_settings
) -> None:
    user = await user_factory()
    project = await index_project(chat_client, user.headers, chat_settings)
    anthropic_fake.default = Script(text="Within 30 days [1], paid in five days [1].")
    done = await ask(
        chat_client,
        user.headers,
        "Refund deadline?",
        project_id=str(project.id),
        max_context_chunks=2,
    )
    response = await chat_client.get(
        f"/api/conversations/{done['conversation_id']}/export", headers=user.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    assert response.headers["content-disposition"] == 'attachment; filename="refund-deadline.md"'
    markdown = response.text
    assert markdown.startswith("# Refund deadline?\n")
    assert "## You · " in markdown and "## Assistant · " in markdown and " UTC" in markdown
    assert "Within 30 days [^m2-1], paid in five days [^m2-1]." in markdown
    assert "[^m2-1]: refund-policy.pdf, page 1, “Refunds” (similarity " in markdown
    assert "Customers may ask for a refund within 30 days" in markdown


async def test_loaded_conversation_shows_incomplete_answers(
    chat_client, chat_app, user_factory, anthropic_fake
) -> None:
    user = await user_factory()
    anthropic_fake.default = Script(text="one two three four", failure="midstream_error")
    done = await ask(chat_client, user.headers, "will break")
    body = (
        await chat_client.get(f"/api/conversations/{done['conversation_id']}", headers=user.headers)
    ).json()
    assistant = body["messages"][1]
    assert assistant["status"] == "incomplete" and assistant["content"] == "one two three "
    assert "interrupted" in assistant["error"]
    export = await chat_client.get(
        f"/api/conversations/{done['conversation_id']}/export", headers=user.headers
    )
    assert "incomplete: The answer was interrupted" in export.text


async def test_other_users_conversations_are_404(chat_client, user_factory) -> None:
    owner = await user_factory()
    stranger = await user_factory()
    done = await ask(chat_client, owner.headers, "private")
    url = f"/api/conversations/{done['conversation_id']}"
    for method, path, body in [
        ("GET", url, None),
        ("PATCH", url, {"title": "mine now"}),
        ("DELETE", url, None),
        ("GET", f"{url}/export", None),
        ("GET", f"/api/conversations/{uuid.uuid4()}", None),
    ]:
        response = await chat_client.request(method, path, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, path)
    assert (await chat_client.get("/api/conversations", headers=stranger.headers)).json() == []
    assert (
        await chat_client.get(
            "/api/conversations/search", params={"q": "private"}, headers=stranger.headers
        )
    ).json() == []
    # Still there for its owner.
    assert (await chat_client.get(url, headers=owner.headers)).json()["title"] == "private"
