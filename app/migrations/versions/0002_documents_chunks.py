"""Documents and chunks: the ``documents`` table and LlamaIndex's ``data_chunks``.

``data_chunks`` is laid out exactly as ``PGVectorStore(table_name="chunks",
hybrid_search=True, use_jsonb=True)`` expects (the app runs it with
``perform_setup=False``), plus ``project_id``/``document_id`` columns generated from
the chunk metadata with ``ON DELETE CASCADE`` foreign keys. See
``app/services/vector_store.py``.

The vector dimension is read from the configured embedding model (EMBEDDING_MODEL),
so the column matches whatever model the installation uses; the HNSW parameters come
from HNSW_M / HNSW_EF_CONSTRUCTION. A later change of model is not a migration: run
``knowledgetree reindex``, which also retypes the column when the dimension changes.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _embedding_dimension() -> int:
    from app.core.config import get_settings
    from app.services.embeddings import embedding_dimension

    return embedding_dimension(get_settings())


def upgrade() -> None:
    from app.core.config import get_settings
    from app.services.vector_store import CHUNKS_TABLE, TEXT_SEARCH_CONFIG, hnsw_index_ddl

    op.create_table(
        "documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_path", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), server_default="queued", nullable=False),
        sa.Column("progress", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("page_count", sa.Integer(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("embedding_model", sa.String(200), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            ondelete="CASCADE",
            name="fk_documents_project_id_projects",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], ondelete="CASCADE", name="fk_documents_owner_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.UniqueConstraint("project_id", "sha256", name="uq_documents_project_id_sha256"),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'ready', 'failed')",
            name="ck_documents_status_valid",
        ),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="ck_documents_progress_range"),
    )
    op.create_index("ix_documents_project_id", "documents", ["project_id"])
    op.create_index("ix_documents_owner_id", "documents", ["owner_id"])
    op.create_index(
        "ix_documents_pending",
        "documents",
        ["created_at"],
        postgresql_where=sa.text("status IN ('queued', 'processing')"),
    )

    dimension = _embedding_dimension()
    op.execute(
        f"""
        CREATE TABLE {CHUNKS_TABLE} (
            id BIGSERIAL NOT NULL,
            text VARCHAR NOT NULL,
            metadata_ JSONB,
            node_id VARCHAR,
            embedding vector({int(dimension)}),
            text_search_tsv TSVECTOR
                GENERATED ALWAYS AS (to_tsvector('{TEXT_SEARCH_CONFIG}', text)) STORED,
            project_id UUID GENERATED ALWAYS AS ((metadata_ ->> 'project_id')::uuid) STORED
                NOT NULL,
            document_id UUID GENERATED ALWAYS AS ((metadata_ ->> 'document_id')::uuid) STORED
                NOT NULL,
            CONSTRAINT pk_{CHUNKS_TABLE} PRIMARY KEY (id),
            CONSTRAINT fk_{CHUNKS_TABLE}_project_id_projects FOREIGN KEY (project_id)
                REFERENCES projects (id) ON DELETE CASCADE,
            CONSTRAINT fk_{CHUNKS_TABLE}_document_id_documents FOREIGN KEY (document_id)
                REFERENCES documents (id) ON DELETE CASCADE
        )
        """
    )
    # The two indexes PGVectorStore itself would create (same names).
    op.execute(f"CREATE INDEX chunks_idx ON {CHUNKS_TABLE} USING gin (text_search_tsv)")
    op.execute(f"CREATE INDEX chunks_idx_1 ON {CHUNKS_TABLE} ((metadata_ ->> 'ref_doc_id'))")
    op.execute(f"CREATE INDEX ix_{CHUNKS_TABLE}_project_id ON {CHUNKS_TABLE} (project_id)")
    op.execute(f"CREATE INDEX ix_{CHUNKS_TABLE}_document_id ON {CHUNKS_TABLE} (document_id)")
    op.execute(hnsw_index_ddl(get_settings()))


def downgrade() -> None:
    """Drops every document record and chunk (data loss); uploaded files stay on disk."""
    op.execute("DROP TABLE IF EXISTS data_chunks")
    op.drop_index("ix_documents_pending", table_name="documents")
    op.drop_index("ix_documents_owner_id", table_name="documents")
    op.drop_index("ix_documents_project_id", table_name="documents")
    op.drop_table("documents")
