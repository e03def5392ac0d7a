"""tinyasr.model: the speech recognizers in PyTorch (SAN-M and Whisper), their data, decoding,
training and compression, one layer a sub-package (see the README's layout)."""
