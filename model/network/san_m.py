"""SAN-M encoder-decoder with cross-layer weight sharing, trained with joint CTC/attention loss.

Shape of the network (all layers pre-LayerNorm, residual):

    waveform -> Fbank (80 log-mel) -> GlobalCMVN -> [SpecAugment, training only]
      -> Conv2dSubsampling4 (two 3x3 stride-2 convs, T/4) -> sinusoidal positions
      -> encoder positions 0..L-1, each running distinct block `layer_map[i]`
      -> LayerNorm -> CTC head (log-probs over tokens)
    decoder: token embedding + positions -> causal SAN-M self-attention, cross-attention to the
      encoder, feed-forward (positions again mapped onto a few distinct blocks) -> output scores.

SAN-M self-attention = multi-head attention plus an FSMN memory block: a depthwise 1-D conv over
time on the values, added to the attention output. It gives each layer cheap local context.
In the decoder the memory is causal (looks left only).

Cross-layer weight sharing: `encoder_layers` positions reuse `encoder_distinct` blocks. Position i
runs block `i * distinct // layers`, so consecutive positions share (12 positions over 2 blocks:
0-5 run block 0, 6-11 run block 1). The blocks live once in a ModuleList; the state dict and any
file written hold each shared weight once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from tinyasr.model.network.framing import Lengths, num_frames, subsampled_lengths
from tinyasr.model.network.frontend import NUM_MEL_BINS, Fbank, GlobalCMVN

IGNORE_ID = -1


@dataclass
class ModelConfig:
    vocab_size: int
    d_model: int = 144
    attention_heads: int = 4
    ffn_dim: int = 576
    fsmn_kernel: int = 11
    subsampling_channels: int = 32
    encoder_layers: int = 6
    encoder_distinct: int = 6
    decoder_layers: int = 2
    decoder_distinct: int = 2
    dropout: float = 0.1
    ctc_weight: float = 0.3
    label_smoothing: float = 0.1
    spec_augment: bool = True

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """A config from its JSON form, every value checked: a ValueError naming the first key
        that is missing, unknown, of the wrong type or out of range, or sizes that would make a
        model of more than MAX_PARAMETERS (checked before anything is allocated)."""
        if not isinstance(values, dict):
            raise ValueError(f"model config must be a JSON object, not {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        if "vocab_size" not in values:
            raise ValueError("model config has no vocab_size")
        for field in fields(cls):
            if field.name in values:
                _check_config_value(field.name, values[field.name], field.type)
        config = cls(**values)
        config._check_shapes()
        return config

    def _check_shapes(self) -> None:
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size {self.vocab_size}: need at least 3 tokens "
                             "(<blank>, <unk>, <sos/eos>)")
        if self.d_model % 2 or self.d_model % self.attention_heads:
            raise ValueError(f"d_model {self.d_model} must be even and divisible by "
                             f"attention_heads ({self.attention_heads})")
        for part in ("encoder", "decoder"):
            layers, distinct = getattr(self, f"{part}_layers"), getattr(self, f"{part}_distinct")
            if distinct > layers:
                raise ValueError(f"{part}_distinct {distinct} must be at most {part}_layers "
                                 f"({layers})")
            if layers > MAX_LAYERS:   # shared positions add no parameters, but each runs
                raise ValueError(f"{part}_layers {layers}: more than {MAX_LAYERS}")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ValueError(f"sizes give {self.parameter_count():.3g} parameters, more than "
                             f"the {MAX_PARAMETERS:.0e} a tinyasr model may have")

    def parameter_count(self) -> int:
        """Numbers in AsrModel(self)'s state dict (parameters and CMVN), from the sizes alone."""
        d, v, f, k, c = (self.d_model, self.vocab_size, self.ffn_dim, self.fsmn_kernel,
                         self.subsampling_channels)
        def linear(inputs: int, outputs: int) -> int:
            return inputs * outputs + outputs
        freq = ((NUM_MEL_BINS - 1) // 2 - 1) // 2
        subsampling = (9 * c + c) + (9 * c * c + c) + linear(c * freq, d)
        self_attention = linear(d, 3 * d) + linear(d, d) + d * k
        ffn = linear(d, f) + linear(f, d)
        encoder_block = 2 * 2 * d + self_attention + ffn
        decoder_block = 3 * 2 * d + self_attention + linear(d, d) + linear(d, 2 * d) \
            + linear(d, d) + ffn
        cmvn = 2 * NUM_MEL_BINS
        return (cmvn + subsampling + self.encoder_distinct * encoder_block + 2 * d
                + linear(d, v) + v * d + self.decoder_distinct * decoder_block + 2 * d
                + linear(d, v))

    def to_dict(self) -> dict:
        return asdict(self)


MAX_PARAMETERS = 10 ** 9   # far above any on-device model; refuses absurd configs early
MAX_LAYERS = 1000


def _check_config_value(name: str, value: object, kind: str | type) -> None:
    """One ModelConfig value against its field's type: sizes are integers >= 1, rates are
    numbers in [0, 1] (dropout and label_smoothing below 1), flags are booleans."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
    elif kind == "float":
        upper_open = name in ("dropout", "label_smoothing")
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not (0 <= value < 1 if upper_open else 0 <= value <= 1)):
            interval = "[0, 1)" if upper_open else "[0, 1]"
            raise ValueError(f"{name} must be a number in {interval}, not {value!r}")
    elif kind == "bool" and not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")


def shared_layer_map(layers: int, distinct: int) -> list[int]:
    """Which distinct block each of `layers` positions runs: consecutive positions share."""
    if not 1 <= distinct <= layers:
        raise ValueError(f"need 1 <= distinct ({distinct}) <= layers ({layers})")
    return [i * distinct // layers for i in range(layers)]


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim) sin/cos position table, computed on the fly so no table is stored."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                         * (-math.log(10000.0) / dim))
    angles = position * inv_freq
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


def padding_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B, max_length) bool, True on real frames."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, heads: int,
           mask: torch.Tensor | None, dropout: nn.Module) -> torch.Tensor:
    """Scaled dot-product attention over `heads` heads; mask (B, 1|Tq, Tk) True = may attend.

    query: (B, Tq, d); key and value: (B, Tk, d), or (1, Tk, d) broadcast to all B queries.
    The 1/sqrt(head_dim) scale goes on the query, the smaller of the query and the scores."""
    batch, q_len, dim = query.shape
    head_dim = dim // heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, heads, head_dim).transpose(1, 2)

    scores = split(query / math.sqrt(head_dim)) @ split(key).transpose(-2, -1)
    if mask is not None:
        # -1e9, or the lowest finite value where the dtype cannot hold it (fp16 autocast)
        scores = scores.masked_fill(~mask.unsqueeze(1), max(-1e9, torch.finfo(scores.dtype).min))
    weights = dropout(torch.softmax(scores, dim=-1))
    return (weights @ split(value)).transpose(1, 2).reshape(batch, q_len, dim)


class SanmSelfAttention(nn.Module):
    """Multi-head self-attention plus an FSMN memory block on the values."""

    def __init__(self, dim: int, heads: int, fsmn_kernel: int, dropout: float, causal: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.fsmn = nn.Conv1d(dim, dim, fsmn_kernel, groups=dim, bias=False)
        left = fsmn_kernel - 1 if causal else (fsmn_kernel - 1) // 2
        self.fsmn_padding = (left, fsmn_kernel - 1 - left)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor | None,
                attention_mask: torch.Tensor | None,
                history: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, d); history (T, K) for a prefix tree (B = 1, model/decoding/prefix_tree.py): the
        rows the FSMN reads for each node, T meaning none."""
        query, key, value = self.qkv(x).chunk(3, dim=-1)
        if frame_mask is not None:
            value = value * frame_mask.unsqueeze(-1)
        if history is None:
            memory = self.fsmn(F.pad(value.transpose(1, 2), self.fsmn_padding)).transpose(1, 2)
        else:
            memory = self._tree_memory(value, history)
        memory = memory + value
        if frame_mask is not None:
            memory = memory * frame_mask.unsqueeze(-1)
        context = attend(query, key, value, self.heads, attention_mask, self.dropout)
        return self.out(context) + self.dropout(memory)

    def _tree_memory(self, value: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """The FSMN over each node's history: (1, U, d) -> (1, U, d), the convolution applied
        to every node's window of K rows (zeros past the root) as one unpadded step."""
        dim = value.shape[-1]
        rows = torch.cat([value.reshape(-1, dim), value.new_zeros(1, dim)])
        windows = rows[history].transpose(1, 2)                          # (U, d, K)
        # (U, d, 1) -> (1, U, d) as a reshape: TVM 0.27's ConvertLayout dies (bad_alloc) on a
        # squeeze of the channels-last convolution's output
        return self.fsmn(windows).reshape(1, -1, dim)


class CrossAttention(nn.Module):
    """Decoder-to-encoder multi-head attention."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, U, d); memory: (B, T, d), or (1, T, d) shared by all B sequences (the n-best
        of one utterance), whose keys and values are then computed once, not B times."""
        key, value = self.key_value(memory).chunk(2, dim=-1)
        return self.out(attend(self.query(x), key, value, self.heads, memory_mask, self.dropout))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim))


class EncoderBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.d_model
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = SanmSelfAttention(dim, config.attention_heads, config.fsmn_kernel,
                                           config.dropout, causal=False)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, config.ffn_dim, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
        attention_mask = None if frame_mask is None else frame_mask.unsqueeze(1)
        x = x + self.dropout(self.attention(self.norm_attention(x), frame_mask, attention_mask))
        return x + self.dropout(self.ffn(self.norm_ffn(x)))


class DecoderBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.d_model
        self.norm_self = nn.LayerNorm(dim)
        self.self_attention = SanmSelfAttention(dim, config.attention_heads, config.fsmn_kernel,
                                                config.dropout, causal=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attention = CrossAttention(dim, config.attention_heads, config.dropout)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, config.ffn_dim, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None, self_mask: torch.Tensor,
                memory: torch.Tensor, memory_mask: torch.Tensor | None,
                history: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.norm_self(x), token_mask, self_mask,
                                                 history))
        x = x + self.dropout(self.cross_attention(self.norm_cross(x), memory, memory_mask))
        return x + self.dropout(self.ffn(self.norm_ffn(x)))


class Conv2dSubsampling4(nn.Module):
    """Two 3x3 stride-2 convolutions: (B, T, 80) -> (B, ((T-1)//2-1)//2, d_model)."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, channels, 3, 2), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, 2), nn.ReLU())
        freq = ((NUM_MEL_BINS - 1) // 2 - 1) // 2
        self.project = nn.Linear(channels * freq, dim)

    @staticmethod
    def output_lengths(lengths: Lengths) -> Lengths:
        return subsampled_lengths(lengths)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.conv(features.unsqueeze(1))                    # (B, C, T', F')
        batch, channels, frames, freq = x.shape
        return self.project(x.transpose(1, 2).reshape(batch, frames, channels * freq))


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dim = config.d_model
        self.subsampling = Conv2dSubsampling4(config.subsampling_channels, config.d_model)
        self.layer_map = shared_layer_map(config.encoder_layers, config.encoder_distinct)
        self.blocks = nn.ModuleList(EncoderBlock(config) for _ in range(config.encoder_distinct))
        self.norm = nn.LayerNorm(config.d_model)

    def forward(self, features: torch.Tensor,
                frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 80) normalized features -> (B, T/4, d); frame_mask (B, T/4) for padded batches."""
        x = self.subsampling(features)
        x = x * math.sqrt(self.dim) + sinusoidal_positions(x.shape[1], self.dim, x.device)
        for block_index in self.layer_map:
            x = self.blocks[block_index](x, frame_mask)
        return self.norm(x)


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dim = config.d_model
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.layer_map = shared_layer_map(config.decoder_layers, config.decoder_distinct)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.decoder_distinct))
        self.norm = nn.LayerNorm(config.d_model)
        self.output = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, U) tokens starting with <sos> -> (B, U, vocab) log-probs of the next token."""
        steps = tokens.shape[1]
        token_mask = padding_mask(token_lengths, steps)
        causal = torch.ones(steps, steps, dtype=torch.bool, device=tokens.device).tril()
        self_mask = token_mask.unsqueeze(1) & causal.unsqueeze(0)
        cross_mask = None if memory_mask is None else memory_mask.unsqueeze(1)
        positions = sinusoidal_positions(steps, self.dim, tokens.device)
        return self._log_probs(tokens, positions, token_mask, self_mask, memory, cross_mask)

    def tree_forward(self, tokens: torch.Tensor, depths: torch.Tensor, ancestors: torch.Tensor,
                     history: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """A prefix tree's nodes (model/decoding/prefix_tree.py: (U,) tokens and depths, (U, U)
        ancestors, (U, K) history) -> (U, vocab) log-probs of each node's next token; the same
        numbers as forward's at the step each node is, in every hypothesis through it."""
        positions = sinusoidal_positions(tokens.shape[0], self.dim, tokens.device)[depths]
        return self._log_probs(tokens[None], positions[None], None, ancestors[None], memory,
                               None, history)[0]

    def _log_probs(self, tokens: torch.Tensor, positions: torch.Tensor,
                   token_mask: torch.Tensor | None, self_mask: torch.Tensor,
                   memory: torch.Tensor, cross_mask: torch.Tensor | None,
                   history: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(tokens) * math.sqrt(self.dim) + positions
        for block_index in self.layer_map:
            x = self.blocks[block_index](x, token_mask, self_mask, memory, cross_mask, history)
        return torch.log_softmax(self.output(self.norm(x)), dim=-1)


def spec_augment_mask(fbank: torch.Tensor, lengths: torch.Tensor, freq_masks: int = 2,
                      freq_width: int = 10, time_masks: int = 2, time_width: int = 40
                      ) -> torch.Tensor:
    """SpecAugment as a 0/1 mask shaped like `fbank`: random frequency bands and time spans are
    zeroed in the CMVN'd features (0 = mean). A mask, so a teacher can see the same augmentation."""
    keep = torch.ones_like(fbank)
    batch, frames, bins = fbank.shape
    for b in range(batch):
        for _ in range(freq_masks):
            width = int(torch.randint(0, freq_width + 1, ()))
            start = int(torch.randint(0, max(1, bins - width), ()))
            keep[b, :, start:start + width] = 0
        for _ in range(time_masks):
            width = min(int(torch.randint(0, time_width + 1, ())), int(lengths[b]) // 5)
            start = int(torch.randint(0, max(1, int(lengths[b]) - width), ()))
            keep[b, start:start + width, :] = 0
    return keep


@dataclass
class TrainingOutputs:
    """What the losses need from one teacher-forced pass over a padded batch."""
    ctc_log_probs: torch.Tensor       # (B, T', vocab)
    encoded_lengths: torch.Tensor     # (B,)
    frame_mask: torch.Tensor          # (B, T') True on real frames
    decoder_log_probs: torch.Tensor   # (B, U + 1, vocab)
    decoder_targets: torch.Tensor     # (B, U + 1) y + <eos>, IGNORE_ID-padded


class AsrModel(nn.Module):
    """The whole recognizer: waveform front end, encoder + CTC head, attention decoder."""

    def __init__(self, config: ModelConfig, sos_eos: int):
        super().__init__()
        self.config = config
        self.sos_eos = sos_eos
        self.fbank = Fbank()
        self.cmvn = GlobalCMVN(torch.zeros(NUM_MEL_BINS), torch.ones(NUM_MEL_BINS))
        self.encoder = Encoder(config)
        self.ctc = nn.Linear(config.d_model, config.vocab_size)
        self.decoder = Decoder(config)

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) int16-scale audio -> (B, frames, 80) normalized log-mel."""
        return self.cmvn(self.fbank(waveform))

    def ctc_log_probs(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference path for one unpadded batch: (B, samples) -> ((B, T/4, vocab), (B, T/4, d)).
        Audio too short for one encoder frame (under 7 fbank frames, 0.085 s) gives T/4 = 0."""
        if Conv2dSubsampling4.output_lengths(num_frames(waveform.shape[1])) < 1:
            encoded = waveform.new_zeros(waveform.shape[0], 0, self.config.d_model)
            return waveform.new_zeros(waveform.shape[0], 0, self.config.vocab_size), encoded
        encoded = self.encoder(self.features(waveform))
        return torch.log_softmax(self.ctc(encoded), dim=-1), encoded

    def training_outputs(self, fbank: torch.Tensor, keep: torch.Tensor | None,
                         frame_lengths: torch.Tensor, targets: torch.Tensor,
                         target_lengths: torch.Tensor) -> TrainingOutputs:
        """Teacher-forced pass over a padded batch of raw fbank, masked by `keep` (SpecAugment)."""
        features = self.cmvn(fbank)
        if keep is not None:
            features = features * keep
        encoded_lengths = Conv2dSubsampling4.output_lengths(frame_lengths).clamp(min=1)
        frame_mask = padding_mask(encoded_lengths,
                                  Conv2dSubsampling4.output_lengths(features.shape[1]))
        encoded = self.encoder(features, frame_mask)
        decoder_in, decoder_out = self._teacher_forcing(targets, target_lengths)
        return TrainingOutputs(
            ctc_log_probs=torch.log_softmax(self.ctc(encoded), dim=-1),
            encoded_lengths=encoded_lengths, frame_mask=frame_mask,
            decoder_log_probs=self.decoder(decoder_in, target_lengths + 1, encoded, frame_mask),
            decoder_targets=decoder_out)

    def loss(self, fbank: torch.Tensor, frame_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, teacher: AsrModel | None = None,
             distill_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        """Joint CTC/attention loss on a padded batch of raw fbank (the trainer computes it once
        per utterance; it is deterministic); targets padded with IGNORE_ID.

        With a `teacher` (same tokens, in eval mode), `distill_weight` of the loss is instead the
        KL divergence from the teacher's CTC and decoder distributions to this model's, on the
        same augmented batch: knowledge distillation, e.g. of a weight-shared model from a dense
        one."""
        keep = None
        if self.training and self.config.spec_augment:
            keep = spec_augment_mask(fbank, frame_lengths)
        outputs = self.training_outputs(fbank, keep, frame_lengths, targets, target_lengths)
        batch = fbank.shape[0]
        ctc_loss = F.ctc_loss(outputs.ctc_log_probs.transpose(0, 1), targets.clamp(min=0),
                              outputs.encoded_lengths, target_lengths, blank=0, reduction="sum",
                              zero_infinity=True) / batch
        attention_loss = smoothed_nll(outputs.decoder_log_probs, outputs.decoder_targets,
                                      self.config.label_smoothing) / batch
        weight = self.config.ctc_weight
        total = weight * ctc_loss + (1 - weight) * attention_loss
        parts = {"ctc": ctc_loss.item(), "attention": attention_loss.item()}
        if teacher is None:
            return total, parts
        with torch.no_grad():
            taught = teacher.training_outputs(fbank, keep, frame_lengths, targets, target_lengths)
        distill = (weight * summed_kl(taught.ctc_log_probs, outputs.ctc_log_probs,
                                      outputs.frame_mask)
                   + (1 - weight) * summed_kl(taught.decoder_log_probs, outputs.decoder_log_probs,
                                              outputs.decoder_targets != IGNORE_ID)) / batch
        parts["distill"] = distill.item()
        return (1 - distill_weight) * total + distill_weight * distill, parts

    def _teacher_forcing(self, targets: torch.Tensor,
                         target_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """<sos> + y as decoder input (eos-padded), y + <eos> as its target (IGNORE_ID-padded)."""
        batch, length = targets.shape
        decoder_in = torch.full((batch, length + 1), self.sos_eos, dtype=targets.dtype,
                                device=targets.device)
        decoder_out = torch.full_like(decoder_in, IGNORE_ID)
        for b in range(batch):
            n = int(target_lengths[b])
            decoder_in[b, 1:n + 1] = targets[b, :n]
            decoder_out[b, :n] = targets[b, :n]
            decoder_out[b, n] = self.sos_eos
        return decoder_in, decoder_out


def smoothed_nll(log_probs: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Summed label-smoothed negative log-likelihood over non-IGNORE_ID positions."""
    valid = targets != IGNORE_ID
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    uniform = log_probs.mean(dim=-1)
    per_token = -(1 - smoothing) * picked - smoothing * uniform
    return (per_token * valid).sum()


def summed_kl(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor,
              valid: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the last axis, summed over the `valid` positions."""
    per_position = (teacher_log_probs.exp()
                    * (teacher_log_probs - student_log_probs)).sum(dim=-1)
    return (per_position * valid).sum()
