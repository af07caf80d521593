"""Measure zero-shot cross-lingual NLI transfer: train on some languages, score on others.

The folders, from the ground up (each imports only what stands below it):

* ``paths``, ``languages``, ``data``, ``cell`` — where files are, the language registry,
  NLI splits on disk, and what a measurement cell is (``CellSpec``) and yields;
* ``encoders/`` — the me5-small checkpoint, sentence encoders on PyTorch / ONNX Runtime,
  ONNX export and int8 quantisation, the on-disk embedding cache;
* ``methods/`` — the method interface (``base``), the row sampling every method shares,
  the probe, finetune and seq2seq methods, and the registry of them;
* ``store`` — the SQLite results store;
* ``running/`` — batch configs → cells, the local and the Ray engine;
* ``benchmarks/``, ``designs``, ``profile`` — timing and selection studies, the
  measurement designs, language profiles;
* ``cli`` — ``xlt-measure``.
"""
