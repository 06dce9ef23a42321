"""Query embedding through ONNX Runtime: the torch model's vectors in less than half the time.

The graph is exported once per model and library versions by a child process
(``python -m app.services.query_encoder``), checked against the torch model on probe
texts, and cached under ``MODEL_CACHE_DIR/onnx/`` with the model's tokenizer and a probe
vector, so the server loads and checks a cached export without torch (``load_cached``):
that is what makes a colour ready in seconds. ``embeddings.start_query_path`` prepares
it. Why and how: docs/ARCHITECTURE.md, "Query embedding".
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

# Bump when the exported graph's contract changes (inputs, outputs, what it computes, the
# files beside it). 2: the tokenizer and a probe vector, so no torch is needed to load it.
EXPORT_FORMAT = 2
TOLERANCE = 1e-5
EXPORT_TIMEOUT_SECONDS = 900
# Exports kept per model: both colours of a blue-green pair may run different versions.
EXPORTS_KEPT_PER_MODEL = 2
MODEL_FILE = "query.onnx"
FACTS_FILE = "export.json"
FAILED_FILE = "failed.txt"
TOKENIZER_FILE = "tokenizer.json"
# The inputs a sentence-transformers text model takes; a tokenizer that returns others
# (unusual) is left on torch.
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PROBE_TEXTS = (
    "backup",
    "How long are nightly snapshots kept, and who can restore them?",
    "retention " * 600,  # longer than any model reads: exercises truncation
    "Wie lange werden die Sicherungen aufbewahrt? 备份保留多久?",
    "  spaces around, ünïcödé and émojis 🐝  ",
)
# Folders of a model repository that hold other formats of the same weights.
_NOT_MODEL_FILES = {"onnx", "openvino", ".cache", ".git"}
_LIBRARIES = ("torch", "transformers", "sentence-transformers", "onnxruntime", "onnxscript")


class QueryEncoderUnavailable(RuntimeError):
    """The ONNX encoder cannot be used for this model (the message says why)."""


class OnnxQueryEncoder:
    """An ONNX Runtime session that turns one text into a unit vector.

    ``run`` is thread-safe, so concurrent queries share one session. One intra-op
    thread, for the reason TORCH_THREADS is 1: a short query is latency-bound, and
    concurrent requests then use the cores side by side. ``embed`` tokenises with the
    model's own Rust tokenizer (``tokenizer.json`` of the export), so neither torch nor
    sentence-transformers is imported.
    """

    def __init__(
        self, model_file: Path, tokenizer: Tokenizer | None = None, prompt: str = ""
    ) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # Errors only: the exporter's graphs make ORT warn that it cannot constant-fold
        # some CastLike nodes, which is harmless.
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [item.name for item in self.session.get_inputs()]
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.dimension = 0  # set by load_cached from the probe vector

    def features(self, text: str) -> dict[str, Any]:
        """The model inputs of ``text``: what the model's ``preprocess`` makes of it."""
        import numpy

        assert self.tokenizer is not None, "an encoder without its tokenizer"
        # sentence-transformers strips the text after prepending the prompt.
        encoding = self.tokenizer.encode((self.prompt + text).strip())
        columns = {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": encoding.type_ids,
        }
        return {name: numpy.array([columns[name]], dtype=numpy.int64) for name in columns}

    def encode(self, features: Mapping[str, Any]) -> list[float]:
        """The unit vector of ``features`` (numpy arrays, or the torch tensors of the
        model's ``preprocess`` of one text)."""
        feeds = {name: _as_numpy(features[name]) for name in self.input_names}
        return self.session.run(None, feeds)[0][0].tolist()

    def embed(self, text: str) -> list[float]:
        """The unit vector of one question."""
        return self.encode(self.features(text))


def _as_numpy(value: Any) -> Any:
    return value.numpy() if hasattr(value, "numpy") else value


def _load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


# --- the server's side: find, check and load the export (or have it made) --------------
def load_cached(model_path: str, model_name: str, cache_dir: Path) -> OnnxQueryEncoder | None:
    """The cached export of this model and these libraries, loaded and checked against its
    probe vector, without torch; None when there is none yet (or it was damaged: removed,
    so that ``prepare`` exports it again). Raises ``QueryEncoderUnavailable`` when an
    earlier export failed or the export does not reproduce its probe."""
    folder = export_folder(cache_dir, model_name, model_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder.parent / ".lock"):
        failed = folder / FAILED_FILE
        if failed.is_file():
            raise QueryEncoderUnavailable(
                f"the ONNX export failed earlier ({failed.read_text().strip()}); "
                f"delete {folder} to try again"
            )
        if not (folder / FACTS_FILE).is_file():
            return None
        try:
            encoder = _open(folder)
        except QueryEncoderUnavailable:
            raise
        except Exception as error:  # a damaged cache file: make it again, once
            logger.warning("cached ONNX export %s unreadable (%s); exporting again", folder, error)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        os.utime(folder)  # last used: pruning keeps the most recently used
    return encoder


def _open(folder: Path) -> OnnxQueryEncoder:
    """The encoder in ``folder``, checked: its probe text must give the probe vector the
    torch model made at export time (tokenizer and graph together)."""
    facts = json.loads((folder / FACTS_FILE).read_text())
    tokenizer = _load_tokenizer(folder / TOKENIZER_FILE, int(facts["max_seq_length"]))
    encoder = OnnxQueryEncoder(folder / MODEL_FILE, tokenizer, facts["query_prompt"] or "")
    probe = facts["probe"]
    got = encoder.embed(probe["text"])
    if len(got) != len(probe["vector"]):
        raise QueryEncoderUnavailable(f"the ONNX export of {folder} makes {len(got)}-d vectors")
    difference = max(abs(a - b) for a, b in zip(got, probe["vector"], strict=True))
    if difference > TOLERANCE:
        raise QueryEncoderUnavailable(
            f"the ONNX export of {folder} differs from its probe vector by {difference:.1e}"
        )
    encoder.dimension = len(got)
    return encoder


def prepare(model_path: str, model_name: str, cache_dir: Path) -> OnnxQueryEncoder:
    """The ONNX encoder of the model: loaded from the cache, else exported in a child
    process first. Raises ``QueryEncoderUnavailable`` with the reason when it cannot be
    used. Blocking (seconds to a minute on a first export): call it in a thread."""
    encoder = load_cached(model_path, model_name, cache_dir)
    if encoder is not None:
        return encoder
    folder = export_folder(cache_dir, model_name, model_path)
    root = folder.parent
    with _exclusive(root / ".lock"):
        # Whoever wrote these held the lock and is gone (e.g. killed mid-export).
        for stale in root.glob(".export-*"):
            shutil.rmtree(stale, ignore_errors=True)
        # Another process may have exported it while this one waited for the lock.
        if not (folder / FACTS_FILE).is_file() and not (folder / FAILED_FILE).is_file():
            _export_into(folder, model_path)
            _prune(root, folder.name.rsplit("-", 1)[0], keep=folder)
    encoder = load_cached(model_path, model_name, cache_dir)
    if encoder is None:  # exported just now and already unreadable
        raise QueryEncoderUnavailable(f"the fresh ONNX export in {folder} cannot be read")
    return encoder


def export_folder(cache_dir: Path, model_name: str, model_path: str) -> Path:
    """Where the export of this model, with these libraries, is cached."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("._") or "model"
    return cache_dir / "onnx" / f"{slug}-{fingerprint(_model_dir(model_path))[:16]}"


def fingerprint(model_dir: Path) -> str:
    """Hash of the model's files and the versions of the libraries that run them."""
    digest = hashlib.sha256(json.dumps([EXPORT_FORMAT, library_versions()]).encode())
    files = sorted(
        path
        for path in model_dir.rglob("*")
        if path.is_file() and not _NOT_MODEL_FILES & set(path.relative_to(model_dir).parts)
    )
    for path in files:
        digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:  # Debian's torch is installed without pip metadata
            versions[name] = _module_version(name)
    return versions


def _module_version(name: str) -> str:
    """The package's ``version.py`` (torch has one), read, not imported: importing torch
    takes seconds and hundreds of MB, which a server answering with ONNX never needs."""
    import importlib.util

    spec = importlib.util.find_spec(name.replace("-", "_"))
    for folder in (spec and spec.submodule_search_locations) or []:
        version_file = Path(folder) / "version.py"
        if version_file.is_file():
            found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", version_file.read_text(), re.M)
            if found:
                return found[1]
    return "unknown"


def _model_dir(model_path: str) -> Path:
    """The folder holding the model's files: a local path, or the Hugging Face cache's
    snapshot of a model name (never downloaded here)."""
    if Path(model_path).is_dir():
        return Path(model_path)
    from huggingface_hub import snapshot_download

    for repo_id in (model_path, f"sentence-transformers/{model_path}"):
        with contextlib.suppress(Exception):
            return Path(snapshot_download(repo_id, local_files_only=True))
    raise QueryEncoderUnavailable(f"cannot find the files of model '{model_path}' to export")


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (shared by all processes on this host)."""
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _export_into(folder: Path, model_path: str) -> None:
    """Run the export in a child process; rename its folder into place when it passed,
    record the failure in ``folder`` when it did not."""
    started = time.monotonic()
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder left by hand
    logger.info("exporting the query encoder to ONNX (once per model and library version)")
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".export-") as scratch:
        out = Path(scratch) / "out"
        try:
            result = subprocess.run(  # noqa: S603 (our own module, paths we made)
                export_command(model_path, out),
                capture_output=True,
                text=True,
                timeout=EXPORT_TIMEOUT_SECONDS,
                check=False,
            )
            reason = _failure_reason(result)
        except subprocess.TimeoutExpired:
            reason = f"took longer than {EXPORT_TIMEOUT_SECONDS} s"
        if reason is None and not (out / FACTS_FILE).is_file():
            reason = "the export process wrote no result"
        if reason is not None:
            folder.mkdir(exist_ok=True)
            (folder / FAILED_FILE).write_text(reason + "\n")
            raise QueryEncoderUnavailable(f"the ONNX export failed: {reason}")
        out.rename(folder)
    logger.info("query encoder exported in %.1f s to %s", time.monotonic() - started, folder)


def export_command(model_path: str, out: Path) -> list[str]:
    """The child process that exports ``model_path`` into the new folder ``out``."""
    return [sys.executable, "-m", __name__, model_path, str(out)]


def _failure_reason(result: subprocess.CompletedProcess[str]) -> str | None:
    if result.returncode == 0:
        return None
    if result.returncode < 0:  # e.g. -9: the kernel's OOM killer
        return f"the export process was killed by signal {-result.returncode} (out of memory?)"
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"the export process exited with {result.returncode}"


def _prune(root: Path, slug: str, keep: Path) -> None:
    """Delete this model's older exports beyond the newest EXPORTS_KEPT_PER_MODEL."""
    own = re.compile(re.escape(slug) + "-[0-9a-f]{16}")  # not "<slug>-large-…" of another
    exports = sorted(
        (
            path
            for path in root.iterdir()
            if path.is_dir() and path != keep and own.fullmatch(path.name)
        ),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for old in exports[EXPORTS_KEPT_PER_MODEL - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def max_difference(
    model: SentenceTransformer,
    encoder: OnnxQueryEncoder,
    texts: tuple[str, ...] = PROBE_TEXTS,
    prompt: str = "",
) -> float:
    """Largest difference of any vector component between torch (on the model's own
    tokens) and ONNX (on its tokenizer's) on ``texts``."""
    worst = 0.0
    for text in texts:
        expected = torch_query_vector(model, model.preprocess([text], prompt=prompt or None))
        got = encoder.embed(text)
        worst = max(worst, max(abs(a - b) for a, b in zip(expected, got, strict=True)))
    return worst


def torch_query_vector(model: SentenceTransformer, features: Mapping[str, Any]) -> list[float]:
    """The unit vector the torch model makes of ``features`` (what the export must match)."""
    import torch

    with torch.inference_mode():
        vector = model(dict(features))["sentence_embedding"][0]
        return torch.nn.functional.normalize(vector, p=2, dim=0).tolist()


# --- the child's side: the export itself -----------------------------------------------
def export(model_path: str, out: Path) -> dict[str, Any]:
    """Export ``model_path`` (a sentence-transformers model) into the new folder ``out``
    and check it; returns the facts written to ``out/export.json``."""
    import torch
    from sentence_transformers import SentenceTransformer

    started = time.monotonic()
    model = SentenceTransformer(model_path, device="cpu")
    model.eval()
    example = model.preprocess(["an example question to trace the model with"])
    # Besides tensors, sentence-transformers 6 adds non-tensor facts (e.g. 'modality').
    unknown = {name for name, value in example.items() if torch.is_tensor(value)}
    unknown -= set(KNOWN_INPUTS)
    if unknown:
        raise QueryEncoderUnavailable(f"the tokenizer returns inputs {sorted(unknown)}")
    names = [name for name in KNOWN_INPUTS if name in example]

    class UnitVector(torch.nn.Module):
        """The model's sentence embedding, L2-normalised, from tensors (not a dict)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                features["token_type_ids"] = token_type_ids
            embedding = self.model(features)["sentence_embedding"]
            return torch.nn.functional.normalize(embedding, p=2, dim=1)

    sequence = torch.export.Dim("sequence", max=int(model.max_seq_length or 512))
    program = torch.onnx.export(
        UnitVector(),
        (),
        kwargs={name: example[name] for name in names},
        dynamic_shapes={name: {1: sequence} for name in names},
        input_names=names,
        output_names=["query_vector"],
        dynamo=True,
        verbose=False,
    )
    out.mkdir(parents=True)
    program.save(str(out / MODEL_FILE))
    max_seq_length = int(model.max_seq_length or 512)
    prompt = model.prompts.get("query") or ""
    (out / TOKENIZER_FILE).write_text(model.tokenizer.backend_tokenizer.to_str())
    encoder = OnnxQueryEncoder(
        out / MODEL_FILE, _load_tokenizer(out / TOKENIZER_FILE, max_seq_length), prompt
    )
    # The server tokenises with tokenizer.json alone: it must give the model's own tokens.
    for text in PROBE_TEXTS:
        expected = model.preprocess([text], prompt=prompt or None)
        got = encoder.features(text)
        if any(expected[name].tolist() != got[name].tolist() for name in names):
            raise QueryEncoderUnavailable(
                f"the tokenizer alone does not reproduce the model's tokens of {text[:40]!r}"
            )
    difference = max_difference(model, encoder, prompt=prompt)
    if difference > TOLERANCE:
        raise QueryEncoderUnavailable(
            f"the exported graph differs from the torch model by {difference:.1e} "
            f"(more than {TOLERANCE:.0e})"
        )
    probe = PROBE_TEXTS[1]
    facts = {
        "model": model_path,
        "inputs": names,
        "max_seq_length": max_seq_length,
        "query_prompt": prompt,
        "probe": {
            "text": probe,
            "vector": torch_query_vector(model, model.preprocess([probe], prompt=prompt or None)),
        },
        "max_difference": difference,
        "seconds": round(time.monotonic() - started, 1),
        "libraries": library_versions(),
        "format": EXPORT_FORMAT,
    }
    (out / FACTS_FILE).write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def _exit_with_parent() -> None:
    """End this process if the server that started it ends (nobody would use the result)."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.services.query_encoder",
        description="Export a sentence-transformers model's query path to ONNX (run by the "
        "app itself; see the module's docstring).",
    )
    parser.add_argument("model_path")
    parser.add_argument("out", type=Path, help="folder to create")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _exit_with_parent()
    try:
        facts = export(arguments.model_path, arguments.out)
    except Exception as error:  # one readable last line for the parent's log
        message = " ".join(str(error).split())[:500]
        print(f"{type(error).__name__}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
