"""The ranking's measured parameters, each shown on passages built to need it.

BM25's length normalisation (``Bm25.b``, none by default), the candidates each list brings to the
fusion (``Fusion.depth``) and the stop words kept when written as options were chosen on
bench/eval (docs/ARCHITECTURE.md, "Ranking"); these tests pin what each does, with the
real embedding model and SQL.
"""

from __future__ import annotations

import uuid

import pytest

from app.services import retrieval
from app.services.retrieval import Bm25, Fusion
from tests.app.utils.indexed_project import index_project

pytestmark = pytest.mark.timeout(300)

_FILLER = (
    "The release notes list every change of the version with its author and the issue "
    "it closes, grouped by component and sorted by date, so that packagers can see what "
    "moved between two tags without reading the whole history of the repository. "
)
# One passage explains the command (the term three times in ~90 terms); the other is a
# fragment that only names it, as a NAME line or a section's last words do.
LENGTH_CORPUS = {
    "frobnicate.md": [
        (
            None,
            None,
            "To frobnicate a repository, run the command from its top folder: it walks "
            "every object once, rewrites the packs that changed since the last run and "
            "leaves the others alone. Frobnicate keeps a journal, so an interrupted run "
            "starts again where it stopped instead of from the beginning. Large "
            "repositories take minutes; small ones finish before the prompt returns. "
            "Schedule it weekly from cron, or frobnicate by hand after a big import, "
            "when many loose objects are waiting to be packed and the disk fills quickly.",
        )
    ],
    "commands.md": [(None, None, "frobnicate: tidy the packs.")],
    "notes-1.md": [(None, None, _FILLER * 2)],
    "notes-2.md": [(None, None, _FILLER * 2)],
}


async def test_bm25_prefers_the_explaining_passage_over_a_fragment(
    client, user_factory, settings, db_session
):
    user = await user_factory()
    project = await index_project(client, user.headers, settings, "Length", LENGTH_CORPUS)

    async def first(bm25: Bm25) -> str:
        hits = await retrieval.search(
            db_session, project.id, "frobnicate", mode="keyword", settings=settings, bm25=bm25
        )
        return hits[0].document_name

    # Premise: the textbook b = 0.75 rewards the fragment for being short.
    assert await first(Bm25(b=0.75)) == "commands.md"
    assert await first(retrieval.DEFAULT_BM25) == "frobnicate.md"


# Many passages close in meaning to the question; one with its rare word but about
# something else, so the vector list ranks it low and the keyword list first.
_BEES = [
    "Honeybee foragers tell their sisters where the flowers are by dancing.",
    "A forager bee dances on the comb to point at the nectar.",
    "Bees share the location of a good patch of flowers with the hive.",
    "The waggle dance of the honeybee gives the direction of nectar relative to the sun.",
    "Scout bees return to the hive and communicate where blossoms grow.",
    "Worker bees learn the distance to flowers from the length of the dance.",
    "Honeybees pass on the position of flowering plants through movement.",
    "A round dance tells bees that flowers are close to the hive.",
    "Foraging honeybees signal the route to nectar sources to other bees.",
    "Bees in the hive follow the dancer to learn where to fly for pollen.",
    "The angle of the bee's dance gives the direction of the flowers.",
    "Forager bees recruit nestmates to rich flowers by dancing on the comb.",
]
DEPTH_CORPUS = {
    f"bees-{n}.md": [(None, None, f"{text} Observation {n}.")]
    for n, text in enumerate(_BEES * 2, start=1)
} | {"servers.md": [(None, None, "Zorblatt is the name of the old backup server's disk.")]}
# No word of the question but its rare one is in any passage: only one passage is in the
# keyword list.
QUESTION = "How do insects guide their colony to food? zorblatt"


async def test_a_passage_low_in_one_list_still_counts_in_the_fusion(
    client, user_factory, settings, db_session
):
    user = await user_factory()
    project = await index_project(client, user.headers, settings, "Depth", DEPTH_CORPUS)

    async def search(**options) -> list[retrieval.SearchHit]:
        return await retrieval.search(
            db_session, project.id, QUESTION, settings=settings, **options
        )

    vector_list = await search(mode="vector", top_k=30)
    rank = next(h.rank for h in vector_list if h.document_name == "servers.md")
    assert rank > 20, "premise: the vector list ranks it below 20th"

    [best, *_] = await search(top_k=5)
    assert (best.document_name, best.text_rank, best.vector_rank) == ("servers.md", 1, rank)

    shallow = await search(top_k=5, fusion=Fusion(depth=20))
    hit = next(h for h in shallow if h.document_name == "servers.md")
    assert hit.vector_rank is None  # 20 candidates per list did not reach it
    assert isinstance(hit.document_id, uuid.UUID)


# Options of one command, alike but for the option's name; "--all" is an English stop
# word, and its passage comes last, so a tie would not put it first.
OPTION_CORPUS = {
    "frob.md": [
        (None, None, f"frob {option}: {effect}")
        for option, effect in (
            ("--tags", "frob sends the tags as well."),
            ("--force", "frob overwrites the remote even if it moved on."),
            ("--dry-run", "frob shows what it would send without sending it."),
            ("--prune", "frob removes remote branches that have no local counterpart."),
            ("--all", "frob sends every branch."),
        )
    ]
}


async def test_an_option_named_by_a_stop_word_counts_in_the_keyword_list(
    client, user_factory, settings, db_session
):
    user = await user_factory()
    project = await index_project(client, user.headers, settings, "Options", OPTION_CORPUS)

    async def first(question: str) -> str:
        hits = await retrieval.search(
            db_session, project.id, question, mode="keyword", settings=settings
        )
        return hits[0].text

    # Premise: written as a plain word, "all" is a stop word and the question is "frob".
    assert not (await first("What does frob all do?")).startswith("frob --all")
    assert (await first("What does frob --all do?")).startswith("frob --all")
    assert retrieval.option_words("git cherry-pick -x, git push --all --no-ff") == "x all no-ff"
