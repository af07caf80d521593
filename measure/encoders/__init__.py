"""Sentence encoders and what they need: the me5-small checkpoint, ONNX export and int8
quantisation, and the on-disk embedding cache."""
