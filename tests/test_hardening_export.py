"""Issue #13: the one-time ONNX export and int8 quantisation print no spurious warnings and
show a status line with the elapsed time (a tiny BERT with me5-small's tokenizer files, so
the tokenizer's false 'incorrect regex pattern' alarm is exercised too)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NOISE = ("incorrect regex pattern", "recommended minimum opset", "TracerWarning", "torch_dtype",
         "Weight deduplication", "pre-processing before quantization")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("optimum.exporters.onnx")
    from measure.encoders.encoder import resolve_model
    me5 = Path(resolve_model("me5-small"))
    d = tmp_path_factory.mktemp("tiny-bert")
    cfg = transformers.BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(d)
    for f in me5.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "sentencepiece")):
            shutil.copy(f, d / f.name)
    return d


def test_export_and_quantise_are_quiet_with_progress(tiny_model: Path, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture) -> None:
    from measure.encoders.encoder import _export_fp32, _quantise_int8
    with warnings.catch_warnings():
        warnings.simplefilter("always")               # nothing may be hidden by "once" state
        _export_fp32(str(tiny_model), tmp_path / "fp32")
        _quantise_int8(tmp_path / "fp32", tmp_path / "s8", "s8")
        _quantise_int8(tmp_path / "fp32", tmp_path / "u8", "u8")
    out, err = capfd.readouterr()
    assert (tmp_path / "fp32" / "model.onnx").is_file()
    assert (tmp_path / "s8" / "model_quantized.onnx").is_file()
    assert (tmp_path / "u8" / "model_quantized.onnx").is_file()
    text = out + err
    for noise in NOISE:
        assert noise not in text, f"{noise!r} printed:\n{text}"
    assert "exporting tiny-bert" in err and err.count("done in") == 3, err


def test_other_warnings_are_not_silenced_afterwards() -> None:
    from measure.encoders.encoder import _quiet_export
    with _quiet_export():
        pass
    with pytest.warns(UserWarning, match="still shown"):
        warnings.warn("still shown", UserWarning)
