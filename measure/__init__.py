"""Measure zero-shot cross-lingual NLI transfer: train on some languages, score on others.

The folders, from the ground up (each imports only what stands below it):

* ``knowledge/`` — what every package may know before any measurement: default paths, the
  language registry, pretraining coverage (the one pretraining rule), URIEL distances, the
  NLI task's constants and the typed training configuration (``TrainConfig``);
* ``data``, ``cell``, ``outputs``, ``stack`` — NLI splits on disk, what a measurement cell is
  (``CellSpec``) and yields, atomic output files, the optional measurement stack;
* ``encoders/`` — the me5-small checkpoint, sentence encoders on PyTorch / ONNX Runtime,
  ONNX export and int8 quantisation, the on-disk embedding cache;
* ``methods/`` — the method interface (``base``), the row sampling every method shares,
  the probe, finetune and seq2seq methods, and the registry of them;
* ``store`` — the SQLite results store;
* ``running/`` — batch configs → cells, the local and the Ray engine;
* ``benchmarks/``, ``designs``, ``profile`` (+ ``profile_inputs``, ``profile_reference``) —
  timing and selection studies, the measurement designs, language profiles;
* ``cli`` — ``xlt-measure``.
"""
