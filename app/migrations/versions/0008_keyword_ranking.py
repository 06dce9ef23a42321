"""Keyword ranking by BM25: term statistics per project, kept by triggers; context in the index.

* ``data_chunks.text_search_tsv`` now also indexes the chunk's context (document title
  and heading path, ``metadata_->>'context'``), not only the text shown to users.
* ``chunk_terms``: one row per (project, term, chunk) with the term's count in the chunk
  and the chunk's length in terms: the postings BM25 reads.
* ``term_stats``: in how many chunks of the project each term occurs (for idf).
* ``project_text_stats``: chunks and terms per project (N and the average length).

Statement-level triggers on ``data_chunks`` keep the three up to date in the same
transaction as the chunks themselves, so every writer (the ingest worker through
PGVectorStore, deletes and their cascades) is covered. See docs/ARCHITECTURE.md
("Ranking") and ``app/services/retrieval.py``.

Existing chunks are indexed here; chunks made before this release have no ``context``
yet: ``knowledgetree reindex --all`` rebuilds them with it.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The project's row in project_text_stats is written first by every writer: it orders
# concurrent writers of one project, so their term_stats updates cannot deadlock.
# "OFFSET 0" keeps a chunk's length computed once per chunk, not once per term (the
# planner would otherwise pull the subquery up: 14x slower on a large insert).
_TRIGGER_FUNCTION = """
CREATE FUNCTION chunk_terms_maintain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE project_text_stats AS s
        SET chunks = s.chunks - d.chunks, terms = s.terms - d.terms
        FROM (
            SELECT project_id, count(*) AS chunks, sum(chunk_term_count(text_search_tsv)) AS terms
            FROM old_rows GROUP BY project_id
        ) AS d
        WHERE s.project_id = d.project_id;
        DELETE FROM chunk_terms AS ct
        USING old_rows AS o, unnest(o.text_search_tsv) AS u
        WHERE ct.project_id = o.project_id AND ct.term = u.lexeme AND ct.chunk_id = o.id;
        UPDATE term_stats AS s SET chunks = s.chunks - d.chunks
        FROM (
            SELECT o.project_id, u.lexeme AS term, count(*) AS chunks
            FROM old_rows AS o, unnest(o.text_search_tsv) AS u GROUP BY 1, 2
        ) AS d
        WHERE s.project_id = d.project_id AND s.term = d.term;
        DELETE FROM term_stats AS s USING (SELECT DISTINCT project_id FROM old_rows) AS d
        WHERE s.project_id = d.project_id AND s.chunks <= 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO project_text_stats AS s (project_id, chunks, terms)
        SELECT project_id, count(*), sum(chunk_term_count(text_search_tsv))
        FROM new_rows GROUP BY project_id ORDER BY project_id
        ON CONFLICT (project_id) DO UPDATE
        SET chunks = s.chunks + excluded.chunks, terms = s.terms + excluded.terms;
        INSERT INTO chunk_terms (project_id, term, chunk_id, tf, chunk_length)
        SELECT n.project_id, u.lexeme, n.id, coalesce(array_length(u.positions, 1), 1),
               greatest(l.terms, 1)
        FROM new_rows AS n
        CROSS JOIN LATERAL (SELECT chunk_term_count(n.text_search_tsv) AS terms OFFSET 0) AS l
        CROSS JOIN LATERAL unnest(n.text_search_tsv) AS u;
        INSERT INTO term_stats AS s (project_id, term, chunks)
        SELECT n.project_id, u.lexeme, count(*)
        FROM new_rows AS n, unnest(n.text_search_tsv) AS u
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (project_id, term) DO UPDATE SET chunks = s.chunks + excluded.chunks;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    # Terms in a chunk (with repeats): its length for BM25's length normalisation.
    op.execute(
        """
        CREATE FUNCTION chunk_term_count(tsvector) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN (SELECT coalesce(sum(coalesce(array_length(positions, 1), 1)), 0)::integer
                FROM unnest($1))
        """
    )
    op.execute(
        """
        ALTER TABLE data_chunks ALTER COLUMN text_search_tsv SET EXPRESSION AS (
            to_tsvector('english', coalesce(metadata_ ->> 'context', '') || E'\\n\\n' || text)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE project_text_stats (
            project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
            chunks bigint NOT NULL,
            terms bigint NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE term_stats (
            project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
            term text NOT NULL,
            chunks integer NOT NULL,
            PRIMARY KEY (project_id, term)
        )
        """
    )
    # No foreign keys here (a check per posting would slow ingestion): the trigger
    # removes a chunk's postings with the chunk, also when a project delete cascades.
    op.execute(
        """
        CREATE TABLE chunk_terms (
            project_id uuid NOT NULL,
            term text NOT NULL,
            chunk_id bigint NOT NULL,
            tf integer NOT NULL,
            chunk_length integer NOT NULL,
            PRIMARY KEY (project_id, term, chunk_id)
        )
        """
    )
    # Each query term reads its densest postings first (see retrieval.py).
    op.execute(
        "CREATE INDEX ix_chunk_terms_density ON chunk_terms "
        "(project_id, term, (tf::real / chunk_length) DESC) INCLUDE (chunk_id, tf, chunk_length)"
    )
    op.execute(_TRIGGER_FUNCTION)
    for event, tables in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ):
        op.execute(
            f"CREATE TRIGGER chunk_terms_{event.lower()} AFTER {event} ON data_chunks "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION chunk_terms_maintain()"
        )
    # Index what is there already (the column was recomputed by SET EXPRESSION).
    op.execute(
        """
        INSERT INTO project_text_stats (project_id, chunks, terms)
        SELECT project_id, count(*), sum(chunk_term_count(text_search_tsv))
        FROM data_chunks GROUP BY project_id
        """
    )
    op.execute(
        """
        INSERT INTO chunk_terms (project_id, term, chunk_id, tf, chunk_length)
        SELECT c.project_id, u.lexeme, c.id, coalesce(array_length(u.positions, 1), 1),
               greatest(l.terms, 1)
        FROM data_chunks AS c
        CROSS JOIN LATERAL (SELECT chunk_term_count(c.text_search_tsv) AS terms OFFSET 0) AS l
        CROSS JOIN LATERAL unnest(c.text_search_tsv) AS u
        """
    )
    op.execute(
        """
        INSERT INTO term_stats (project_id, term, chunks)
        SELECT project_id, term, count(*) FROM chunk_terms GROUP BY 1, 2
        """
    )


def downgrade() -> None:
    for event in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER IF EXISTS chunk_terms_{event} ON data_chunks")
    op.execute("DROP FUNCTION IF EXISTS chunk_terms_maintain()")
    op.execute("DROP TABLE IF EXISTS chunk_terms, term_stats, project_text_stats")
    op.execute(
        "ALTER TABLE data_chunks ALTER COLUMN text_search_tsv SET EXPRESSION AS "
        "(to_tsvector('english', text))"
    )
    op.execute("DROP FUNCTION IF EXISTS chunk_term_count(tsvector)")
