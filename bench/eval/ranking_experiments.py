"""Offline ranking experiments on the evaluation set: what was tried beyond the app's search.

    .venv/bin/python bench/eval/ranking_experiments.py [--dump FILE] [--corpus DIR]
        [--questions FILE]

The first run ingests ``--corpus`` through the app (as ``bench/retrieval_quality.py``
does: ~20 min on a loaded 2-core machine) and saves to ``--dump`` every chunk's document,
place in its document, text, vector and keyword-index positions (the whole indexed text
and its title/heading context apart, read from the database with the app's own
text-search configurations), with each question's terms (as ``retrieval.search`` reads
them) and embedding; then it embeds the corpus's words (the ~7,200 in two or more chunks,
about 2 min) for the word-expansion experiment. Later runs only re-rank the dump (under a
minute).

The baseline re-creates the app's search in numpy: exact cosine for the vector list,
BM25 (k1 1.2, b 0, 1,000 densest postings per term) for the keyword list, RRF k = 10 over
50 candidates per list; it scores within a rounding of ``retrieval_quality.py``. Each
variant is printed with hit@1 / hit@5 / MRR@10, hit@5 / MRR per question kind, and how
many questions moved against the baseline (up/down in the top 10; into/out of the top 5).
Results and what was concluded: docs/ARCHITECTURE.md, "Ranking".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import pickle
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _ingest_db import bench_database
from retrieval_quality import EVAL, ingest, load_questions, normalise

K1, RRF_K, DEPTH, POSTINGS_PER_TERM = 1.2, 10, 50, 1000
KINDS = ("easy", "paraphrase", "section")

_CHUNKS_SQL = """
    SELECT d.filename, (c.metadata_ ->> 'chunk_index')::int AS position, c.text,
           coalesce(c.metadata_ ->> 'context', '') AS context, c.embedding::text AS vector,
           (SELECT array_agg(lexeme || ':' || array_to_string(positions, ','))
            FROM unnest(c.text_search_tsv)) AS indexed,
           (SELECT array_agg(lexeme || ':' || array_to_string(positions, ','))
            FROM unnest(to_tsvector('english_all_words', coalesce(c.metadata_ ->> 'context',
                                                                   '')))) AS context_terms
    FROM data_chunks c JOIN documents d ON d.id = c.document_id
    WHERE c.project_id = :project
    ORDER BY d.filename, position, c.id
"""
# The question's terms exactly as app/services/retrieval.py reads them.
_QUERY_TERMS_SQL = """
    SELECT lexeme FROM unnest(to_tsvector('english', :q))
    UNION SELECT lexeme FROM unnest(to_tsvector('english_all_words', :options))
"""


def _positions(entries: list[str] | None) -> dict[str, list[int]]:
    out = {}
    for entry in entries or []:
        term, _, positions = entry.rpartition(":")
        out[term] = [int(p) for p in positions.split(",")] if positions else [1]
    return out


def dump(corpus: Path, questions_file: Path, target: Path) -> None:
    from sqlalchemy import text

    files = sorted(path for path in corpus.iterdir() if path.is_file())
    questions = load_questions(questions_file)
    with bench_database("kt_bench_ranking") as settings:
        from app.core.db import dispose_engines, get_sessionmaker
        from app.services import embeddings, retrieval

        embeddings.load_model(settings)

        async def run():
            try:
                project, _, _ = await ingest(settings, files)
                async with get_sessionmaker(settings)() as session:
                    rows = (await session.execute(text(_CHUNKS_SQL), {"project": project})).all()
                    terms = []
                    for q in questions:
                        options = retrieval.option_words(q.question)
                        found = await session.execute(
                            text(_QUERY_TERMS_SQL), {"q": q.question, "options": options}
                        )
                        terms.append(sorted(found.scalars()))
                return rows, terms
            finally:
                await dispose_engines()

        rows, terms = asyncio.run(run())
        data = {
            "chunks": [
                {
                    "document": Path(row.filename).stem,
                    "position": row.position,
                    "text": row.text,
                    "context": row.context,
                    "indexed": _positions(row.indexed),
                    "context_terms": _positions(row.context_terms),
                }
                for row in rows
            ],
            "vectors": np.array(
                [[float(x) for x in row.vector.strip("[]").split(",")] for row in rows],
                dtype=np.float32,
            ),
            "questions": [q.question for q in questions],
            "query_terms": terms,
            "query_vectors": np.array(
                [embeddings.embed_query(q.question, settings) for q in questions],
                dtype=np.float32,
            ),
        }
    target.write_bytes(pickle.dumps(data))
    print(f"dumped {len(rows)} chunks to {target}")


_WORD = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# Each word's lexemes in the index, and whether 'english' drops it as a stop word.
_LEXEMES_SQL = """
    SELECT w, (SELECT array_agg(lexeme) FROM unnest(to_tsvector('english_all_words', w))),
           to_tsvector('english', w) = ''::tsvector
    FROM unnest(CAST(:words AS text[])) AS w
"""


def add_vocabulary(data: dict, target: Path) -> None:
    """The corpus's words (in 2+ chunks, 3+ letters, not stop words) with their lexemes
    and embeddings, for the word-expansion experiment; saved into the dump."""
    from sqlalchemy import text

    chunks_with = Counter()
    for chunk in data["chunks"]:
        chunks_with.update(set(_WORD.findall(f"{chunk['context']} {chunk['text']}".lower())))
    words = sorted(w for w, n in chunks_with.items() if n >= 2 and len(w) >= 3)
    with bench_database("kt_bench_vocabulary") as settings:
        from app.core.db import dispose_engines, get_sessionmaker
        from app.services import embeddings

        async def lexemes():
            try:
                async with get_sessionmaker(settings)() as session:
                    rows = await session.execute(text(_LEXEMES_SQL), {"words": words})
                    return {w: lex for w, lex, stop in rows if lex and not stop}
            finally:
                await dispose_engines()

        lexeme_of = asyncio.run(lexemes())
        words = [w for w in words if w in lexeme_of]
        embeddings.load_model(settings)
        vectors = np.array(embeddings.embed_texts(words, settings), dtype=np.float32)
    data["vocabulary"] = {"words": words, "lexemes": lexeme_of, "vectors": vectors}
    target.write_bytes(pickle.dumps(data))
    print(f"added {len(words)} words to {target}")


class Corpus:
    """The dump, indexed for re-ranking; every ranking is a list of chunk numbers."""

    def __init__(self, data: dict, questions) -> None:
        chunks = data["chunks"]
        self.n = len(chunks)
        self.document = [c["document"] for c in chunks]
        self.full = [c["indexed"] for c in chunks]
        self.context = [c["context_terms"] for c in chunks]
        self.vectors = data["vectors"]
        self.length = np.array([max(sum(map(len, f.values())), 1) for f in self.full], float)
        postings = defaultdict(list)
        for i, terms in enumerate(self.full):
            for term, positions in terms.items():
                postings[term].append((i, len(positions)))
        self.df = {term: len(p) for term, p in postings.items()}
        self.postings = {
            term: sorted(p, key=lambda x: -x[1] / self.length[x[0]])[:POSTINGS_PER_TERM]
            for term, p in postings.items()
        }
        same = [a == b for a, b in itertools.pairwise(self.document)]
        self.prev = np.array([-1] + [i if s else -1 for i, s in enumerate(same)])
        self.next = np.array([i + 1 if s else -1 for i, s in enumerate(same)] + [-1])
        self.questions = questions
        self.query_vectors = data["query_vectors"]
        self.query = [dict.fromkeys(terms, 1.0) for terms in data["query_terms"]]
        self.passages = [normalise(c["text"]) for c in chunks]
        self.vocabulary = data.get("vocabulary")

    def idf(self, term: str) -> float:
        n = self.df.get(term, 0)
        return math.log(1 + (self.n - n + 0.5) / (n + 0.5)) if n else 0.0

    def bm25(self, weights: dict[str, float], tf_of=None) -> np.ndarray:
        scores = np.zeros(self.n)
        for term, weight in weights.items():
            idf = self.idf(term)
            for i, tf in self.postings.get(term, ()):
                tf = tf_of(i, term, tf) if tf_of else tf
                scores[i] += weight * idf * tf * (K1 + 1) / (tf + K1)
        return scores

    def order(self, scores: np.ndarray) -> list[int]:
        candidates = np.nonzero(scores > 0)[0]
        return list(candidates[np.argsort(-scores[candidates], kind="stable")])

    def vector_order(self, query_vector: np.ndarray) -> list[int]:
        return list(np.argsort(-(self.vectors @ query_vector), kind="stable"))

    def rrf(self, *lists: list[int]) -> np.ndarray:
        scores = np.zeros(self.n)
        for ranking in lists:
            for rank, i in enumerate(ranking[:DEPTH], start=1):
                scores[i] += 1 / (RRF_K + rank)
        return scores

    def first_hit(self, qi: int, ranking: list[int]) -> int | None:
        question = self.questions[qi]
        answer = normalise(question.answer)
        for rank, i in enumerate(ranking[:10], start=1):
            if self.document[i] == question.document and answer in self.passages[i]:
                return rank
        return None


def measure(corpus: Corpus, rankings: list[list[int]]) -> list[int | None]:
    return [corpus.first_hit(qi, ranking) for qi, ranking in enumerate(rankings)]


def _scores(ranks: list[int | None]) -> tuple[float, float, float]:
    n = len(ranks) or 1
    return (
        sum(r == 1 for r in ranks) / n,
        sum(r is not None and r <= 5 for r in ranks) / n,
        sum(1 / r for r in ranks if r) / n,
    )


def show(name: str, corpus: Corpus, ranks: list[int | None], base=None) -> None:
    hit1, hit5, mrr = _scores(ranks)
    kinds = []
    for kind in KINDS:
        own = [r for r, q in zip(ranks, corpus.questions, strict=True) if q.kind == kind]
        _, k5, kmrr = _scores(own)
        kinds.append(f"{kind[:4]} {k5:.3f}/{kmrr:.3f}")
    moved = ""
    if base is not None:
        pairs = [(a or 99, b or 99) for a, b in zip(base, ranks, strict=True)]
        moved = (
            f" | up {sum(b < a for a, b in pairs)} down {sum(b > a for a, b in pairs)},"
            f" top 5 +{sum(b <= 5 < a for a, b in pairs)} -{sum(a <= 5 < b for a, b in pairs)}"
        )
    print(f"| {name} | {hit1:.3f} | {hit5:.3f} | {mrr:.3f} | {' '.join(kinds)}{moved} |")


def experiments(c: Corpus) -> None:
    nq = len(c.questions)
    vector = [c.vector_order(c.query_vectors[q]) for q in range(nq)]
    keyword_scores = [c.bm25(c.query[q]) for q in range(nq)]
    keyword = [c.order(s) for s in keyword_scores]
    fused_scores = [c.rrf(vector[q], keyword[q]) for q in range(nq)]
    fused = [c.order(s) for s in fused_scores]
    base = measure(c, fused)
    print("| ranker | hit@1 | hit@5 | MRR@10 | per kind: hit@5/MRR, moved against the fused |")
    print("|---|---:|---:|---:|---|")
    show("vector list", c, measure(c, vector))
    show("keyword list (BM25)", c, measure(c, keyword))
    show("fused (the app's search)", c, base)

    def fuse(vectors=vector, keywords=keyword):
        return measure(c, [c.order(c.rrf(vectors[q], keywords[q])) for q in range(nq)])

    # 1. Pseudo-relevance feedback. RM3-like: the m terms most weighted in the top k fused
    # chunks (mean tf / length; terms in over 10 % of chunks left out) join the question
    # with weight lam x their relative weight, and BM25 runs again.
    for k, m, lam in itertools.product((3, 10), (10, 20), (0.1, 0.3, 0.5)):
        expanded = []
        for q in range(nq):
            weight = defaultdict(float)
            for i in fused[q][:k]:
                for term, positions in c.full[i].items():
                    weight[term] += len(positions) / c.length[i] / k
            extra = sorted(
                ((w, t) for t, w in weight.items() if t not in c.query[q] and c.df[t] < c.n / 10),
                reverse=True,
            )[:m]
            terms = dict(c.query[q])
            terms.update({t: lam * w / extra[0][0] for w, t in extra})
            expanded.append(c.order(c.bm25(terms)))
        show(f"RM3 keyword list, k={k} m={m} weight {lam}", c, fuse(keywords=expanded), base)
    # Rocchio: the question's vector plus alpha x the mean of the top k fused chunks' vectors.
    for k, alpha in itertools.product((3, 5, 10), (0.25, 0.5, 1.0)):
        moved = []
        for q in range(nq):
            v = c.query_vectors[q] + alpha * c.vectors[fused[q][:k]].mean(axis=0)
            moved.append(c.vector_order(v / np.linalg.norm(v)))
        show(f"Rocchio vector list, k={k} alpha {alpha}", c, fuse(vectors=moved), base)
        if alpha == 0.5:
            show("    its vector list alone", c, measure(c, moved), measure(c, vector))

    # 2. BM25F-like: a term's occurrences in the title/heading context count w times.
    for w in (0.0, 0.5, 2.0, 3.0):

        def tf_of(i, term, tf, w=w):
            in_context = len(c.context[i].get(term, ()))
            return tf - in_context + w * in_context

        field = [c.order(c.bm25(c.query[q], tf_of)) for q in range(nq)]
        show(f"BM25F, context weight {w}", c, fuse(keywords=field), base)

    # 3. Proximity (BM25TP, Rasolofo & Savoy 2003): each pair of question terms within
    # `window` positions adds min(idf) x sat(sum 1/d^2) x gamma to the BM25 score.
    for window, gamma in itertools.product((1, 5, 10), (0.25, 0.5, 1.0)):
        near = []
        for q in range(nq):
            terms = sorted(t for t in c.query[q] if t in c.postings)
            bonus = np.zeros(c.n)
            for i in {i for t in terms for i, _ in c.postings[t]}:
                for a, b in itertools.combinations(terms, 2):
                    if a in c.full[i] and b in c.full[i]:
                        acc = sum(
                            1 / (pa - pb) ** 2
                            for pa in c.full[i][a]
                            for pb in c.full[i][b]
                            if 0 < abs(pa - pb) <= window
                        )
                        bonus[i] += min(c.idf(a), c.idf(b)) * acc * (K1 + 1) / (acc + K1)
            near.append(c.order(keyword_scores[q] + gamma * bonus))
        show(f"proximity, window {window}, weight {gamma}", c, fuse(keywords=near), base)
        if window == 1 and gamma == 0.5:
            show("    its keyword list alone", c, measure(c, near), measure(c, keyword))

    # 4. Neighbours: a chunk's fused score plus beta x its neighbours' (sum or the larger).
    for beta, how in itertools.product((0.1, 0.3, 0.5), ("sum", "max")):
        smoothed = []
        for s in fused_scores:
            before = np.where(c.prev >= 0, s[np.maximum(c.prev, 0)], 0)
            after = np.where(c.next >= 0, s[np.maximum(c.next, 0)], 0)
            near = before + after if how == "sum" else np.maximum(before, after)
            smoothed.append(c.order(s + beta * near))
        show(f"neighbours, fused + {beta} x {how} of both", c, measure(c, smoothed), base)
    distance = defaultdict(int)
    for q, rank in enumerate(base):
        if rank is None or rank > 5:
            answers = [i for i in range(c.n) if c.first_hit(q, [i]) == 1]
            near = [
                abs(a - t) for a in answers for t in fused[q][:5] if c.document[t] == c.document[a]
            ]
            distance[int(min(near)) if near else "document not in the top 5"] += 1
    print(f"\nmisses: chunks between the answer and the nearest top-5 chunk: {dict(distance)}")

    # 5. Global co-occurrence expansion: each question term brings the m terms u that
    # most often share its chunks, weighted P(u|t) x idf(u), at weight lam.
    chunks_of = {t: [i for i, _ in p] for t, p in c.postings.items()}
    for m, lam in itertools.product((2, 5), (0.1, 0.2, 0.3)):
        expanded = []
        for q in range(nq):
            terms = dict(c.query[q])
            for t in c.query[q]:
                together = defaultdict(int)
                for i in chunks_of.get(t, ()):
                    for u in c.full[i]:
                        together[u] += 1
                ranked = sorted(
                    (
                        (n / len(chunks_of[t]) * c.idf(u), u)
                        for u, n in together.items()
                        if u != t and 3 <= c.df[u] < c.n / 10
                    ),
                    reverse=True,
                )
                for _, u in ranked[:m]:
                    terms.setdefault(u, lam)
            expanded.append(c.order(c.bm25(terms)))
        show(f"co-occurrence expansion, m={m} weight {lam}", c, fuse(keywords=expanded), base)

    # 6. Expansion by the embedding model: the m corpus words whose vectors are nearest
    # the question's join it at weight lam (words already asked left out).
    vocabulary = c.vocabulary
    if vocabulary is None:
        return
    nearest = c.query_vectors @ vocabulary["vectors"].T
    for q, question in enumerate(c.questions):
        if question.kind == "paraphrase" and (base[q] or 99) > 5:
            words = [vocabulary["words"][j] for j in np.argsort(-nearest[q])[:6]]
            print(f"    nearest words, {question.question!r}: {', '.join(words)}")
    for m, lam in itertools.product((3, 5, 10), (0.2, 0.5, 1.0)):
        expanded = []
        for q in range(nq):
            terms = dict(c.query[q])
            for j in np.argsort(-nearest[q])[:m]:
                for lexeme in vocabulary["lexemes"][vocabulary["words"][j]]:
                    terms.setdefault(lexeme, lam)
            expanded.append(c.order(c.bm25(terms)))
        show(f"nearest-word expansion, m={m} weight {lam}", c, fuse(keywords=expanded), base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, default=Path("/tmp/kt-ranking-dump.pkl"))
    parser.add_argument("--corpus", type=Path, default=EVAL / "corpus")
    parser.add_argument("--questions", type=Path, default=EVAL / "questions.yaml")
    options = parser.parse_args()
    if not options.dump.exists():
        dump(options.corpus, options.questions, options.dump)
    data = pickle.loads(options.dump.read_bytes())
    if "vocabulary" not in data:
        add_vocabulary(data, options.dump)
    questions = load_questions(options.questions)
    assert data["questions"] == [q.question for q in questions], "dump of other questions"
    experiments(Corpus(data, questions))


if __name__ == "__main__":
    main()
