"""Whisper tiny.en as a second model family, in PyTorch on the host.

    ct2_reader.py   CTranslate2's model.bin -> named tensors (fp16 widened to fp32)
    convert.py      the shipped CTranslate2 model -> a cached tinyasr model dir (family "whisper")
    dims.py         the model's sizes (no torch)
    audio.py        audio framing shared by every runner: sizes, log-mel input padding, windows
                    (numpy, no torch)
    frontend.py     Whisper's 80-bin log-mel front end in torch ops
    tokenizer.py    byte-level BPE over the shipped vocabulary, special tokens
    model.py        encoder and KV-cached decoder (static shapes, torch.export-friendly)
    decoding.py     greedy and beam search without timestamps, no-speech gate (numpy, no torch)
    recognizer.py   samples -> text: 30 s windows, front end, encoder, search, detokenize
                    (numpy, no torch: its model is eager.py's or a compiled one)
    eager.py        the PyTorch model as the recognizer's model (numpy at its boundary)
"""
