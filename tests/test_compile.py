"""The TVM compiler on real builds: parity with PyTorch, weights stored once, board libraries.

A tiny random-init weight-shared model keeps the builds short; the host deployable goes through
the CLI once (with --dump-ir), the board libraries reuse one import of the model.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from math import prod
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax
from tvm.target import Target

from tinyasr.compile.deployable import (
    LIBRARY_FILE,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    model_hash,
    write_deployable,
)
from tinyasr.compile.kernels.fp32 import vector_unit
from tinyasr.compile.kernels.int8 import dot_isa
from tinyasr.compile.passes.expose_shape_vars import ExposeShapeVars
from tinyasr.compile.pipeline import IRDumper, import_model, import_program
from tinyasr.compile.schedule_database import (
    RECORD_FILE,
    database_digest,
    default_database_dir,
    device_name,
)
from tinyasr.model.common.errors import InputError
from tinyasr.model.data.datadir import load_wav, read_data_dir
from tinyasr.model.decoding.recognizer import Recognizer, decoder_scores
from tinyasr.model.decoding.search import ctc_prefix_beam_search
from tinyasr.model.network.framing import (
    MIN_FRAMES,
    SAMPLES_PER_FRAME,
    encoder_frames,
    samples_read,
)
from tinyasr.model.network.model_dir import load_model_dir, save_model_dir
from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL, SAMPLES_DIR
from tinyasr.model.network.san_m import AsrModel
from tinyasr.model.network.windows import MAX_FRAMES
from tinyasr.scripts.cli import main
from tinyasr.targets.boards import (
    BOARDS,
    X86_FEATURES,
    board_target,
    cpu_features,
    get_board,
    host_target,
    machine_cpu_flags,
    request_amx_tiles,
)
from tinyasr.targets.host.runner import CompiledModelRunner, CompiledRecognizer
from tinyasr.targets.native_build import build_runtime

BOARD_MACHINES = {"rpi4": "ARM aarch64", "visionfive2": "RISC-V", "k230": "RISC-V"}


@pytest.fixture(scope="module")
def utterances() -> list:
    return read_data_dir(SAMPLES_DIR)[:3]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_random_model) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model_dir(*tiny_random_model, path)
    return path


@pytest.fixture(scope="module")
def model(model_dir: Path) -> AsrModel:
    return load_model_dir(model_dir)[0]


@pytest.fixture(scope="module")
def host_deployable(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "host"
    dumps = tmp_path_factory.mktemp("ir")
    assert main(["compile", str(model_dir), "--target", "host", "--out", str(out),
                 "--dump-ir", str(dumps)]) == 0
    assert sorted(p.name for p in dumps.iterdir()) == [
        "01-import.py", "02-layout.py", "03-sparse.py", "04-quantize.py", "05-dense.py",
        "06-weights.py", "07-legalize.py", "08-schedule.py", "09-lower.py"]
    return out


@pytest.fixture(scope="module")
def runner(host_deployable: Path) -> CompiledModelRunner:
    return CompiledModelRunner(host_deployable)


@pytest.fixture(scope="module")
def board_deployables(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """rpi4 (aarch64), visionfive2 (rv64gc) and k230 (rv64gcv) from one import of the model."""
    model, tokenizer = load_model_dir(model_dir)
    imported = import_model(model, IRDumper(None))
    root = tmp_path_factory.mktemp("boards")
    for name in BOARD_MACHINES:
        write_deployable(imported, BOARDS[name], root / name, model_dir, tokenizer)
    return {name: root / name for name in BOARD_MACHINES}


def test_frame_arithmetic_matches_the_model(model: AsrModel):
    for samples in [samples_read(MIN_FRAMES), 16000, 16000 * 5 + 123]:
        frames = encoder_frames(samples)
        with torch.no_grad():
            full, _ = model.ctc_log_probs(torch.randn(1, samples))
            trimmed, _ = model.ctc_log_probs(torch.randn(1, samples_read(frames)))
        assert full.shape[1] == trimmed.shape[1] == frames
        assert samples_read(frames) <= samples < samples_read(frames + 1)
    assert samples_read(1) - samples_read(0) == SAMPLES_PER_FRAME


@pytest.mark.filterwarnings("ignore:.*LeafSpec:FutureWarning")
def test_compiled_front_end_matches_pytorch_fbank(model: AsrModel, utterances: list):
    """The fbank + CMVN graph alone, compiled for the host: the features agree to 5e-4.

    Both sides are fp32 sums of 400 products in different orders; in the high mel bins of loud
    frames the low-frequency energy cancels most digits (each side is up to 2e-3 off a float64
    evaluation there), so the two agree to 1.7e-4 at worst on the samples, 1e-5 elsewhere."""
    frames = torch.export.Dim("frames", min=MIN_FRAMES)
    features = torch.export.export(
        _Features(model), (torch.zeros(1, samples_read(8)),),
        dynamic_shapes={"waveform": {1: SAMPLES_PER_FRAME * frames + samples_read(0)}})
    mod = ExposeShapeVars()(import_program(features))
    target = tvm.target.Target(host_target())
    vm = relax.VirtualMachine(
        tvm.compile(mod, target, relax_pipeline=relax.backend.cpu_generic.get_default_pipeline(
            target)), tvm.cpu())
    samples = load_wav(utterances[0].wav)
    waveform = samples[None, :samples_read(encoder_frames(len(samples)))]
    frames = tvm.runtime.ShapeTuple([encoder_frames(len(samples))])
    compiled = vm["main"](frames, tvm.runtime.tensor(waveform))[0].numpy()
    with torch.no_grad():
        reference = model.features(torch.from_numpy(waveform)).numpy()
    assert compiled.shape == reference.shape
    assert np.abs(compiled - reference).max() < 5e-4


class _Features(torch.nn.Module):
    """AsrModel.features as its own graph (its buffers are bound as constants on import)."""

    def __init__(self, model: AsrModel):
        super().__init__()
        self.fbank, self.cmvn = model.fbank, model.cmvn

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.cmvn(self.fbank(waveform))


def test_encoder_matches_pytorch_on_real_audio(model: AsrModel, runner: CompiledModelRunner,
                                               utterances: list):
    for utterance in utterances:
        samples = load_wav(utterance.wav)
        log_probs, encoded = runner.ctc_log_probs(samples)
        with torch.no_grad():
            reference, reference_encoded = model.ctc_log_probs(torch.from_numpy(samples)[None])
        assert log_probs.shape == reference[0].shape
        assert np.abs(log_probs - reference[0].numpy()).max() < 1e-4
        assert np.abs(encoded - reference_encoded.numpy()).max() < 1e-4


def test_encode_takes_a_whole_window_and_refuses_more(model: AsrModel, runner: CompiledModelRunner):
    """Memory is planned for a 30 s window's frames (audio.max_frames): encode computes what
    PyTorch computes at the bound, the runner refuses more audio in one line, and the
    deployable's own check stops a call past the bound before anything is written."""
    assert runner.max_frames == MAX_FRAMES == encoder_frames(30 * 16000)
    samples = np.random.default_rng(0).normal(0, 2000, samples_read(MAX_FRAMES)).astype(np.float32)
    log_probs, _ = runner.ctc_log_probs(samples)
    with torch.no_grad():
        reference, _ = model.ctc_log_probs(torch.from_numpy(samples)[None])
    assert log_probs.shape[0] == MAX_FRAMES
    assert np.abs(log_probs - reference[0].numpy()).max() < 1e-4
    longer = np.zeros(samples_read(MAX_FRAMES + 1), np.float32)
    with pytest.raises(InputError, match=f"{MAX_FRAMES + 1} encoder frames, over the {MAX_FRAMES}"):
        runner.ctc_log_probs(longer)
    args = runner.encode_args(samples)
    args[:2] = [tvm.runtime.ShapeTuple((MAX_FRAMES + 1,)), tvm.runtime.tensor(longer[None])]
    bound = f"encode: frames over this deployable's bound of {MAX_FRAMES}"
    with pytest.raises(ValueError, match=bound):
        runner.vm["encode"](*args)


def test_decoder_scores_match_pytorch(model: AsrModel, runner: CompiledModelRunner,
                                      utterances: list):
    samples = torch.from_numpy(load_wav(utterances[0].wav))[None]
    with torch.no_grad():
        log_probs, encoded = model.ctc_log_probs(samples)
    hypotheses = [h for h, _ in ctc_prefix_beam_search(log_probs[0].numpy(), 10)]
    vocab = model.config.vocab_size
    hypotheses.append([1 + i % (vocab - 2) for i in range(40)])  # long: padding in the batch
    compiled = runner.score_hypotheses(encoded.numpy(), hypotheses)
    reference = decoder_scores(model, encoded, hypotheses)
    np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-4)


def test_transcribe_with_the_library_prints_what_pytorch_prints(
        model_dir: Path, host_deployable: Path, utterances: list, capsys):
    wavs = [str(u.wav) for u in utterances]
    assert main(["transcribe", str(model_dir), *wavs]) == 0
    reference = capsys.readouterr().out
    assert main(["transcribe", "--lib", str(host_deployable), *wavs]) == 0
    assert capsys.readouterr().out == reference
    assert len(reference.splitlines()) == len(wavs)


def packing_padding(model: AsrModel, lanes: int) -> int:
    """Bytes the fp32 kernels add to their packed weights: the output columns of each linear
    layer and convolution as wide as a vector padded to whole vectors of `lanes`."""
    return sum((-module.weight.shape[0] % lanes) * module.weight[0].numel() * 4
               for module in model.modules() if isinstance(module, (nn.Linear, nn.Conv2d))
               and module.weight.shape[0] >= lanes)   # narrower layers stay matmuls


def test_each_shared_weight_is_stored_once(model: AsrModel, host_deployable: Path):
    """weights.bin holds exactly the model's distinct tensors (and the padding of packed
    weights), not the fbank's tables, which the library computes when loaded, and the library
    holds no tensor bigger than a small table but the
    zero bias of each bias-free kernel width (compile/kernels/epilogue.py: the fbank's DFT and mel
    matmuls)."""
    weights = tvm.runtime.load_param_dict_from_file(str(host_deployable / WEIGHTS_FILE))
    stored = sum(tensor.numpy().nbytes for tensor in weights.values())
    distinct = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    lanes = vector_unit(Target(host_target())).lanes
    assert stored == distinct + packing_padding(model, lanes)
    unshared_encoder = (len(model.encoder.layer_map) - len(model.encoder.blocks)) * sum(
        p.numel() * 4 for p in model.encoder.blocks[0].parameters())
    assert unshared_encoder > 0  # what duplicating the shared blocks would have added
    manifest = json.loads((host_deployable / MANIFEST_FILE).read_text())
    assert manifest["bytes"]["weights"] < stored + 100 * len(weights)  # names + headers only
    library = relax.VMExecutable(tvm.runtime.load_module(str(host_deployable / LIBRARY_FILE)))
    pool = library.stats().split("Constant pool")[1].split("Globals")[0]
    # tensors print as [dims]; the planned storage sizes as shapetuple[bytes]
    shapes = [[int(d) for d in m.split(",")]
              for m in re.findall(r"(?<!shapetuple)\[(\d+(?:, \d+)*)\]", pool)]
    bias_free = {int(b.shape[-1]) for b in model.fbank.buffers() if b.dim() == 2}
    assert all(prod(shape) <= 64 or (len(shape) == 1 and shape[0] in bias_free)
               for shape in shapes), shapes


def test_fbank_tables_are_computed_when_the_deployable_loads(model: AsrModel,
                                                            host_deployable: Path,
                                                            runner: CompiledModelRunner):
    """encode's fbank tables are not in weights.bin: encode_tables makes them, the manifest
    says which weights they are, and they equal the model's own (layouts aside: the mel bank
    is packed for the kernel)."""
    manifest = json.loads((host_deployable / MANIFEST_FILE).read_text())
    tables = manifest["functions"]["encode"]["tables"]
    assert tables["function"] == "encode_tables"
    stored = tvm.runtime.load_param_dict_from_file(str(host_deployable / WEIGHTS_FILE))
    assert not set(tables["weights"]) & set(stored)
    keys = manifest["functions"]["encode"]["weights"]
    made = {key: runner.weights["encode"][keys.index(key)].numpy() for key in tables["weights"]}
    for name in ("window", "inner_dft", "outer_dft"):
        np.testing.assert_array_equal(made[f"encode/p_fbank_{name}"],
                                      getattr(model.fbank, name).numpy())
    (mel,) = [value for key, value in made.items() if "p_fbank_" not in key]
    assert sorted(mel.ravel().tolist()) == sorted(model.fbank.mel_bank.numpy().ravel().tolist())


def test_a_missing_table_function_is_one_line(host_deployable: Path, tmp_path: Path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(host_deployable, broken)
    manifest = json.loads((broken / MANIFEST_FILE).read_text())
    manifest["functions"]["encode"]["tables"]["function"] = "encode_nope"
    (broken / MANIFEST_FILE).write_text(json.dumps(manifest))
    wav = str(next(SAMPLES_DIR.glob("wavs/*.wav")))
    assert main(["transcribe", "--lib", str(broken), wav]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{broken / LIBRARY_FILE}: cannot run encode_nope" in error


def test_manifest_describes_the_build(host_deployable: Path, model_dir: Path):
    manifest = json.loads((host_deployable / MANIFEST_FILE).read_text())
    assert manifest["target"] == "host"
    shipped = default_database_dir("host", host_target())   # this host class's, if shipped
    database = manifest["tuning_database"]
    if (shipped / RECORD_FILE).exists():
        assert database["path"] == str(shipped) and database["sha256"] == database_digest(shipped)
    else:
        assert database is None
    assert manifest["versions"]["tvm"] == tvm.__version__
    assert manifest["bytes"]["code"] == (host_deployable / LIBRARY_FILE).stat().st_size
    assert manifest["model"]["sha256"] == model_hash(model_dir)
    assert manifest["functions"]["encode"]["inputs"] == ["sizes", "waveform"]
    assert manifest["functions"]["decode"]["inputs"] == ["tokens", "depths", "ancestors", "history",
                                                         "memory"]


def test_board_code_vectorizes_a_float_reduction():
    """boards.FAST_MATH lets LLVM reassociate a float sum into vector partial sums; strict
    IEEE order keeps it one scalar chain (layer norm, softmax and abs-max were)."""
    n = tvm.te.var("n", "int64")
    values = tvm.te.placeholder((n,), name="values")
    i = tvm.te.reduce_axis((0, n), name="i")
    total = tvm.te.compute((1,), lambda _: tvm.te.sum(values[i], axis=i), name="total")
    module = tvm.IRModule({"total": tvm.te.create_prim_func([values, total]).with_attr(
        "global_symbol", "total")})

    def vector_sums(target: dict) -> bool:
        llvm_ir = tvm.compile(module, tvm.target.Target(target)).mod.inspect_source("ll")
        return bool(re.search(r"fadd reassoc.*<8 x float>", llvm_ir))

    board = BOARDS["x86-64-v3"]
    assert vector_sums(board_target(board)) and not vector_sums(board.llvm_target)


@pytest.mark.parametrize("board", list(BOARD_MACHINES))
def test_board_library_is_built_for_its_machine(board: str, board_deployables: dict):
    library = board_deployables[board] / LIBRARY_FILE
    description = subprocess.run(["file", "-L", str(library)], capture_output=True, text=True,
                                 check=True).stdout
    assert "ELF 64-bit" in description and "shared object" in description
    assert BOARD_MACHINES[board] in description
    if BOARDS[board].arch == "riscv64":  # the ISA string: k230 with RVV 1.0, the rv64gc one without
        attributes = subprocess.run(["riscv64-linux-gnu-readelf", "-A", str(library)],
                                    capture_output=True, text=True, check=True).stdout
        assert "_v1p0" in attributes if board == "k230" else "_v1p0" not in attributes
        assert "rv64i" in attributes and "_d2p2" in attributes


def test_cpu_features_are_the_extensions_of_the_targets_cpu():
    """The /proc/cpuinfo flags a target's code may use, from LLVM's model of its cpu."""
    def features(cpu: str) -> set[str]:
        return set(cpu_features({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": cpu}))

    assert {"avx", "avx2", "fma"} <= features("x86-64-v3")
    assert not features("x86-64-v3") & {"avx512f", "avx512_vnni", "amx_tile"}
    assert {"avx512f", "avx512_vnni", "amx_tile", "amx_int8"} <= features("sapphirerapids")
    assert {"avx512_vnni", "avx512_bf16"} <= features("znver4") and "amx_tile" not in features(
        "znver4")
    assert cpu_features(BOARDS["rpi4"].llvm_target or {}) == []


def test_board_targets_lists_what_each_target_compiles_for(capsys):
    """Every target with its LLVM cpu, kernels' instruction sets and tuning database; the
    host's as this machine resolves it."""
    assert main(["board", "targets"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{name} " in f"\n{out}" for name in BOARDS)
    host = Target(board_target(get_board("host")))
    assert (f"llvm {host_target()['mcpu']}" in out.split("x86-64-v3")[0]
            and f"int8 kernels {dot_isa(host).name}" in out.split("x86-64-v3")[0])
    assert "llvm cortex-a76 +neon +dotprod; int8 kernels neon-dotprod; fp32 vectors 4 lanes" in out


def test_host_target_adds_amx_the_machine_has_beyond_its_cpus_model(monkeypatch, capsys):
    """A VM whose family and model numbers LLVM reads as rocketlake (no AMX) while its flags
    list AMX (an Intel Xeon host of this project): host gets +amx-tile,+amx-int8, so the AMX
    kernels and the manifest's cpu_features see them; without the flags it gets nothing."""
    import tinyasr.targets.boards as boards

    rocketlake = Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "rocketlake"})
    monkeypatch.setattr(tvm.target.Target, "from_device", staticmethod(lambda device: rocketlake))
    flags = {"avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"}
    monkeypatch.setattr(boards, "machine_cpu_flags", lambda: flags)
    target = host_target()
    assert target["mcpu"] == "rocketlake" and target["mattr"] == ["+amx-tile", "+amx-int8"]
    assert {"amx_tile", "amx_int8"} <= set(cpu_features(target))
    # its own database: not host-rocketlake's, tuned for code without AMX
    assert device_name("host", target) == "host-rocketlake+amx-int8+amx-tile"
    assert device_name("host", {"mcpu": "znver5"}) == "host-znver5"
    # and `board targets` says so
    assert main(["board", "targets"]) == 0
    host = capsys.readouterr().out.split("x86-64-v3")[0]
    assert "llvm rocketlake +amx-tile +amx-int8; int8 kernels avx512-vnni, AMX tiles" in host
    assert "host-rocketlake+amx-int8+amx-tile (compile builds untuned)" in host
    monkeypatch.setattr(boards, "machine_cpu_flags", lambda: flags - {"amx_tile", "amx_int8"})
    assert "mattr" not in host_target()


def test_a_deployable_using_extensions_this_cpu_lacks_is_one_line(host_deployable: Path,
                                                                   tmp_path: Path, capsys):
    """A host deployable records its cpu's extensions (cpu_features), all present here; one that
    needs an extension this CPU lacks (a deployable compiled on another x86-64 machine) is
    refused in one line naming it, by the Python runner and by tinyasr-run, before any of its
    code runs."""
    manifest = json.loads((host_deployable / MANIFEST_FILE).read_text())
    flags = machine_cpu_flags()
    assert flags is not None and manifest["cpu_features"] == cpu_features(host_target())
    assert set(manifest["cpu_features"]) <= flags
    lacking = sorted(set(X86_FEATURES.values()) - flags)
    if not lacking:
        pytest.skip("this CPU has every extension tinyasr checks")
    foreign = tmp_path / "foreign"
    shutil.copytree(host_deployable, foreign)
    (foreign / MANIFEST_FILE).write_text(json.dumps({**manifest, "cpu_features": [
        *manifest["cpu_features"], lacking[0]]}))
    wav = str(next(SAMPLES_DIR.glob("wavs/*.wav")))
    assert main(["transcribe", "--lib", str(foreign), wav]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{foreign}: built for host" in error
    assert f"whose code uses {lacking[0]}, which this CPU lacks" in error
    transcriber = build_runtime(get_board("host"), log=lambda _: None).transcriber
    run = subprocess.run([str(transcriber), str(foreign), wav], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"tinyasr-run: error: {foreign}: built for host, whose code "
                                 f"uses {lacking[0]}, which this CPU lacks"), run.stderr


def test_a_deployable_on_amx_tiles_asks_linux_for_them_before_it_runs(host_deployable: Path,
                                                                        tmp_path: Path, capsys):
    """Int8 kernels on AMX tiles (`amx_tiles` in the manifest) need the process's tile registers,
    which Linux grants on request only: both runners ask at load. Where Linux refuses (this CPU
    has no AMX, or a kernel before 5.16) that is one line, not SIGILL at the first tile
    instruction; where it grants them the deployable runs."""
    manifest = json.loads((host_deployable / MANIFEST_FILE).read_text())
    assert manifest["amx_tiles"] is False   # untuned: the VNNI kernels
    tiles = tmp_path / "tiles"
    shutil.copytree(host_deployable, tiles)
    (tiles / MANIFEST_FILE).write_text(json.dumps({**manifest, "amx_tiles": True}))
    wav = str(next(SAMPLES_DIR.glob("wavs/*.wav")))
    transcriber = build_runtime(get_board("host"), log=lambda _: None).transcriber
    run = subprocess.run([str(transcriber), str(tiles), wav], capture_output=True, text=True,
                         timeout=120)
    refused = request_amx_tiles()
    if refused is None:   # an AMX CPU under Linux 5.16 or later
        assert main(["transcribe", "--lib", str(tiles), wav]) == 0 and run.returncode == 0
        return
    assert main(["transcribe", "--lib", str(tiles), wav]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.endswith(
        f"with int8 kernels on AMX tiles, which Linux refused this process ({refused}; it "
        "grants them from Linux 5.16)\n"), error
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert f"{tiles}: built for host with int8 kernels on AMX tiles, which Linux refused" \
        in run.stderr, run.stderr


def test_host_refuses_a_board_library(board_deployables: dict):
    with pytest.raises(InputError, match="built for rpi4 \\(aarch64\\)"):
        CompiledModelRunner(board_deployables["rpi4"])


def _cli_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("tinyasr: error: ") and len(captured.err.splitlines()) == 1
    return captured.err


def test_unknown_target_lists_the_known_ones(model_dir: Path, tmp_path: Path, capsys):
    error = _cli_error(["compile", str(model_dir), "--target", "pi9", "--out",
                        str(tmp_path / "x")], capsys)
    assert "'pi9'" in error and all(name in error for name in BOARDS)


def test_missing_cross_compiler_names_the_debian_package(model_dir: Path, tmp_path: Path,
                                                         capsys, monkeypatch):
    missing = dataclasses.replace(BOARDS["rpi4"], cross_compiler="aarch64-nowhere-g++")
    monkeypatch.setitem(BOARDS, "rpi4", missing)
    error = _cli_error(["compile", str(model_dir), "--target", "rpi4", "--out",
                        str(tmp_path / "x")], capsys)
    assert "aarch64-nowhere-g++" in error and "apt-get install g++-aarch64-linux-gnu" in error
    assert not (tmp_path / "x").exists()


def test_not_a_model_directory(tmp_path: Path, capsys):
    error = _cli_error(["compile", str(tmp_path), "--target", "host", "--out",
                        str(tmp_path / "x")], capsys)
    assert "not a tinyasr model directory" in error
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing half-written


def test_existing_output_is_refused(model_dir: Path, tmp_path: Path, capsys):
    (tmp_path / "x").mkdir()
    error = _cli_error(["compile", str(model_dir), "--target", "host", "--out",
                        str(tmp_path / "x")], capsys)
    assert "already exists" in error and "--force" in error


def test_transcribe_lib_needs_a_deployable(tmp_path: Path, utterances: list, capsys):
    error = _cli_error(["transcribe", "--lib", str(tmp_path), str(utterances[0].wav)], capsys)
    assert "not a tinyasr deployable" in error


@pytest.mark.slow
@pytest.mark.skipif(not (DEFAULT_MODEL / "model.pt").is_file(), reason="no shipped model yet")
def test_shipped_model_transcribes_the_bundled_samples_as_pytorch_does(tmp_path: Path):
    out = tmp_path / "host"
    assert main(["compile", str(DEFAULT_MODEL), "--target", "host", "--out", str(out)]) == 0
    reference, compiled = Recognizer.load(DEFAULT_MODEL), CompiledRecognizer.load(out)
    for utterance in read_data_dir(SAMPLES_DIR):
        samples = load_wav(utterance.wav)
        assert compiled.transcribe(samples) == reference.transcribe(samples), utterance.uid
