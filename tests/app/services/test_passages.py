"""A passage keeps every field through each shape it travels in."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

from app.services.passages import Passage


def _passage(**changes) -> Passage:
    values = {
        "number": 2,
        "text": "Refunds are paid within 14 days.",
        "document_id": uuid.uuid4(),
        "document_name": "handbook.pdf",
        "chunk_id": "node-1",
        "page": 3,
        "heading": "Refunds",
        "score": 0.8123,
    }
    return Passage(**{**values, **changes})


def test_dict_round_trip_goes_through_json() -> None:
    passage = _passage()
    data = json.loads(json.dumps(passage.to_dict()))
    assert data["document_id"] == str(passage.document_id)
    assert Passage.from_dict(data) == passage


def test_dict_round_trip_without_a_document() -> None:
    passage = _passage(document_id=None, page=None, heading=None, chunk_id=None, score=None)
    assert Passage.from_dict(passage.to_dict()) == passage


def test_saved_source_round_trip_keeps_the_citation_flag() -> None:
    passage = _passage()
    source = passage.to_source(cited=True)
    assert source.cited is True
    assert source.number == 2 and source.text == passage.text
    assert Passage.from_source(source) == passage


def test_from_hit_numbers_it_and_rounds_the_similarity() -> None:
    # The fields of retrieval.SearchHit that a passage reads.
    hit = SimpleNamespace(
        chunk_id="node-9",
        text="Passage text.",
        document_id=uuid.uuid4(),
        document_name="guide.md",
        page=None,
        heading="Intro",
        similarity=0.123456,
    )
    passage = Passage.from_hit(5, hit)
    assert passage.number == 5
    assert passage.score == 0.1235
    assert (passage.chunk_id, passage.document_name, passage.heading) == (
        "node-9",
        "guide.md",
        "Intro",
    )
    assert passage.label() == 'guide.md, "Intro"'
