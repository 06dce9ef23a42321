"""The chunk table and LlamaIndex's ``PGVectorStore`` over it.

Schema (created by migration 0002, never at run time: ``perform_setup=False``). It is
exactly what ``PGVectorStore(table_name="chunks", hybrid_search=True, use_jsonb=True)``
reads and writes, plus two generated columns of ours:

    data_chunks(
      id bigserial PK, text varchar NOT NULL, metadata_ jsonb, node_id varchar,
      embedding vector(<model dimension>),
      text_search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english_all_words',
                  coalesce(metadata_->>'context', '') || E'\n\n' || text)) STORED,
      project_id  uuid GENERATED ALWAYS AS ((metadata_->>'project_id')::uuid)  STORED NOT NULL
                  REFERENCES projects  ON DELETE CASCADE,
      document_id uuid GENERATED ALWAYS AS ((metadata_->>'document_id')::uuid) STORED NOT NULL
                  REFERENCES documents ON DELETE CASCADE)
    indexes: chunks_idx (GIN on text_search_tsv), chunks_idx_1 (ref_doc_id),
             data_chunks_embedding_idx (HNSW, vector_cosine_ops, m / ef_construction),
             btree on project_id and document_id;
    plus the BM25 term statistics kept by triggers (migration 0008: chunk_terms,
    term_stats, project_text_stats); 'english_all_words' (migration 0009) is the English
    stemmer without a stop-word list.

LlamaIndex writes ``metadata_['document_id']`` from the node's source document id, and
we set ``project_id`` in the metadata; Postgres derives the two columns, so a chunk can
only exist for an existing document, and deletes cascade.

The vector column's dimension is the embedding model's. Changing EMBEDDING_MODEL to one
of another dimension is handled by ``knowledgetree reindex`` (``set_dimension``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from app.core.config import Settings

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.postgres import PGVectorStore
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.models.document import Document
    from app.services.chunking import Chunk

STORE_TABLE_NAME = "chunks"  # what PGVectorStore is told
CHUNKS_TABLE = "data_chunks"  # what it makes of it ("data_" + name)
HNSW_INDEX = f"{CHUNKS_TABLE}_embedding_idx"
TEXT_SEARCH_CONFIG = "english"


def hnsw_index_ddl(settings: Settings) -> str:
    """CREATE INDEX statement of the HNSW index (cosine), with the configured parameters."""
    return (
        f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON {CHUNKS_TABLE} "
        f"USING hnsw (embedding vector_cosine_ops) "
        f"WITH (m = {int(settings.hnsw_m)}, ef_construction = {int(settings.hnsw_ef_construction)})"
    )


def make_vector_store(
    settings: Settings, dimension: int, engine: Engine, async_engine: AsyncEngine
) -> PGVectorStore:
    """A PGVectorStore over ``data_chunks`` that uses the caller's engines (and pools)."""
    from llama_index.vector_stores.postgres import PGVectorStore

    return PGVectorStore(
        table_name=STORE_TABLE_NAME,
        embed_dim=dimension,
        hybrid_search=True,
        text_search_config=TEXT_SEARCH_CONFIG,
        use_jsonb=True,
        perform_setup=False,  # the schema belongs to Alembic
        hnsw_kwargs={
            "hnsw_m": settings.hnsw_m,
            "hnsw_ef_construction": settings.hnsw_ef_construction,
            "hnsw_ef_search": settings.hnsw_ef_search,
            "hnsw_dist_method": "vector_cosine_ops",
        },
        engine=engine,
        async_engine=async_engine,
    )


def build_nodes(
    document: Document, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]
) -> list[TextNode]:
    """LlamaIndex nodes for a document's chunks, with the metadata citations need.

    ``context`` (title and heading path) is the only metadata in the node's embed-mode
    content, laid out so that ``node.get_content(MetadataMode.EMBED)`` is exactly the
    ``chunk.embedding_text`` that was embedded; the keyword index reads it too.
    """
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    nodes = []
    for chunk, vector in zip(chunks, vectors, strict=True):
        metadata = {
            "project_id": str(document.project_id),
            "owner_id": str(document.owner_id),
            "filename": document.filename,
            "page": chunk.page,
            "heading": chunk.heading,
            "chunk_index": chunk.index,
            "context": chunk.context or None,
        }
        node = TextNode(
            id_=str(uuid.uuid4()),
            text=chunk.text,
            metadata=metadata,
            embedding=list(vector),
            # The "source" relationship becomes metadata_['document_id'] (and ref_doc_id).
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=str(document.id))},
            excluded_embed_metadata_keys=[key for key in metadata if key != "context"],
            excluded_llm_metadata_keys=["project_id", "owner_id", "chunk_index", "context"],
            metadata_template="{value}",
            text_template="{metadata_str}\n\n{content}" if chunk.context else "{content}",
        )
        nodes.append(node)
    return nodes


def column_dimension(connection: Connection) -> int | None:
    """Dimension of ``data_chunks.embedding`` in the database (None: no such table)."""
    return connection.execute(
        text(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = to_regclass(:table) AND attname = 'embedding'"
        ),
        {"table": CHUNKS_TABLE},
    ).scalar()


def set_dimension(connection: Connection, settings: Settings, dimension: int) -> None:
    """Change the vector column to ``dimension``; every stored vector is dropped.

    Vectors of two models are not comparable, so none can be kept: the HNSW index is
    dropped, the column retyped with all embeddings NULL (those chunks drop out of
    vector search until re-embedded), and the index rebuilt for the new dimension.
    """
    connection.execute(text(f"DROP INDEX IF EXISTS {HNSW_INDEX}"))
    connection.execute(
        text(
            f"ALTER TABLE {CHUNKS_TABLE} ALTER COLUMN embedding TYPE vector({int(dimension)}) "
            "USING NULL"
        )
    )
    connection.execute(text(hnsw_index_ddl(settings)))
