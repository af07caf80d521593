"""Benchmarks behind the project's defaults: encoder backends, seq2seq scoring, and the
probe's hyper-parameter selection."""
