"""Deployables: `transcribe --lib` on a stand-in whose files are checked before any is loaded
(files.make_deployable), then the commands that read a deployable's manifest before any
board work: `board run` and `rpc-test`."""

from __future__ import annotations

import _ctypes
import json
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

from bad_inputs.corpus import Case, Corpus
from bad_inputs.files import drop_checksums, make_deployable, standin_weights
from tinyasr.compile.deployable import LIBRARY_FILE, MANIFEST_FILE, TOKENS_FILE, WEIGHTS_FILE


def write(name: str, content: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        old = (path / name).read_bytes()
        (path / name).write_bytes(content(old) if callable(content) else content)
    return edit


def manifest(change: Callable[[dict], object], replace: bool = False
             ) -> Callable[[Path], None]:
    """An edit of the manifest in place (`change`'s result ignored), or with `replace` its
    replacement by what `change` returns."""
    def edit(path: Path) -> None:
        data = json.loads((path / MANIFEST_FILE).read_text())
        changed = change(data)
        (path / MANIFEST_FILE).write_text(json.dumps(changed if replace else data))
    return edit


def unchecked(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    """The edit, in a deployable that records no sizes or checksums (so the readers behind
    them are reached)."""
    def both(path: Path) -> None:
        edit(path)
        drop_checksums(path)
    return both


def add_cases(c: Corpus) -> None:
    root, tokens, good = c.root, c.tokens, c.good_wav
    deployables = root / "deployables"

    def bad_lib(name: str, expect: str, names: str, edit: Callable[[Path], None]) -> Path:
        path = make_deployable(deployables / name, tokens, c.model_dir)
        edit(path)
        c.add(f"transcribe-lib-{name}", Case(
            "transcribe --lib", ("transcribe", "--lib", str(path), good), expect,
            str(path / names) if names in (LIBRARY_FILE, WEIGHTS_FILE, TOKENS_FILE,
                                           MANIFEST_FILE) else str(path)))
        return path

    rng = random.Random(0)
    noise = bytes(rng.randrange(256) for _ in range(4096))
    names_weights = standin_weights()
    name_length_at = 24   # magic, reserved, name count, then the first name's length

    bad_lib("model-so-missing", "missing", LIBRARY_FILE, lambda p: (p / LIBRARY_FILE).unlink())
    bad_lib("model-so-random", "sha256 differs", LIBRARY_FILE,
            write(LIBRARY_FILE, lambda old: noise[:len(old)]))
    bad_lib("model-so-random-unchecked", "no ELF header", LIBRARY_FILE,
            unchecked(write(LIBRARY_FILE, noise)))
    bad_lib("model-so-aarch64", "a library for aarch64", LIBRARY_FILE, unchecked(write(
        LIBRARY_FILE, b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\xb7\x00" + b"\0" * 64)))
    bad_lib("model-so-riscv", "a library for riscv64", LIBRARY_FILE, unchecked(write(
        LIBRARY_FILE, b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00\xf3\x00" + b"\0" * 64)))
    bad_lib("model-so-not-a-vm", "cannot load the library", LIBRARY_FILE, unchecked(
        lambda p: shutil.copy(_ctypes.__file__, p / LIBRARY_FILE)))   # a real shared library
    bad_lib("weights-empty", "bytes, the manifest says", WEIGHTS_FILE, write(WEIGHTS_FILE, b""))
    bad_lib("weights-empty-unchecked", "empty weights file", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, b"")))
    bad_lib("weights-truncated", "past the end", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, lambda old: old[:-9])))
    bad_lib("weights-random", "not a TVM weights file", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, noise)))
    bad_lib("weights-name-length-huge", "past the end", WEIGHTS_FILE, unchecked(write(
        WEIGHTS_FILE, lambda old: old[:name_length_at] + struct.pack("<Q", 2**62)
        + old[name_length_at + 8:])))

    first_tensor_at = 24 + 3 * (8 + 8) + 8   # after 3 names of 8 bytes and the tensor count
    assert struct.unpack_from("<Q", names_weights, first_tensor_at)[0] == 0xDD5E40F096B4A13F

    def tensor_field(offset: int, value: bytes) -> Callable[[bytes], bytes]:
        """Overwrite a field of the first tensor's header (ndim at 24, shape at 32)."""
        def edit(old: bytes) -> bytes:
            at = first_tensor_at + offset
            return old[:at] + value + old[at + len(value):]
        return edit

    bad_lib("weights-negative-ndim", "bad header", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, tensor_field(24, struct.pack("<i", -5)))))
    bad_lib("weights-huge-ndim", "bad header", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, tensor_field(24, struct.pack("<i", 2**30)))))
    bad_lib("weights-negative-dim", "disagree", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, tensor_field(32, struct.pack("<q", -4)))))
    bad_lib("weights-renamed-key", "no weight 'encode/a'", WEIGHTS_FILE,
            unchecked(write(WEIGHTS_FILE, lambda old: old.replace(b"encode/a", b"encode/z"))))
    bad_lib("weights-swapped-keys", "sha256 differs", WEIGHTS_FILE,
            write(WEIGHTS_FILE, lambda old: old.replace(b"encode/a", b"encode/#")
                  .replace(b"decode/c", b"encode/a").replace(b"encode/#", b"decode/c")))
    bad_lib("tokens-tampered", "sha256 differs", TOKENS_FILE,
            write(TOKENS_FILE, lambda old: old.replace(b'"a"', b'"b"', 1)))
    bad_lib("tokens-dict", "not a tinyasr token list", TOKENS_FILE,
            unchecked(write(TOKENS_FILE, b'{"<blank>": 0}')))
    bad_lib("manifest-no-functions", "functions", MANIFEST_FILE,
            manifest(lambda m: m.pop("functions")))
    bad_lib("manifest-functions-list", "functions", MANIFEST_FILE,
            manifest(lambda m: m.update(functions=[1, 2])))
    bad_lib("manifest-weights-not-list", "functions.encode", MANIFEST_FILE,
            manifest(lambda m: m["functions"]["encode"].update(weights=7)))
    bad_lib("manifest-sos-out-of-range", "sos_eos", MANIFEST_FILE,
            manifest(lambda m: m.update(sos_eos=999)))
    bad_lib("manifest-sos-string", "sos_eos", MANIFEST_FILE,
            manifest(lambda m: m.update(sos_eos="25")))
    bad_lib("manifest-history-0", "decoder_history", MANIFEST_FILE,
            manifest(lambda m: m.update(decoder_history=0)))
    bad_lib("manifest-history-huge", "decoder_history", MANIFEST_FILE,
            manifest(lambda m: m.update(decoder_history=10**12)))
    bad_lib("manifest-not-json", "not a tinyasr deployable", "",
            write(MANIFEST_FILE, b"{not json"))
    bad_lib("manifest-other-arch", "this machine is", "",
            manifest(lambda m: m.update(arch="riscv64", target="k230")))
    bad_lib("manifest-audio", "audio framing", MANIFEST_FILE,
            manifest(lambda m: m["audio"].update(samples_per_frame=320)))
    c.add("transcribe-lib-not-a-dir", Case(
        "transcribe --lib", ("transcribe", "--lib", str(root / "nowhere"), good),
        "not a tinyasr deployable", str(root / "nowhere")))
    bad_lib("manifest-a-list", "not a tinyasr deployable manifest", MANIFEST_FILE,
            manifest(lambda m: [m], replace=True))
    bad_lib("manifest-empty", "not a tinyasr deployable", "", write(MANIFEST_FILE, b""))
    bad_lib("manifest-missing", "not a tinyasr deployable", "",
            lambda p: (p / MANIFEST_FILE).unlink())
    bad_lib("manifest-version-1", "deployable version 1", MANIFEST_FILE,
            manifest(lambda m: m.update(version=1)))
    bad_lib("manifest-family-unknown", "family", "", manifest(lambda m: m.update(family="rnnt")))
    bad_lib("manifest-target-number", "target must be a string", MANIFEST_FILE,
            manifest(lambda m: m.update(target=7)))
    bad_lib("manifest-sha256-list", "sha256 must be an object", MANIFEST_FILE,
            manifest(lambda m: m.update(sha256=[])))
    bad_lib("manifest-sha256-wrong", "sha256 differs", WEIGHTS_FILE,
            manifest(lambda m: m["sha256"].update({WEIGHTS_FILE: "0" * 64})))
    bad_lib("manifest-bytes-strings", "bytes must map", MANIFEST_FILE,
            manifest(lambda m: m["bytes"].update(code="many")))
    bad_lib("manifest-llvm-target-string", "llvm_target", MANIFEST_FILE,
            manifest(lambda m: m.update(llvm_target="x86")))
    bad_lib("manifest-decode-missing", "encode and decode", MANIFEST_FILE,
            manifest(lambda m: m["functions"].pop("decode")))
    bad_lib("manifest-weight-unknown", "no weight 'encode/zz'", WEIGHTS_FILE,
            manifest(lambda m: m["functions"]["encode"]["weights"].append("encode/zz")))
    bad_lib("manifest-tables-unknown-weight", "functions.encode.tables", MANIFEST_FILE,
            manifest(lambda m: m["functions"]["encode"].update(
                tables={"function": "encode_tables", "weights": ["encode/zz"]})))
    bad_lib("manifest-sos-0", "sos_eos", MANIFEST_FILE, manifest(lambda m: m.update(sos_eos=0)))
    bad_lib("manifest-sos-not-last-token", "sos_eos", MANIFEST_FILE,
            manifest(lambda m: m.update(sos_eos=3)))
    bad_lib("tokens-missing", "missing", TOKENS_FILE, lambda p: (p / TOKENS_FILE).unlink())
    bad_lib("tokens-short", "sos_eos", MANIFEST_FILE,
            unchecked(write(TOKENS_FILE, json.dumps([*tokens[:3], tokens[-1]]).encode())))
    bad_lib("weights-is-a-directory", "weights.bin", WEIGHTS_FILE,
            lambda p: ((p / WEIGHTS_FILE).unlink(), (p / WEIGHTS_FILE).mkdir()))
    for beam in ("0", "-1"):
        c.add(f"transcribe-lib-beam-{beam}", Case(
            "transcribe --lib", ("transcribe", "--lib", str(deployables / "tokens-tampered"),
                                 good, "--beam", beam), "--beam", "--beam"))
    c.add("transcribe-lib-is-a-model-dir", Case(
        "transcribe --lib", ("transcribe", "--lib", str(c.model_dir), good),
        "not a tinyasr deployable", str(c.model_dir)))
    c.add("transcribe-lib-is-a-file", Case(
        "transcribe --lib", ("transcribe", "--lib", str(c.tac), good),
        "not a tinyasr deployable", str(c.tac)))

    # board run: everything it reads is checked before the board's runtime is built
    host_lib = make_deployable(deployables / "board-host", tokens, c.model_dir)

    rpi4_lib = _with(deployables / "board-rpi4", tokens, c, aarch64_fields)
    for name, argv, expect, names in [
            ("unknown-board", ("rpi9", str(rpi4_lib), good), "unknown target 'rpi9'", "rpi9"),
            ("deployable-missing", ("rpi4", str(root / "nowhere"), good),
             "not a tinyasr deployable", str(root / "nowhere")),
            ("deployable-is-a-model", ("rpi4", str(c.model_dir), good),
             "not a tinyasr deployable", str(c.model_dir)),
            ("other-arch", ("rpi4", str(host_lib), good), "not for rpi4", str(host_lib)),
            ("needs-dotprod", ("rpi3", str(_with(deployables / "board-rpi5", tokens, c, lambda m:
                m.update(target="rpi5", arch="aarch64", llvm_target={"mattr": ["+dotprod"]}))),
                good), "+dotprod", "rpi3"),
            ("wav-missing", ("rpi4", str(rpi4_lib), str(root / "gone.wav")),
             "wav file not found", str(root / "gone.wav")),
            ("wav-8khz", ("rpi4", str(rpi4_lib), str(c.wavs / "8khz.wav")),
             "sample rate 8000 Hz", str(c.wavs / "8khz.wav")),
            ("wav-text", ("rpi4", str(rpi4_lib), str(c.wavs / "text-file.wav")),
             "unreadable wav", str(c.wavs / "text-file.wav")),
            ("wav-directory", ("rpi4", str(rpi4_lib), str(c.wavs)),
             "wav file not found", str(c.wavs)),
            ("beam-0", ("rpi4", str(rpi4_lib), good, "--beam", "0"), "--beam", "--beam"),
            ("mode-unknown", ("rpi4", str(rpi4_lib), good, "--mode", "x"), "--mode", "--mode"),
            ("no-wavs", ("rpi4", str(rpi4_lib)), "required", "WAV")]:
        c.add(f"board-run-{name}", Case("board run", ("board", "run", *argv), expect, names))
    for name, edit, expect in [
            ("history-0", lambda m: m.update(decoder_history=0), "decoder_history"),
            ("sos-string", lambda m: m.update(sos_eos="x"), "sos_eos"),
            ("no-functions", lambda m: m.pop("functions"), "functions"),
            ("mattr-string", lambda m: m.update(llvm_target={"mattr": "+neon"}), "llvm_target"),
            ("arch-missing", lambda m: m.pop("arch"), "arch must be a string")]:
        path = _with(deployables / f"board-{name}", tokens, c,
                     lambda m, edit=edit: (aarch64_fields(m), edit(m)))
        c.add(f"board-run-manifest-{name}", Case("board run", ("board", "run", "rpi4", str(path),
                                                              good), expect, str(path)))

    # rpc-test: the deployable, the data, the tracker's address and --json before any work
    rpc = ("rpc-test", str(host_lib), "--key", "host")
    missing_model = _with(deployables / "rpc-model-gone", tokens, c,
                          lambda m: m.update(model={"path": str(root / "gone-model")}))
    no_model = _with(deployables / "rpc-no-model", tokens, c, lambda m: m.pop("model"))
    for name, argv, expect, names in [
            ("tracker-no-port", (*rpc, "--tracker", "localhost"), "HOST:PORT", "--tracker"),
            ("tracker-port-text", (*rpc, "--tracker", "localhost:x"), "HOST:PORT", "--tracker"),
            ("tracker-port-huge", (*rpc, "--tracker", "127.0.0.1:99999"), "port", "--tracker"),
            ("tracker-no-host", (*rpc, "--tracker", ":9190"), "HOST:PORT", "--tracker"),
            ("tracker-closed-port", (*rpc, "--tracker", "127.0.0.1:1"), "unreachable",
             "127.0.0.1:1"),
            ("tracker-unknown-host", (*rpc, "--tracker", "no-such-host.invalid:9190"),
             "unreachable", "no-such-host.invalid"),
            ("deployable-missing", ("rpc-test", str(root / "nowhere"), "--key", "host",
                                    "--tracker", "127.0.0.1:1"), "not a tinyasr deployable",
             str(root / "nowhere")),
            ("manifest-history-0", ("rpc-test", str(deployables / "manifest-history-0"),
                                    "--key", "host", "--tracker", "127.0.0.1:1"),
             "decoder_history", str(deployables / "manifest-history-0")),
            ("model-gone", ("rpc-test", str(missing_model), "--key", "host", "--tracker",
                            "127.0.0.1:1"), "gone-model", str(missing_model / MANIFEST_FILE)),
            ("model-missing", ("rpc-test", str(no_model), "--key", "host", "--tracker",
                               "127.0.0.1:1"), "model", str(no_model / MANIFEST_FILE)),
            ("arch-mismatch-key", ("rpc-test", str(host_lib), "--key", "rpi4", "--tracker",
                                   "127.0.0.1:1"), "not for rpi4", str(host_lib)),
            ("json-is-a-directory", (*rpc, "--tracker", "127.0.0.1:1", "--json", str(root)),
             "is a directory", "--json"),
            ("json-under-a-file", (*rpc, "--tracker", "127.0.0.1:1", "--json",
                                   str(c.a_file("rpc-json") / "x.json")), "not a directory",
             "--json"),
            ("tolerance-negative", (*rpc, "--tracker", "127.0.0.1:1", "--tolerance", "-1"),
             "--tolerance", "--tolerance"),
            ("tolerance-nan", (*rpc, "--tracker", "127.0.0.1:1", "--tolerance", "nan"),
             "--tolerance", "--tolerance"),
            ("deadline-0", (*rpc, "--tracker", "127.0.0.1:1", "--deadline", "0"),
             "--deadline", "--deadline"),
            ("data-missing", (*rpc, "--tracker", "127.0.0.1:1", "--data", str(root / "none")),
             "not a data directory", str(root / "none")),
            ("data-bad-wav", (*rpc, "--tracker", "127.0.0.1:1", "--data",
                              str(_one_wav_data(c, "rpc-odd", "odd-byte-count"))),
             "truncated wav", "wav.scp")]:
        c.add(f"rpc-test-{name}", Case("rpc-test", argv, expect, names))


def aarch64_fields(m: dict) -> None:
    m.update(target="rpi4", arch="aarch64", llvm_target={"kind": "llvm", "mattr": ["+neon"]})


def _with(path: Path, tokens: list[str], c: Corpus, change: Callable[[dict], object]) -> Path:
    """A stand-in deployable at `path` whose manifest `change` edited."""
    make_deployable(path, tokens, c.model_dir)
    manifest(change)(path)
    return path


def _one_wav_data(c: Corpus, name: str, wav: str) -> Path:
    """A data dir of one utterance, files.WAVS[wav]."""
    from bad_inputs.files import write_data_dir

    return write_data_dir(c.root / "data" / name, f"a {c.wavs / (wav + '.wav')}\n", "a hi\n")
