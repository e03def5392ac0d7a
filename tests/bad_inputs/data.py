"""Data dirs: bad ones (tables, ids, wavs, encodings) through every command that reads one, good
but unusual ones (CRLF, a BOM, tabs, relative paths, Chinese) as normal results, and the
arguments of `data synth|subset|shard|augment-preview`."""

from __future__ import annotations

import json
from pathlib import Path

from bad_inputs.corpus import Case, Corpus
from bad_inputs.files import write_data_dir
from bad_inputs.train import TINY
from tinyasr.model.data.datadir import read_data_dir
from tinyasr.model.network.pretrained_paths import SAMPLES_DIR
from tinyasr.model.training.dataset.shard_dir import write_shard_dir


def bad_data_dirs(c: Corpus) -> dict[str, tuple[Path, str, str]]:
    """name -> (data dir, expected text, what the error names)."""
    a, b = (u.wav for u in read_data_dir(SAMPLES_DIR)[:2])
    wavs = c.wavs
    made: dict[str, tuple[Path, str, str]] = {}

    def add(name: str, expect: str, names: str, wav_scp: str | bytes | None = None,
            text: str | bytes | None = "a hello\nb world\n",
            utt2spk: str | bytes | None = None) -> None:
        path = c.root / "bad-data" / name
        if wav_scp is None:
            path.mkdir(parents=True)
            if text is not None:
                (path / "text").write_text(text if isinstance(text, str) else text.decode())
        else:
            write_data_dir(path, wav_scp, text if text is not None else b"", utt2spk)
            if text is None:
                (path / "text").unlink()
        made[name] = (path, expect, names.replace("DIR", str(path)))

    good_scp = f"a {a}\nb {b}\n"
    missing = c.root / "bad-data" / "missing"
    made["missing"] = (missing, "not a data directory", str(missing))
    made["a-file"] = (c.tac, "not a data directory", str(c.tac))
    add("no-wav-scp", "missing", "DIR/wav.scp")
    add("no-text", "missing", "DIR/text", good_scp, None)
    add("wav-scp-empty", "no utterances", "DIR/wav.scp", "")
    add("wav-scp-blank-lines", "no utterances", "DIR/wav.scp", "\n  \n\t\n")
    add("wav-scp-one-field", "expected 'utt-id path'", "DIR/wav.scp:2", f"a {a}\nb\n")
    add("text-one-field", "expected 'utt-id transcript'", "DIR/text:1", good_scp, "a\nb world\n")
    add("wav-scp-duplicate-id", "duplicate utterance id 'a'", "DIR/wav.scp:2",
        f"a {a}\na {b}\n", "a hello\n")
    add("text-duplicate-id", "duplicate utterance id 'b'", "DIR/text:3", good_scp,
        "a hello\nb world\nb again\n")
    add("text-unknown-id", "is not in wav.scp", "DIR/text:3", good_scp,
        "a hello\nb world\nc extra\n")
    add("text-missing-id", "has no entry in text", "DIR/wav.scp:2", good_scp, "a hello\n")
    add("utt2spk-unknown-id", "is not in wav.scp", "DIR/utt2spk:2", good_scp,
        utt2spk="a s1\nc s2\nb s1\n")
    add("utt2spk-missing-id", "has no entry in utt2spk", "DIR/wav.scp:2", good_scp,
        utt2spk="a s1\n")
    add("utt2spk-one-field", "expected 'utt-id speaker'", "DIR/utt2spk:1", good_scp,
        utt2spk="a\nb s1\n")
    add("wav-missing", "wav file not found", "DIR/wav.scp:2", f"a {a}\nb gone.wav\n")
    add("wav-is-a-directory", "wav file not found", "DIR/wav.scp:1", f"a {wavs}\nb {b}\n")
    add("wav-piped", "piped commands", "DIR/wav.scp:1", f"a sox {a} -t wav - |\nb {b}\n")
    add("wav-8khz", "sample rate 8000 Hz", "DIR/wav.scp:1", f"a {wavs / '8khz.wav'}\nb {b}\n")
    add("wav-stereo", "2 channels", "DIR/wav.scp:1", f"a {wavs / 'stereo.wav'}\nb {b}\n")
    add("wav-float", "float samples", "DIR/wav.scp:1", f"a {wavs / 'float.wav'}\nb {b}\n")
    add("wav-text", "unreadable wav", "DIR/wav.scp:1", f"a {wavs / 'text-file.wav'}\nb {b}\n")
    add("wav-empty-file", "unreadable wav", "DIR/wav.scp:1",
        f"a {wavs / 'empty-file.wav'}\nb {b}\n")
    add("wav-odd-bytes", "truncated wav", "DIR/wav.scp:1",
        f"a {wavs / 'odd-byte-count.wav'}\nb {b}\n")
    add("text-not-utf8", "not UTF-8", "DIR/text", good_scp, b"a h\xe9llo\nb world\n")
    add("wav-scp-not-utf8", "not UTF-8", "DIR/wav.scp", f"a {a}\n".encode() + b"b \xff.wav\n")
    add("wav-scp-is-a-directory", "missing", "DIR/wav.scp")
    (made["wav-scp-is-a-directory"][0] / "wav.scp").mkdir()
    return made


def good_data_dirs(c: Corpus) -> dict[str, Path]:
    """Valid data dirs written in ways a reader must take."""
    a, b = (u.wav for u in read_data_dir(SAMPLES_DIR)[:2])
    made: dict[str, Path] = {}

    def add(name: str, wav_scp: str | bytes, text: str | bytes,
            utt2spk: str | bytes | None = None) -> None:
        made[name] = write_data_dir(c.root / "odd-data" / name, wav_scp, text, utt2spk)

    add("crlf", f"a {a}\r\nb {b}\r\n", "a hello\r\nb world\r\n", "a s1\r\nb s2\r\n")
    add("bom", f"\ufeffa {a}\nb {b}\n", "\ufeffa hello\nb world\n")
    add("tabs-and-spaces", f"a\t{a}\nb   {b}  \n", "a\thello  there\nb world\n")
    add("no-final-newline", f"a {a}\nb {b}", "a hello\nb world")
    add("chinese-text", f"a {a}\nb {b}\n", "a 而 对 楼市 成交\nb 你好\n")
    relative = write_data_dir(c.root / "odd-data" / "relative-paths", "a wavs/x.wav\n", "a hi\n")
    (relative / "wavs").mkdir()
    (relative / "wavs" / "x.wav").write_bytes(Path(a).read_bytes())
    made["relative-paths"] = relative
    add("zero-sample-wav", f"a {c.wavs / 'zero-samples.wav'}\nb {b}\n", "a hello\nb world\n")
    add("wav-with-extra-chunks", f"a {c.wavs / 'junk-after-data.wav'}\nb {b}\n",
        "a hello\nb world\n")
    return made


# Problems of one utterance, which the training reader (and augment-preview, which shows what
# training makes of a corpus) skips with a warning, as training does; more than 1% of them
# stops a training run. The others are problems of the corpus as a whole.
ONE_UTTERANCE = {"wav-scp-one-field", "text-one-field", "text-unknown-id", "text-missing-id",
                 "utt2spk-unknown-id", "utt2spk-missing-id", "utt2spk-one-field", "wav-missing",
                 "wav-is-a-directory", "wav-piped", "wav-8khz", "wav-stereo", "wav-float",
                 "wav-text", "wav-empty-file", "wav-odd-bytes"}


def add_cases(c: Corpus) -> None:
    out = c.root / "data-outs"
    bad = bad_data_dirs(c)
    for name, (path, expect, names) in bad.items():
        runs = {
            "data check": ("data", "check", str(path)),
            "data shard": ("data", "shard", str(path), str(out / f"shard-{name}")),
            "evaluate": ("evaluate", str(path), "--model", str(c.model_dir)),
        }
        for command, argv in runs.items():
            c.add(f"{command.replace(' ', '-')}-{name}", Case(command, argv, expect, names))
        c.add(f"data-augment-preview-{name}", Case("data augment-preview", (
            "data", "augment-preview", str(path), str(out / f"preview-{name}"), "--count", "1"),
            *((None,) if name in ONE_UTTERANCE else (expect, names))))
    tiny_recipe = c.root / "tiny-recipe.json"
    tiny_recipe.write_text(json.dumps(TINY))
    for name in ("wav-scp-duplicate-id", "text-missing-id", "wav-8khz", "wav-scp-not-utf8"):
        path, expect, names = bad[name]
        c.add(f"data-subset-{name}", Case("data subset", (
            "data", "subset", str(path), str(out / f"subset-{name}")), expect, names))
        c.add(f"demo-{name}", Case("demo", ("demo", "--data", str(path)), expect, names))
        for split, command, argv in [
                ("train", "train", ("train", "-q", "--config", str(tiny_recipe),
                                    "--out", str(out / f"train-{name}"))),
                ("train", "compress", ("compress", "quantize", str(c.model_dir), "--out",
                                       str(out / f"q-{name}.tac"))),
                ("dev", "report", ("report", f"tiny={c.model_dir}", "--out",
                                   str(out / f"report-{name}")))]:
            corpus = c.corpus_with(f"{split}-{name}", split, path)
            where = names.replace(str(path), str(corpus / split))
            if command == "train" and name in ONE_UTTERANCE:
                expect_here, where = "more than 1%", str(corpus / split)
            else:
                expect_here = expect
            c.add(f"{command.replace(' ', '-')}-{split}-split-{name}",
                  Case(command, (*argv, "--data", str(corpus)), expect_here, where))
    for name, path in good_data_dirs(c).items():
        c.add(f"data-check-{name}", Case("data check", ("data", "check", str(path)), None))
        c.add(f"evaluate-{name}", Case("evaluate", ("evaluate", str(path), "--model",
                                                    str(c.model_dir)), None))
    for name in ("crlf", "relative-paths", "zero-sample-wav"):
        path = c.root / "odd-data" / name
        c.add(f"data-shard-{name}", Case("data shard", ("data", "shard", str(path),
                                                        str(out / f"shard-ok-{name}")), None))

    add_argument_cases(c, out)


def add_argument_cases(c: Corpus, out: Path) -> None:
    data = str(c.data)
    existing = str(c.dir("data-outs", "existing"))
    a_file = str(c.a_file("data-out"))
    for name, argv, expect, names in [
            ("train-negative", ("--train", "-1"), "--train", "--train"),
            ("dev-text", ("--dev", "many"), "--dev", "--dev"),
            ("test-unseen-negative", ("--test-unseen-engine", "-2"), "--test-unseen-engine",
             "--test-unseen-engine"),
            ("jobs-0", ("--jobs", "0"), "--jobs", "--jobs"),
            ("seed-float", ("--seed", "1.5"), "--seed", "--seed")]:
        c.add(f"data-synth-{name}", Case("data synth", (
            "data", "synth", str(out / f"synth-{name}"), *argv), expect, names))
    c.add("data-synth-out-exists", Case("data synth", ("data", "synth", existing, "--train", "1"),
                                        "already exists", existing))
    c.add("data-synth-out-is-a-file", Case("data synth", ("data", "synth", a_file, "--force"),
                                           "not a directory", a_file))
    c.add("data-synth-out-under-a-file", Case(
        "data synth", ("data", "synth", f"{a_file}/corpus"), "not a directory", a_file))
    c.add("data-synth-nothing", Case("data synth", (
        "data", "synth", str(out / "synth-empty"), "--train", "0", "--dev", "0", "--test", "0"),
        None))

    for name, argv, expect, names in [
            ("count-0", ("--count", "0"), "--count", "--count"),
            ("max-seconds-0", ("--max-seconds", "0"), "--max-seconds", "--max-seconds"),
            ("max-seconds-negative", ("--max-seconds", "-3"), "--max-seconds", "--max-seconds"),
            ("max-seconds-nan", ("--max-seconds", "nan"), "--max-seconds", "--max-seconds"),
            ("none-short-enough", ("--max-seconds", "0.01"), "no utterance", data)]:
        c.add(f"data-subset-{name}", Case("data subset", (
            "data", "subset", data, str(out / f"subset-{name}"), *argv), expect, names))
    c.add("data-subset-out-exists", Case("data subset", ("data", "subset", data, existing),
                                         "already exists", existing))
    c.add("data-subset-out-is-a-file", Case("data subset", (
        "data", "subset", data, a_file, "--force"), "not a directory", a_file))
    c.add("data-subset-ok", Case("data subset", ("data", "subset", data, str(out / "subset-ok"),
                                                 "--count", "1", "--max-seconds", "30"), None))

    for name, argv, expect, names in [
            ("per-shard-0", ("--per-shard", "0"), "--per-shard", "--per-shard"),
            ("per-shard-text", ("--per-shard", "x"), "--per-shard", "--per-shard")]:
        c.add(f"data-shard-{name}", Case("data shard", (
            "data", "shard", data, str(out / f"shard-{name}"), *argv), expect, names))
    c.add("data-shard-out-exists", Case("data shard", ("data", "shard", data, existing),
                                        "already exists", existing))
    c.add("data-shard-out-is-a-file", Case("data shard", (
        "data", "shard", data, a_file, "--force"), "not a directory", a_file))
    own = str(c.data_copy("shard-into-itself"))
    c.add("data-shard-out-is-the-source", Case("data shard", (
        "data", "shard", own, own, "--force"), "overlaps its source", own))
    own = str(c.data_copy("subset-into-itself"))
    c.add("data-subset-out-in-the-source", Case("data subset", (
        "data", "subset", own, f"{own}/small", "--force"), "overlaps its source", own))
    own = str(c.data_copy("preview-into-itself"))
    c.add("data-augment-preview-out-is-the-source", Case("data augment-preview", (
        "data", "augment-preview", own, own, "--force"), "overlaps its source", own))
    c.add("data-shard-per-shard-huge", Case("data shard", (
        "data", "shard", data, str(out / "shard-huge"), "--per-shard", str(10**12)), None))

    recipes = c.dir("augment-recipes")

    def recipe(name: str, content: object) -> str:
        path = recipes / f"{name}.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    preview = ("data", "augment-preview", data)
    for name, content, expect in [
            ("not-json", "{\"augment\": ", "bad training config"),
            ("a-list", [1, 2], "bad training config"),
            ("augment-a-list", {"augment": [1]}, "augment"),
            ("speeds-string", {"augment": {"speeds": "fast"}}, "augment.speeds"),
            ("speeds-zero", {"augment": {"speeds": [0]}}, "augment.speeds"),
            ("speeds-bools", {"augment": {"speeds": [True]}}, "augment.speeds"),
            ("reverb-prob-2", {"augment": {"reverb_prob": 2}}, "augment.reverb_prob"),
            ("noise-prob-string", {"augment": {"noise_prob": "often"}}, "augment.noise_prob"),
            ("rt60-reversed", {"augment": {"rt60": [0.8, 0.2]}}, "augment.rt60"),
            ("rt60-one-number", {"augment": {"rt60": 0.5}}, "augment.rt60"),
            ("snr-huge", {"augment": {"snr_db": [0, 1e9]}}, "augment.snr_db"),
            ("gain-strings", {"augment": {"gain_db": ["a", "b"]}}, "augment.gain_db"),
            ("vtlp-warp-empty", {"augment": {"vtlp_warp": []}}, "augment.vtlp_warp"),
            ("noise-dir-missing", {"augment": {"noise_prob": 1, "noise_dir": "/nowhere"}},
             "/nowhere"),
            ("noise-dir-number", {"augment": {"noise_prob": 1, "noise_dir": 5}}, "noise_dir"),
            ("unknown-key", {"augment": {"echo_prob": 1}}, "echo_prob")]:
        path = recipe(name, content)
        c.add(f"data-augment-preview-config-{name}", Case("data augment-preview", (
            *preview, str(out / f"aug-{name}"), "--config", path), expect, path))
    for name, argv, expect, names in [
            ("count-0", ("--count", "0"), "--count", "--count"),
            ("epoch-negative", ("--epoch", "-1"), "--epoch", "--epoch"),
            ("config-missing", ("--config", str(recipes / "gone.json")), "gone.json",
             str(recipes / "gone.json")),
            ("config-a-directory", ("--config", str(recipes)), "bad training config",
             str(recipes))]:
        c.add(f"data-augment-preview-{name}", Case("data augment-preview", (
            *preview, str(out / f"aug-{name}"), *argv), expect, names))
    c.add("data-augment-preview-out-exists", Case("data augment-preview", (
        *preview, existing), "already exists", existing))
    c.add("data-augment-preview-out-is-a-file", Case("data augment-preview", (
        *preview, a_file, "--force"), "not a directory", a_file))
    c.add("data-augment-preview-count-over-corpus", Case("data augment-preview", (
        *preview, str(out / "aug-many"), "--count", "50"), None))
    shards = c.root / "shards"
    write_shard_dir(c.data, shards, 1, 0, False)
    c.add("data-augment-preview-of-shards", Case("data augment-preview", (
        "data", "augment-preview", str(shards), str(out / "aug-shards"), "--count", "1"), None))
