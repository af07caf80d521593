"""The measurement methods (probe, finetune, seq2seq), the interface they share and their
registry: adding a method is one module here and one entry in ``registry``."""
