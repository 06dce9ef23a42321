"""The ONNX query encoder: the same vectors as the torch model, exported once and cached,
and every way it can fail leaves queries on torch with a reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.services import embeddings, query_encoder
from app.services.query_encoder import QueryEncoderUnavailable

EXPORT_WAIT_SECONDS = 600  # a first export on a busy 2-core machine


@pytest.fixture(scope="module")
def ready_encoder(settings):
    """The torch model, with the process's ONNX encoder exported (or loaded from the test
    cache) and switched on."""
    path = embeddings.start_query_path(settings)
    assert path.thread is not None
    path.thread.join(EXPORT_WAIT_SECONDS)
    assert path.encoder is not None, path.status
    return embeddings.load_model(settings)


def _export_folder(settings, loaded) -> Path:
    return query_encoder.export_folder(
        settings.models_cache_dir, loaded.model_name, loaded.model_path
    )


def _arguments(loaded, cache_dir: Path) -> tuple:
    return loaded.model_path, loaded.model_name, cache_dir


def _queries_embedded_by(backend: str) -> float:
    """How many questions ``backend`` has embedded in this process (from /metrics)."""
    count = REGISTRY.get_sample_value(
        "knowledgetree_query_embedding_seconds_count", {"backend": backend}
    )
    return count or 0.0


def _failing_export(message: str):
    return lambda model_path, out: [sys.executable, "-c", f"import sys; sys.exit({message!r})"]


@pytest.mark.timeout(EXPORT_WAIT_SECONDS + 60)
def test_onnx_queries_match_llamaindex_and_the_export_is_checked(settings, ready_encoder):
    assert embeddings.query_encoder_status(settings) == "ONNX Runtime"
    reference = embeddings.get_embed_model(settings)
    before = _queries_embedded_by("onnx")
    for text in ["Who climbs the lighthouse steps?", "ünïcödé, émojis 🐝", "word " * 400]:
        onnx_vector = embeddings.embed_query(text, settings)
        expected = reference.get_query_embedding(text)
        assert max(abs(a - b) for a, b in zip(onnx_vector, expected, strict=True)) < 1e-5
    assert _queries_embedded_by("onnx") == before + 3
    facts = json.loads(
        (_export_folder(settings, ready_encoder) / query_encoder.FACTS_FILE).read_text()
    )
    assert facts["max_difference"] < query_encoder.TOLERANCE
    assert facts["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert len(facts["probe"]["vector"]) == 384


def test_a_cached_export_is_loaded_and_checked_without_torch(settings, ready_encoder):
    """What makes a colour ready in seconds: neither the app's modules nor loading the
    cached encoder import torch, nor the Anthropic and Stripe SDKs (imported in the
    background after ready; a child process: this one has them all loaded)."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import app.main, app.services.chat, app.services.ingestion.worker\n"
        "from app.services import query_encoder\n"
        "encoder = query_encoder.load_cached(*sys.argv[1:3], Path(sys.argv[3]))\n"
        "print(encoder.dimension, encoder.embed('How long are backups kept?')[:3])\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', "
        "'llama_index', 'anthropic', 'stripe') if m in sys.modules))\n"
    )
    arguments = _arguments(ready_encoder, settings.models_cache_dir)
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, arguments)],
        capture_output=True, text=True, check=False, env=os.environ | {"PYTHONPATH": "."},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    dimension_and_vector, imported = result.stdout.splitlines()[-2:]
    expected = embeddings.get_embed_model(settings).get_query_embedding(
        "How long are backups kept?"
    )
    assert dimension_and_vector.startswith("384 ")
    got = json.loads(dimension_and_vector.split(" ", 1)[1])
    assert max(abs(a - b) for a, b in zip(got, expected[:3], strict=True)) < 1e-5
    assert imported == "[]"


def test_an_export_that_does_not_reproduce_its_probe_is_not_used(settings, ready_encoder, tmp_path):
    good = _export_folder(settings, ready_encoder)
    copy = tmp_path / "onnx" / good.name
    shutil.copytree(good, copy)
    facts = json.loads((copy / query_encoder.FACTS_FILE).read_text())
    facts["probe"]["vector"][0] += 0.01  # as if another tokenizer or graph were there
    (copy / query_encoder.FACTS_FILE).write_text(json.dumps(facts))
    with pytest.raises(QueryEncoderUnavailable, match="differs from its probe vector"):
        query_encoder.load_cached(*_arguments(ready_encoder, tmp_path))


def test_torch_answers_while_the_encoder_is_not_ready(settings, ready_encoder, monkeypatch):
    text = "How long are backups kept?"
    onnx_vector = embeddings.embed_query(text, settings)
    monkeypatch.setattr(embeddings.query_path(settings), "encoder", None)
    before = _queries_embedded_by("torch")
    torch_vector = embeddings.embed_query(text, settings)
    assert _queries_embedded_by("torch") == before + 1
    assert max(abs(a - b) for a, b in zip(onnx_vector, torch_vector, strict=True)) < 1e-5


async def test_readiness_and_metrics_say_what_embeds_queries(settings, client, ready_encoder):
    detail = (await client.get("/readyz")).json()["checks"]["embedding_model"]["detail"]
    assert detail.endswith("queries embedded by ONNX Runtime")
    embeddings.embed_query("How long are backups kept?", settings)
    metrics = (await client.get("/metrics")).text
    assert 'knowledgetree_query_embedding_seconds_count{backend="onnx"}' in metrics


def test_a_cached_export_is_loaded_without_exporting(settings, ready_encoder, monkeypatch):
    monkeypatch.setattr(query_encoder, "export_command", _failing_export("must not run"))
    folder = _export_folder(settings, ready_encoder)
    os.utime(folder, (1_000_000, 1_000_000))
    encoder = query_encoder.prepare(*_arguments(ready_encoder, settings.models_cache_dir))
    assert query_encoder.max_difference(ready_encoder.sentence_transformer, encoder) < 1e-5
    assert folder.stat().st_mtime > 1_000_000, "marked as used, so pruning keeps it"


def test_a_failed_export_is_recorded_and_not_retried(ready_encoder, tmp_path, monkeypatch):
    monkeypatch.setattr(
        query_encoder, "export_command", _failing_export("TorchExportError: unsupported op")
    )
    arguments = _arguments(ready_encoder, tmp_path)
    with pytest.raises(QueryEncoderUnavailable, match="failed: TorchExportError: unsupported op"):
        query_encoder.prepare(*arguments)
    [failed] = list((tmp_path / "onnx").glob("*/failed.txt"))
    assert "unsupported op" in failed.read_text()

    def never(model_path, out):
        raise AssertionError("a recorded failure must not be retried")

    monkeypatch.setattr(query_encoder, "export_command", never)
    with pytest.raises(QueryEncoderUnavailable, match=r"failed earlier .* delete .* to try again"):
        query_encoder.prepare(*arguments)
    assert not list((tmp_path / "onnx").glob(".export-*")), "scratch folders are cleaned up"


def test_a_damaged_cache_file_is_exported_again(settings, ready_encoder, tmp_path, monkeypatch):
    good = _export_folder(settings, ready_encoder)
    # The "export" copies the good one: the real export is tested above, this tests the
    # recovery around it.
    monkeypatch.setattr(
        query_encoder,
        "export_command",
        lambda model_path, out: [
            sys.executable,
            "-c",
            f"import shutil; shutil.copytree({str(good)!r}, {str(out)!r})",
        ],
    )
    damaged = tmp_path / "onnx" / good.name
    shutil.copytree(good, damaged)
    (damaged / query_encoder.MODEL_FILE).write_bytes(b"not an onnx graph")
    encoder = query_encoder.prepare(*_arguments(ready_encoder, tmp_path))
    assert query_encoder.max_difference(ready_encoder.sentence_transformer, encoder) < 1e-5
    assert (damaged / query_encoder.MODEL_FILE).read_bytes() == (
        good / query_encoder.MODEL_FILE
    ).read_bytes()


def test_a_killed_export_says_so():
    killed = subprocess.CompletedProcess(args=[], returncode=-9, stdout="", stderr="")
    assert "killed by signal 9" in query_encoder._failure_reason(killed)
    failed = subprocess.CompletedProcess(args=[], returncode=1, stdout="", stderr="a\n\nlast\n")
    assert query_encoder._failure_reason(failed) == "last"


def test_only_the_newest_exports_of_a_model_are_kept(tmp_path):
    names = ["m-" + "1" * 16, "m-" + "2" * 16, "m-" + "3" * 16, "m-large-" + "4" * 16]
    for age, name in enumerate(names):  # newest first
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1_000_000 - age * 100, 1_000_000 - age * 100))
    current = tmp_path / ("m-" + "a" * 16)
    current.mkdir()
    query_encoder._prune(tmp_path, "m", keep=current)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [current.name, names[0], names[3]]
    )


def test_the_fingerprint_follows_the_model_files_and_libraries(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_text("another format: not part of the model")
    first = query_encoder.fingerprint(tmp_path)
    (tmp_path / "onnx" / "model.onnx").write_text("changed")
    assert query_encoder.fingerprint(tmp_path) == first
    (tmp_path / "config.json").write_text('{"hidden_size": 384}')
    second = query_encoder.fingerprint(tmp_path)
    assert second != first
    versions = query_encoder.library_versions()
    monkeypatch.setattr(
        query_encoder, "library_versions", lambda: {**versions, "onnxruntime": "0.0"}
    )
    assert query_encoder.fingerprint(tmp_path) != second
