"""Optional reranking of the fused search results by a cross-encoder (RERANKER_MODEL).

A cross-encoder reads the question and a passage together, which ranks better than
comparing two separately made vectors, but costs one model call per passage: it only
reorders the fused list's best RERANKER_CANDIDATES. Off by default: no such model can be
installed offline here, so a deployment that wants it puts one in the Hugging Face cache
(downloads are disabled at run time, as for the embedding model).
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from app.core.config import Settings

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

_lock = threading.Lock()


class RerankerError(RuntimeError):
    """The configured cross-encoder cannot be loaded (message names the fix)."""


@functools.cache
def _load(model_name: str) -> CrossEncoder:
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(model_name, device="cpu")
    except Exception as error:
        raise RerankerError(
            f"Cannot load the reranker '{model_name}' ({error}). It must be in the Hugging "
            "Face cache (downloads are disabled); unset RERANKER_MODEL to search without it."
        ) from error


def rerank(query: str, passages: list[str], settings: Settings) -> list[int]:
    """Indexes of ``passages``, best first, by the cross-encoder's relevance score."""
    with _lock:  # loaded once; the model's tokenizer is not safe to share across threads
        model = _load(settings.reranker_model)
        scores = model.predict([(query, passage) for passage in passages])
    return sorted(range(len(passages)), key=lambda index: -float(scores[index]))
