"""POST /api/projects/{id}/search: hybrid results, validation, isolation."""

from __future__ import annotations

import pytest

from tests.app.utils import samples
from tests.app.utils.documents import make_project, upload, wait_until_done

pytestmark = pytest.mark.timeout(300)


async def ingest(client, user, project_id, *paths):
    response = await upload(client, user, project_id, *paths)
    assert response.status_code == 202, response.text
    for document in response.json():
        done = await wait_until_done(client, user, project_id, document["id"])
        assert done["status"] == "ready", done["error"]
    return response.json()


async def search(client, user, project_id, **body):
    return await client.post(f"/api/projects/{project_id}/search", json=body, headers=user.headers)


async def test_search_returns_ranked_cited_chunks(client, user_factory, tmp_path):
    user = await user_factory()
    project_id = await make_project(client, user)
    await ingest(
        client, user, project_id, samples.make_pdf(tmp_path), samples.make_markdown(tmp_path)
    )
    response = await search(client, user, project_id, query="who gave the keeper bread?", top_k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == "who gave the keeper bread?"
    results = body["results"]
    assert 1 <= len(results) <= 3
    assert [r["rank"] for r in results] == list(range(1, len(results) + 1))
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    best = results[0]
    assert best["document_name"] == "lighthouse.pdf"
    assert best["page"] == 2
    assert "baker" in best["text"]
    assert 0 < best["similarity"] <= 1
    assert best["vector_rank"] == 1

    response = await search(client, user, project_id, query="which port for HTTPS", top_k=1)
    [hit] = response.json()["results"]
    assert hit["document_name"] == "guide.md"
    assert hit["heading"] == "Install Guide > On Debian > Firewall"
    assert hit["page"] is None


async def test_keyword_hits_carry_their_vector_similarity(client, user_factory, tmp_path):
    user = await user_factory()
    project_id = await make_project(client, user)
    await ingest(client, user, project_id, samples.make_docx(tmp_path))
    response = await search(client, user, project_id, query="reimbursed", top_k=5)
    results = response.json()["results"]
    matched = [r for r in results if r["text_rank"] is not None]
    assert matched, results
    assert "reimbursed" in matched[0]["text"]
    assert all(isinstance(r["similarity"], float) for r in results)


async def test_min_similarity_filters_weak_hits(client, user_factory, tmp_path):
    user = await user_factory()
    project_id = await make_project(client, user)
    await ingest(client, user, project_id, samples.make_html(tmp_path))
    everything = (await search(client, user, project_id, query="aphids", top_k=10)).json()
    assert everything["results"]
    strict = await search(client, user, project_id, query="aphids", top_k=10, min_similarity=0.99)
    assert strict.status_code == 200
    assert strict.json()["results"] == []
    threshold = min(r["similarity"] for r in everything["results"]) + 1e-6
    some = await search(
        client, user, project_id, query="aphids", top_k=10, min_similarity=threshold
    )
    assert all(r["similarity"] >= threshold for r in some.json()["results"])
    assert len(some.json()["results"]) < len(everything["results"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "top_k": 10_000}, "top_k"),
        ({"query": "x", "min_similarity": 1.5}, "min_similarity"),
        ({"query": "x", "min_similarity": -0.1}, "min_similarity"),
        ({"query": ""}, "query"),
        ({"top_k": 3}, "query"),
        ({"query": "x", "top_k": "many"}, "top_k"),
    ],
)
async def test_out_of_range_parameters_answer_422_naming_the_field(
    client, user_factory, body, field
):
    user = await user_factory()
    project_id = await make_project(client, user)
    response = await search(client, user, project_id, **body)
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert ["body", field] in locations


async def test_invalid_json_answers_422(client, user_factory):
    user = await user_factory()
    project_id = await make_project(client, user)
    response = await client.post(
        f"/api/projects/{project_id}/search",
        content=b"{not json",
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422


async def test_search_is_isolated_between_users_and_projects(client, user_factory, tmp_path):
    alice = await user_factory()
    bob = await user_factory()
    alice_project = await make_project(client, alice, "Alice")
    bob_project = await make_project(client, bob, "Bob")
    await ingest(client, alice, alice_project, samples.make_pdf(tmp_path))
    await ingest(client, bob, bob_project, samples.make_html(tmp_path))

    # Bob cannot search Alice's project (404, as if it did not exist) ...
    response = await search(client, bob, alice_project, query="lighthouse keeper")
    assert response.status_code == 404
    # ... and his own project never returns Alice's chunks, even for her words.
    response = await search(client, bob, bob_project, query="lighthouse keeper", top_k=50)
    assert response.status_code == 200
    assert {r["document_name"] for r in response.json()["results"]} == {"page.html"}
    # A second project of Alice's is separate too.
    empty = await make_project(client, alice, "Empty")
    response = await search(client, alice, empty, query="lighthouse keeper")
    assert response.json()["results"] == []
    # No token: 401.
    response = await client.post(f"/api/projects/{alice_project}/search", json={"query": "x"})
    assert response.status_code == 401
