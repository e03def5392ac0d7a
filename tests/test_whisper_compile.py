"""Whisper compiled by TVM (compile/whisper_*.py) against the PyTorch Whisper it came from.

Fast: a 1+1-layer, 64-wide random Whisper from the same model code (a 2 s window, a 64-slot
cache) built once for the module (~1 min here): log-mel, encoder output, logits and the cache
after a reorder, within float tolerance of PyTorch; the manifest; each family's reader refusing
the other family's deployable in one line. Slow (whisper-tiny.en built once, several minutes on
two loaded cores): encoder output and logits on real speech, and transcripts equal to the
PyTorch recognizer's on two real utterances.

Tolerances: both sides compute in fp32 with different summation orders (register tiles and
vector partial sums against PyTorch's BLAS), and TVM's exp/log are polynomial approximations
(fast-math); per-op relative errors stay near 1e-6, and a few layers of LayerNorm-scaled
activations of magnitude O(1-10) put the random model's differences near 1e-5 (1e-4 allowed).
whisper-tiny.en's encoder output reaches magnitudes ~10-40 and its logits ~30 after 4+4
layers, where measured differences are ~1e-4 to 1e-3 (stated bound 2e-2, still 100x smaller
than the logit gaps that decide a greedy token, which the transcript test checks directly).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.network.pretrained_paths import REAL_SPEECH_DIR
from tinyasr.model.whisper.audio import pad_window
from tinyasr.model.whisper.convert import ensure_whisper_model, load_whisper_dir, write_model_dir
from tinyasr.model.whisper.decoding import start
from tinyasr.model.whisper.dims import WhisperDims
from tinyasr.model.whisper.eager import EagerWhisper
from tinyasr.model.whisper.model import Whisper
from tinyasr.model.whisper.recognizer import WhisperRecognizer
from tinyasr.targets.boards import board_target, get_board

SMALL = WhisperDims(n_audio_ctx=100, n_text_ctx=64, d_model=64, n_heads=2, n_audio_layers=1,
                    n_text_layers=1)
SMALL_TOLERANCE = 1e-4
TINY_TOLERANCE = 2e-2


def _noise_speech(seconds: float, seed: int = 0) -> np.ndarray:
    """int16-scale test audio: a few tones under noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    tones = sum(np.sin(2 * np.pi * f * t) for f in (220, 470, 1250))
    return (3000 * tones + 500 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def whisper_parts():
    model, tokenizer, config = load_whisper_dir(ensure_whisper_model())
    return model, tokenizer, config


@pytest.fixture(scope="module")
def small(whisper_parts, tmp_path_factory):
    """(PyTorch model, compiled model) of a small random Whisper with the real tokenizer,
    compiled through the Python API (which tells the family from the model dir)."""
    import tinyasr
    from tinyasr.targets.host.whisper_runner import CompiledWhisper

    _, tokenizer, config = whisper_parts
    torch.manual_seed(0)
    model = Whisper(SMALL).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    root = tmp_path_factory.mktemp("whisper-small")
    write_model_dir(model, tokenizer, config, root / "model", "small")
    tinyasr.compile_model(root / "model", "host", root / "lib", untuned=True)
    return model, CompiledWhisper(root / "lib"), root / "lib"


def test_small_log_mel_encoder_and_steps_match_pytorch(small, whisper_parts):
    model, compiled, _ = small
    specials = whisper_parts[1].specials
    audio = _noise_speech(1.5)
    eager = EagerWhisper(model)
    for length in (160, 333, audio.size):     # one frame, two, many
        reference = eager.log_mel(audio[:length])
        assert compiled.log_mel(audio[:length]).shape == reference.shape
        assert np.abs(compiled.log_mel(audio[:length]) - reference).max() < SMALL_TOLERANCE
    window = pad_window(reference, model.n_frames)[None]
    encoded = eager.encoder(window)
    compiled_encoded = compiled.encoder(window)
    assert np.abs(compiled.encoded(compiled_encoded) - encoded.numpy()).max() < SMALL_TOLERANCE
    state, logits, no_speech = start(eager, encoded, specials)
    compiled_state, compiled_logits, compiled_no_speech = start(compiled, compiled_encoded,
                                                                specials)
    assert np.abs(compiled_logits - logits).max() < SMALL_TOLERANCE
    assert abs(compiled_no_speech - no_speech) < SMALL_TOLERANCE
    # beam search's reorders: one row repeated (new caches), then a step of two
    # hypotheses, then the two swapped (in place, the written slots only) and a step
    for s in (state, compiled_state):
        s.reorder(np.array([0, 0]))
    tokens = np.array([[11], [220]])
    assert np.abs(compiled_state.step(tokens) - state.step(tokens)).max() < SMALL_TOLERANCE
    for s in (state, compiled_state):
        s.reorder(np.array([1, 0]))
    tokens = np.array([[13], [13]])
    assert np.abs(compiled_state.step(tokens) - state.step(tokens)).max() < SMALL_TOLERANCE


def test_small_step_writes_its_caches_in_place(small):
    """The compiled step writes its tokens' keys and values into the caches it is given and
    returns those tensors (passes/cache_write.py): the same storage, the step's slots equal to
    PyTorch's cache after the same step (fp32, ~1e-6 measured, SMALL_TOLERANCE allowed), every
    other slot exactly as given."""
    import tvm

    model, compiled, _ = small
    dims = model.dims
    rng = np.random.default_rng(1)
    shape = (2, dims.n_heads, dims.n_text_ctx, dims.d_model // dims.n_heads)
    given = [rng.standard_normal(shape).astype(np.float32) for _ in range(2 * dims.n_text_layers)]
    cross = [rng.standard_normal((1, dims.n_heads, dims.n_audio_ctx, shape[3])).astype(np.float32)
             for _ in range(2 * dims.n_text_layers)]
    tokens, positions = np.array([[5, 7, 9], [11, 13, 15]]), np.array([3, 4, 5])
    caches = [tvm.runtime.tensor(c) for c in given]
    outputs = compiled.vm["step"](
        tvm.runtime.tensor(tokens), tvm.runtime.tensor(positions), *caches,
        *(tvm.runtime.tensor(c) for c in cross), *compiled.weights["step"])
    n = dims.n_text_layers
    with torch.no_grad():
        logits, self_k, self_v = model.decoder(
            torch.from_numpy(tokens), torch.from_numpy(positions),
            tuple(torch.from_numpy(c) for c in given[:n]),
            tuple(torch.from_numpy(c) for c in given[n:]),
            tuple(torch.from_numpy(c) for c in cross[:n]),
            tuple(torch.from_numpy(c) for c in cross[n:]))
    assert np.abs(outputs[0].numpy() - logits.numpy()).max() < SMALL_TOLERANCE
    others = np.setdiff1d(np.arange(dims.n_text_ctx), positions)
    for cache, out, expected, before in zip(caches, list(outputs)[1:], (*self_k, *self_v),
                                            given, strict=True):
        assert out.data_ptr() == cache.data_ptr()   # returned as given: no copy
        written = out.numpy()
        assert np.abs(written[:, :, positions] - expected.numpy()[:, :, positions]).max() < (
            SMALL_TOLERANCE)
        assert np.array_equal(written[:, :, others], before[:, :, others])


def test_gelu_legalizes_to_a_vectorizable_erf_within_float_rounding():
    """passes/gelu_erf.py then the pipeline's legalization: no libm erf call is left, and the
    compiled GELU agrees with torch's exact GELU."""
    import tvm
    from tvm import relax

    from tinyasr.compile.pipeline import LEGALIZE_PASSES
    from tinyasr.targets.boards import host_target

    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((64, 96), "float32"))
    with builder.function("main", [x]):
        with builder.dataflow():
            y = builder.emit_output(relax.op.nn.gelu(x))
        builder.emit_func_output(y)
    target = tvm.target.Target(host_target())
    with target:
        mod = tvm.transform.Sequential(LEGALIZE_PASSES)(builder.get())
    assert "T.erf(" not in mod.script()
    vm = relax.VirtualMachine(tvm.compile(mod, target), tvm.cpu())
    values = np.linspace(-8, 8, 64 * 96, dtype=np.float32).reshape(64, 96)
    got = vm["main"](tvm.runtime.tensor(values)).numpy()
    want = torch.nn.functional.gelu(torch.from_numpy(values)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_small_manifest_says_family_and_decoder(small, whisper_parts):
    _, _, lib = small
    manifest = json.loads((lib / "manifest.json").read_text())
    specials = whisper_parts[1].specials
    assert manifest["family"] == "whisper"
    assert manifest["decoder"]["sot_sequence"] == [specials.sot, specials.no_timestamps]
    assert manifest["decoder"]["eot"] == specials.eot
    assert manifest["decoder"]["n_ctx"] == SMALL.n_text_ctx
    assert manifest["decoder"]["suppress_ids"] == whisper_parts[2]["suppress_ids"]
    assert set(manifest["functions"]) == {"log_mel", "encode", "step"}
    # the tied embedding is stored once: the step's gather and logits read one tensor
    embedding = [key for key in manifest["functions"]["step"]["weights"]
                 if "embed_tokens" in key]
    assert len(embedding) == 1


def test_each_family_refuses_the_other_in_one_line(small, tmp_path):
    from tinyasr.compile.deployable import read_manifest
    from tinyasr.targets.host.runner import CompiledModelRunner
    from tinyasr.targets.host.whisper_runner import CompiledWhisper

    _, _, lib = small
    with pytest.raises(InputError, match="whisper deployable, not SAN-M"):
        read_manifest(lib)
    with pytest.raises(InputError, match="whisper deployable, not SAN-M"):
        CompiledModelRunner(lib)
    sanm = tmp_path / "sanm"
    sanm.mkdir()
    manifest = json.loads((lib / "manifest.json").read_text())
    del manifest["family"]                  # a manifest from before families: SAN-M
    (sanm / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="san-m deployable, not Whisper"):
        CompiledWhisper(sanm)


def test_transcribe_lib_runs_a_whisper_deployable(small, tmp_path, capsys):
    """The CLI path: `tinyasr transcribe --lib` picks the Whisper runner by the manifest and
    runs it on TVM's runtime alone (no torch, no TVM compiler, as for SAN-M: test_cli.py),
    printing what a process with torch and all of TVM loaded prints."""
    import subprocess
    import sys
    import wave

    import tinyasr
    from tinyasr.scripts.cli import main

    _, _, lib = small
    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(_noise_speech(1.0).astype(np.int16).tobytes())
    argv = ["tinyasr", "transcribe", "--lib", str(lib), str(wav)]
    code = (f"import sys\nsys.argv = {argv!r}\nfrom tinyasr.scripts.cli import main\n"
            "rc = main()\nprint(sorted(n for n, m in sys.modules.items() if m is not None and "
            "n.split('.')[0] in ('torch', 'ml_dtypes')), 'tvm.relax' in sys.modules, rc)")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    text, loaded = result.stdout.splitlines()
    assert text.startswith(f"{wav}\t") and loaded == "[] False 0"
    assert main(argv[1:]) == 0
    assert capsys.readouterr().out.splitlines() == [text]
    # the Python API reads the family from the manifest too
    assert tinyasr.transcribe(wav, tinyasr.load_deployable(lib)) == text.split("\t", 1)[1]
    broken = tmp_path / "broken"
    shutil.copytree(lib, broken)
    (broken / "weights.bin").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "tinyasr.scripts.cli", "transcribe", "--lib",
                             str(broken), str(wav)], check=False, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny(whisper_parts, tmp_path_factory):
    """whisper-tiny.en compiled for the host (untuned: no database is shipped for Whisper)."""
    from tinyasr.compile.whisper_deployable import build_whisper_deployable
    from tinyasr.targets.host.whisper_runner import load_compiled_whisper

    lib = tmp_path_factory.mktemp("whisper-tiny") / "lib"
    build_whisper_deployable(ensure_whisper_model(), get_board("host"), lib, untuned=True)
    return load_compiled_whisper(lib)


@pytest.fixture(scope="module")
def realspeech() -> dict[str, np.ndarray]:
    utterances = read_data_dir(REAL_SPEECH_DIR)[:2]
    return {u.uid: load_wav(u.wav) for u in utterances}


@pytest.mark.slow
def test_tiny_encoder_and_logits_match_pytorch(tiny, whisper_parts, realspeech):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model, tokenizer, config = whisper_parts
    samples = next(iter(realspeech.values()))
    reference = WhisperRecognizer(EagerWhisper(model), tokenizer, config)
    (window, _), = reference.windows(samples)
    (compiled_window, _), = tiny.windows(samples)
    assert np.abs(compiled_window - window).max() < SMALL_TOLERANCE
    encoded = reference.model.encoder(window)
    compiled_encoded = tiny.model.encoder(window)
    assert np.abs(tiny.model.encoded(compiled_encoded) - encoded.numpy()).max() < TINY_TOLERANCE
    _, logits, no_speech = start(reference.model, encoded, tokenizer.specials)
    _, compiled_logits, compiled_no_speech = start(tiny.model, compiled_encoded,
                                                   tokenizer.specials)
    assert np.abs(compiled_logits - logits).max() < TINY_TOLERANCE
    assert abs(compiled_no_speech - no_speech) < 1e-3


@pytest.mark.slow
def test_tiny_transcripts_equal_pytorch(tiny, whisper_parts, realspeech):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model, tokenizer, config = whisper_parts
    reference = WhisperRecognizer(EagerWhisper(model), tokenizer, config)
    for uid, samples in realspeech.items():
        assert tiny.transcribe(samples) == reference.transcribe(samples), uid


@pytest.fixture(scope="module")
def small_int8(small, tmp_path_factory):
    """The small random Whisper compiled with --int8, and its int8-weight PyTorch twin; the
    token embedding's scales per 32 columns (EMBEDDING_GROUP's 128 would be one per row of
    d_model 64), so that the kernel's groups are what runs."""
    from unittest import mock

    from tinyasr.compile import whisper_int8
    from tinyasr.compile.whisper_deployable import build_whisper_deployable
    from tinyasr.targets.host.whisper_runner import CompiledWhisper

    model, _, lib = small
    out = tmp_path_factory.mktemp("whisper-small-int8") / "lib"
    with mock.patch.object(whisper_int8, "EMBEDDING_GROUP", 32):
        build_whisper_deployable(Path(json.loads((lib / "manifest.json").read_text())["model"]
                                      ["path"]), get_board("host"), out, untuned=True, int8=True)
        twin = whisper_int8.quantize_whisper(model)
    return twin, CompiledWhisper(out), out


def test_small_int8_runs_int8_weights_near_its_reference(small_int8, whisper_parts):
    """Every block linear layer's weight, both front convolutions' and the tied token
    embedding are stored int8 (one fp32 scale per output channel / per 32 columns of a token
    row), the embedding once for its gather and the logits; the compiled model also rounds
    each layer's input to int8 per row, and on VNNI hosts runs the encoder's attention on int8
    dot products, which the PyTorch twin (the same int8 weights, fp32 activations) does not,
    nor its float16 cross-attention caches: measured differences ~1e-2 of logits of magnitude
    ~3; 5% of the largest logit allowed."""
    import tvm

    from tinyasr.compile.deployable import read_weights_index
    from tinyasr.compile.kernels.int8 import VNNI, dot_isa
    from tinyasr.compile.kernels.interleaved_rows import scales_shape, table_shape
    from tinyasr.compile.whisper_deployable import half_cross_caches

    reference, compiled, lib = small_int8
    manifest = json.loads((lib / "manifest.json").read_text())
    assert manifest["weights_encoding"] == "int8"
    dtypes = [dtype for dtype, _ in read_weights_index(lib / "weights.bin").values()]
    # encoder blocks: qkv, out, fc1, fc2; decoder blocks also the cross query, kv and out;
    # the two front convolutions, the token embedding
    assert dtypes.count("int8") == 4 * SMALL.n_audio_layers + 7 * SMALL.n_text_layers + 3
    embedding = sorted(key for key in manifest["functions"]["step"]["weights"]
                       if "embed_tokens" in key)
    shapes = {key: list(shape) for key, (_, shape)
              in read_weights_index(lib / "weights.bin").items()}
    if dot_isa(tvm.target.Target(board_target(get_board("host")))) is VNNI:
        # stored once, interleaved, for the logits kernel and the gathers that read it
        assert embedding == []
        step_shapes = [shapes[key] for key in manifest["functions"]["step"]["weights"]]
        assert list(table_shape(SMALL.n_vocab, SMALL.d_model)) in step_shapes
        assert list(scales_shape(SMALL.n_vocab, 2)) in step_shapes
    else:
        assert embedding == ["step/p_decoder_embed_tokens_scale",
                             "step/p_decoder_embed_tokens_values"]
        assert shapes["step/p_decoder_embed_tokens_scale"] == [SMALL.n_vocab, 2]
    eager = EagerWhisper(reference)
    window = pad_window(eager.log_mel(_noise_speech(1.5)), reference.n_frames)[None]
    _, logits, _ = start(eager, eager.encoder(window), whisper_parts[1].specials)
    _, compiled_logits, _ = start(compiled, compiled.encoder(window), whisper_parts[1].specials)
    assert np.abs(compiled_logits - logits).max() < 0.05 * np.abs(logits).max()
    # the cross-attention keys and values pass from encode to step as float16 where the host
    # widens float16 in registers (F16C), else as float32
    half = half_cross_caches(board_target(get_board("host")))
    cross = compiled.encoder(window)[1:]
    assert len(cross) == 2 * SMALL.n_text_layers
    assert {str(t.dtype) for t in cross} == {"float16" if half else "float32"}


def test_int8_embedding_is_the_dequantized_embedding(small):
    """The int8 twin's token embedding (whisper_int8.Int8Embedding, scales per 16 columns:
    4 a row of d_model 64) gathers and multiplies as an fp32 nn.Embedding holding values *
    scale would: the same rows, the same logits up to fp32 summation order: ~1e-6 of logits of
    magnitude ~3; each scale is its group's max |weight| / 127, so every weight is within half
    a step of its group's scale (up to fp32 rounding of the values near 127 steps)."""
    from tinyasr.compile.whisper_int8 import Int8Embedding, int8_per_group

    model = small[0]
    weight = model.decoder.embed_tokens.weight.detach()
    embedding = Int8Embedding(*int8_per_group(weight, 16))
    assert embedding.scale.shape == (SMALL.n_vocab, SMALL.d_model // 16)
    steps = embedding.scale.repeat_interleave(16, dim=1)
    dequantized = torch.nn.Embedding.from_pretrained(embedding.values.float() * steps)
    assert ((dequantized.weight - weight).abs() <= 0.5 * steps + 1e-6 * weight.abs()).all()
    tokens = torch.tensor([[3, 50257], [0, 51863]])
    x = torch.randn(2, 2, SMALL.d_model)
    with torch.no_grad():
        assert torch.equal(embedding(tokens), dequantized(tokens))
        expected = x @ dequantized.weight.t()
        assert (embedding.logits(x) - expected).abs().max() < 1e-5 * expected.abs().max()
