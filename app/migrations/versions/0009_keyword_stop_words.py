"""The keyword index keeps stop words, so an option named by one (``--all``, ``-a``) counts.

``to_tsvector('english')`` drops English stop words: ``git push --all`` was indexed and
asked as "git push". The index now uses ``english_all_words``: the same parser and
English (snowball) stemmer, without the stop-word list. The search still reads the
question through ``english`` and adds only the words written as options
(``app/services/retrieval.py``); the measurements are in docs/ARCHITECTURE.md
("Ranking").

The generated column is recomputed (a table rewrite, under a lock that holds searches
until it ends, as 0008's did) and the BM25 term statistics of migration 0008 are
rebuilt from it; nothing needs re-embedding. The previous release keeps working on the
migrated database: it reads questions through 'english' from the same tables.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMN = (
    "ALTER TABLE data_chunks ALTER COLUMN text_search_tsv SET EXPRESSION AS "
    "(to_tsvector('{config}', coalesce(metadata_ ->> 'context', '') || E'\\n\\n' || text))"
)


def _rebuild_term_statistics() -> None:
    # SET EXPRESSION rewrites the column without firing the row triggers: recount.
    op.execute("DELETE FROM chunk_terms")
    op.execute("DELETE FROM term_stats")
    op.execute("DELETE FROM project_text_stats")
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


def upgrade() -> None:
    # No StopWords option: the snowball template then keeps every word.
    op.execute(
        "CREATE TEXT SEARCH DICTIONARY english_stem_all_words "
        "(TEMPLATE = snowball, Language = english)"
    )
    op.execute("CREATE TEXT SEARCH CONFIGURATION english_all_words (COPY = english)")
    op.execute(
        "ALTER TEXT SEARCH CONFIGURATION english_all_words "
        "ALTER MAPPING REPLACE english_stem WITH english_stem_all_words"
    )
    op.execute(_COLUMN.format(config="english_all_words"))
    _rebuild_term_statistics()


def downgrade() -> None:
    op.execute(_COLUMN.format(config="english"))
    _rebuild_term_statistics()
    op.execute("DROP TEXT SEARCH CONFIGURATION english_all_words")
    op.execute("DROP TEXT SEARCH DICTIONARY english_stem_all_words")
