"""ONNX export (optimum) and dynamic int8 quantisation for ONNX Runtime's CPU kernels.

Every export goes through :func:`optimum_export` (the encoder's feature extraction, the
fine-tuned classifier, mT5's encoder/decoder), so the exporter's settings live in one place.

Why a module of its own: the probe encoder and the fine-tuned classifier share it, and the
choice of scheme decides the speed. Measured on this project's 2-core AVX-512-VNNI/AMX CPU
(me5-small, XNLI texts; the figures are in docs/benchmarks.md):

* ``u8`` — optimum's ``AutoQuantizationConfig.avx2(per_channel=True)``: unsigned weights, so
  ONNX Runtime falls back to its u8u8 GEMM. About as fast as eager PyTorch fp32 (0.9–1.0×).
  The shipped probe grid was measured with it (backend ``ort-int8``).
* ``s8`` — onnxruntime.transformers' BERT graph fusions, then dynamic quantisation with
  *signed* per-channel weights: the u8s8 VNNI kernels (backend ``ort-int8-s8``). Of the
  fusions only bias + GELU is kept: the fused ``Attention``/``QAttention`` and
  ``MultiHeadAttention`` kernels and ``SkipLayerNormalization`` (residual + LayerNorm, 27%
  of the run time in ORT's profiler) were slower on this CPU than the plain ops. Best of 3
  interleaved rounds, 1,000 texts, 2 threads: 3.21× eager PyTorch with the plain ops vs
  2.40× with SkipLayerNormalization; cosine to PyTorch fp32 ≥ 0.993.

Activations are quantised at run time per tensor (dynamic), so a text's vector depends
very slightly on the other texts in its batch (see the memo in ``measure.methods.probe``). On CPUs
without VNNI, u8s8 products can saturate (ONNX Runtime's quantisation docs): use the
``u8`` backends (``ort-int8``) there. The encoder, the fine-tuned classifier and the
mT5 encoder/decoder (``measure.methods.seq2seq``) all quantise through this module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SCHEMES = ("s8", "u8")
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra"}


def optimum_export(model_dir: str | Path, out_dir: str | Path, *, task: str, opset: int) -> Path:
    """optimum's ONNX exporter on the CPU, without its (slow) validation pass."""
    from optimum.exporters.onnx import main_export  # heavy: only when exporting
    main_export(str(model_dir), output=Path(out_dir), task=task, opset=opset,
                do_validation=False, library_name="transformers", device="cpu")
    return Path(out_dir)


def quantise_dynamic(src_dir: Path, out_dir: Path, scheme: str = "s8",
                     file_name: str = "model.onnx") -> Path:
    """Quantise ``src_dir/file_name`` into ``out_dir/<stem>_quantized.onnx`` (optimum's
    naming; config.json is copied along) and return that path."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown int8 scheme {scheme!r}: use one of {SCHEMES}")
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{Path(file_name).stem}_quantized.onnx"   # optimum's name for it
    if scheme == "u8":
        from optimum.onnxruntime import ORTQuantizer
        from optimum.onnxruntime.configuration import AutoQuantizationConfig
        qconfig = AutoQuantizationConfig.avx2(is_static=False, per_channel=True)
        ORTQuantizer.from_pretrained(src_dir, file_name=file_name).quantize(
            save_dir=out_dir, quantization_config=qconfig)
    else:
        _quantise_s8(src_dir / file_name, dst)
    if not (out_dir / "config.json").exists() and (src_dir / "config.json").exists():
        shutil.copy(src_dir / "config.json", out_dir / "config.json")
    return dst


def _quantise_s8(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    external = src.with_name(f"{src.name}_data").exists()   # > 2 GB models (mT5-base and up)
    cfg_file = src.parent / "config.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    fused = dst.with_name(f"{src.stem}_fused.onnx")
    if cfg.get("model_type") in _BERT_LIKE and not external:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model
        options = FusionOptions("bert")
        options.enable_attention = False          # these fused kernels ran slower on
        options.enable_skip_layer_norm = False    # this CPU than the ops they replace
        options.enable_bias_skip_layer_norm = False
        model = optimize_model(str(src), model_type="bert", opt_level=1,
                               num_heads=int(cfg["num_attention_heads"]),
                               hidden_size=int(cfg["hidden_size"]), optimization_options=options)
        model.save_model_to_file(str(fused))
        src = fused
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     use_external_data_format=external,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fused.unlink(missing_ok=True)
    (dst.parent / "ort_config.json").write_text(json.dumps(
        {"scheme": "s8", "fusions": "onnxruntime.transformers bert: bias+GELU only"
         if src == fused else "none", "weights": "QInt8 per-channel", "activations": "QUInt8 dynamic"},
        indent=2) + "\n")
