"""tinyasr.model: the SAN-M weight-shared speech recognizer (PyTorch), its front end, data and decoding."""
