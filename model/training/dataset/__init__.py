"""Streamed training data: corpora (Kaldi dirs, tar shards), augmentation, batching, the stream."""
