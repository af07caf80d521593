"""The one-time model steps (checkpoint build, ONNX export, int8 quantisation) run in child
processes, and only the steps a backend still lacks: the driver that then encodes and
writes the store never holds the 3-4 GB those steps peak at."""

from __future__ import annotations

from pathlib import Path

import pytest

from measure.encoders import encoder, me5


def test_missing_stages_of_an_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLT_CACHE_DIR", str(tmp_path))
    assert me5.built_checkpoint_dir() is None
    assert encoder._missing_stages("me5-small", "ort-int8-s8") == ["checkpoint", "fp32", "int8-s8"]
    assert encoder._missing_stages("me5-small", "ort-int8") == ["checkpoint", "fp32", "int8"]
    assert encoder._missing_stages("me5-small", "ort-fp32") == ["checkpoint", "fp32"]
    assert encoder._missing_stages("me5-small", "torch-fp32") == ["checkpoint"]
    assert encoder._missing_stages("intfloat/multilingual-e5-small", "ort-int8-s8") == []


def test_missing_stages_of_a_local_checkpoint(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLT_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert encoder._missing_stages(str(model), "ort-int8-s8") == ["fp32", "int8-s8"]
    fp32 = encoder.onnx_dir_for(str(model), "fp32")
    fp32.mkdir(parents=True)
    (fp32 / "model.onnx").write_bytes(b"x")
    assert encoder._missing_stages(str(model), "ort-int8-s8") == ["int8-s8"]
    assert encoder._missing_stages(str(model), "ort-fp32") == []
    s8 = encoder.onnx_dir_for(str(model), "int8-s8")
    s8.mkdir(parents=True)
    (s8 / "model_quantized.onnx").write_bytes(b"x")
    assert encoder._missing_stages(str(model), "ort-int8-s8") == []
    assert encoder._missing_stages(str(model), "torch-fp32") == []


def test_nothing_missing_starts_no_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder, "_missing_stages", lambda model, backend: [])

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("a child process was started with nothing to build")
    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", no_child)
    encoder.prepare_model_files("me5-small", "ort-int8-s8")
    encoder.prepare_model_files("me5-small", "ort-int8-s8", checkpoint_only=True)
    with pytest.raises(ValueError, match="unknown backend"):
        encoder.prepare_model_files("me5-small", "ort-int4")


def test_checkpoint_only_builds_just_the_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    class Pool:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> "Pool":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def submit(self, fn, model: str, stage: str):  # noqa: ANN001
            built.append(stage)
            return type("Done", (), {"result": lambda self: None})()
    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", Pool)
    monkeypatch.setattr(encoder, "_missing_stages",
                        lambda model, backend: ["checkpoint", "fp32", "int8-s8"])
    encoder.prepare_model_files("me5-small", "ort-int8-s8", checkpoint_only=True)
    assert built == ["checkpoint"]
    encoder.prepare_model_files("me5-small", "ort-int8-s8")
    assert built == ["checkpoint", "checkpoint", "fp32", "int8-s8"]
    monkeypatch.setattr(encoder, "_missing_stages", lambda model, backend: ["int8-s8"])
    built.clear()
    encoder.prepare_model_files("me5-small", "ort-int8-s8", checkpoint_only=True)
    assert built == []
