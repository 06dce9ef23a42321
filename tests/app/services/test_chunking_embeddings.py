"""Chunking with the model's tokenizer, and the shared embedding model."""

from __future__ import annotations

import math

from app.services import embeddings
from app.services.chunking import chunk_sections, make_splitter
from app.services.parsing import Section


def test_model_is_loaded_once_with_its_dimension(settings):
    first = embeddings.load_model(settings)
    assert embeddings.load_model(settings) is first
    assert embeddings.is_model_loaded()
    assert embeddings.embedding_dimension(settings) == 384
    assert embeddings.max_chunk_tokens(settings) == 254


def test_embeddings_are_unit_length_and_meaningful(settings):
    query = embeddings.embed_query("How do I fix a flat bicycle tyre?", settings)
    near, far = embeddings.embed_texts(
        ["Patch the punctured inner tube of the bike wheel.", "Volcanoes erupt lava."], settings
    )
    assert len(query) == 384
    assert math.isclose(sum(v * v for v in query), 1.0, rel_tol=1e-3)

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(query, near) > cosine(query, far) + 0.2


def test_query_embedding_is_llamaindex_query_embedding(settings):
    """embed_query's direct path gives LlamaIndex's vector (prompt, pooling, norm)."""
    reference = embeddings.get_embed_model(settings)
    for query in ["Who climbs the lighthouse steps?", "ünïcödé, émojis 🐝", "word " * 400]:
        direct = embeddings.embed_query(query, settings)
        expected = reference.get_query_embedding(query)
        assert max(abs(a - b) for a, b in zip(direct, expected, strict=True)) < 1e-6


def test_parallel_embedding_keeps_order_and_reports_progress(settings):
    texts = [f"Sentence number {i} is about topic {i % 5}." for i in range(150)]
    done: list[int] = []
    vectors = embeddings.embed_texts(texts, settings, on_progress=done.append)
    assert len(vectors) == 150
    assert done[-1] == 150 and done == sorted(done)
    # Each vector belongs to its own text, whatever thread embedded it.
    single = embeddings.embed_texts([texts[97]], settings)[0]
    assert max(abs(a - b) for a, b in zip(single, vectors[97], strict=True)) < 1e-4


def test_chunks_fit_the_model_and_keep_their_place(settings):
    count = embeddings.token_counter(settings)
    size = embeddings.effective_chunk_size(settings)
    splitter = make_splitter(size, settings.chunk_overlap, count)
    long_text = " ".join(f"Fact {i}: the value of item {i} is {i * 7}." for i in range(300))
    sections = [
        Section(long_text, page=3, heading="Data > Values"),
        Section("A short closing note.", page=4),
    ]
    chunks = chunk_sections(sections, splitter)
    assert len(chunks) > 3
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert {c.page for c in chunks[:-1]} == {3}
    assert chunks[-1].page == 4 and chunks[-1].heading is None
    assert all(c.heading == "Data > Values" for c in chunks[:-1])
    # The embedded text (heading + chunk) fits the model's window, so nothing is cut off.
    assert all(len(count(c.embedding_text)) <= size for c in chunks)
    # Sentence-aware: chunks start at a sentence and consecutive chunks overlap.
    assert all(c.text.startswith("Fact") for c in chunks[:-1])
    first_end = chunks[0].text.split("Fact")[-1]
    assert first_end in chunks[1].text
