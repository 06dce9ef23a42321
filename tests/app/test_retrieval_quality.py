"""Retrieval quality on the shipped sample corpus, with the real embedding model.

Every question's correct passage (identified by its document and a phrase only that
passage contains) must be among the top 5 results of the hybrid search, and the mean
reciprocal rank at least 0.8. A smoke test, not the quality measure: the ranking is
chosen on bench/eval (docs/ARCHITECTURE.md, "Ranking"), never on these six documents.
Reciprocal rank fusion rewards passages both lists agree on, so "How do bees survive
the cold months?", which shares no word with its passage, ranks it 5th behind passages
that are in both lists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.utils.documents import make_project, upload, wait_until_done

pytestmark = pytest.mark.timeout(600)

CORPUS = Path(__file__).resolve().parents[2] / "samples" / "corpus"

QUESTIONS = [
    ("How can I tell that my sourdough starter is ready to use?", "sourdough.md", "double in size"),
    ("What oven temperature should the bread be baked at?", "sourdough.md", "250 degrees"),
    ("What is the grey liquid on top of a starter?", "sourdough.md", "hooch"),
    ("How do I find the hole in a punctured inner tube?", "bicycle-maintenance.md", "hiss"),
    ("When does a stretched chain need replacing?", "bicycle-maintenance.md", "0.5 percent"),
    ("Why does my hydraulic brake lever feel spongy?", "bicycle-maintenance.md", "bled"),
    ("How do bees tell each other where the flowers are?", "honeybees.md", "waggle run"),
    ("How long does a worker bee live in summer?", "honeybees.md", "six weeks"),
    ("How do bees survive the cold months?", "honeybees.md", "cluster"),
    ("Which direction should solar panels face?", "solar-power.md", "face south"),
    ("Why choose microinverters over a string inverter?", "solar-power.md", "microinverters"),
    ("How long do solar panels keep their power?", "solar-power.md", "25 years"),
    ("What makes some volcanic eruptions explosive?", "volcanoes.txt", "viscosity"),
    ("What destroyed Pompeii?", "volcanoes.txt", "pyroclastic flow is"),
    ("How do scientists predict an eruption?", "volcanoes.txt", "warning signs"),
    ("What water temperature is best for green tea?", "tea.html", "70 to 80"),
    ("Does tea have less caffeine than coffee?", "tea.html", "milligrams of caffeine"),
]


async def test_correct_passage_ranks_in_top_five(client, user_factory):
    user = await user_factory()
    project_id = await make_project(client, user, "Corpus")
    paths = sorted(p for p in CORPUS.iterdir() if p.name != "LICENSE.md")
    response = await upload(client, user, project_id, *paths)
    assert response.status_code == 202, response.text
    for document in response.json():
        done = await wait_until_done(client, user, project_id, document["id"])
        assert done["status"] == "ready", done

    misses = []
    reciprocal_ranks = []
    for question, document_name, phrase in QUESTIONS:
        response = await client.post(
            f"/api/projects/{project_id}/search",
            json={"query": question, "top_k": 5},
            headers=user.headers,
        )
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        ranks = [
            r["rank"]
            for r in results
            if r["document_name"] == document_name and phrase in r["text"]
        ]
        reciprocal_ranks.append(1 / ranks[0] if ranks else 0)
        if not ranks:
            misses.append((question, [(r["document_name"], r["text"][:60]) for r in results]))
    assert not misses, misses
    mean_reciprocal_rank = sum(reciprocal_ranks) / len(reciprocal_ranks)
    assert mean_reciprocal_rank >= 0.8, mean_reciprocal_rank
