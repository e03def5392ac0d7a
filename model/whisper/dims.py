"""The sizes of a Whisper model, without torch: a deployable's manifest and a model dir's config
hold them, and every runner (PyTorch, TVM, ONNX Runtime) reads them."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class WhisperDims:
    """Sizes of a Whisper model (tiny.en: 80 mels, d 384, 6 heads, 4 + 4 layers)."""

    n_mels: int = 80
    n_audio_ctx: int = 1500          # encoder frames per 30 s window
    n_vocab: int = 51864
    n_text_ctx: int = 448            # decoder positions
    d_model: int = 384
    n_heads: int = 6
    n_audio_layers: int = 4
    n_text_layers: int = 4

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def n_frames(self) -> int:
        """Log-mel frames per window (3000: 30 s at 10 ms; the encoder's stride-2 conv halves
        them to n_audio_ctx)."""
        return 2 * self.n_audio_ctx
