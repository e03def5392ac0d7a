"""`evaluate`: data dirs holding degenerate and broken wavs, --json paths (checked before the
work), --train-text and --mode."""

from __future__ import annotations

from bad_inputs.corpus import Case, Corpus
from bad_inputs.files import WAV_OUTCOMES, write_data_dir


def add_cases(c: Corpus) -> None:
    root, model = c.root, str(c.model_dir)

    def data_dir(name: str, wav: str) -> str:
        return str(write_data_dir(root / "data" / name, f"a {c.wavs / (wav + '.wav')}\n"
                                                        f"b {c.sample}\n", "a hello\nb world\n"))

    for wav in ("zero-samples", "one-sample", "under-one-frame", "silence", "junk-after-data",
                "extensible-pcm", "streamed-size"):
        path = data_dir(wav, wav)
        c.add(f"evaluate-{wav}", Case("evaluate", ("evaluate", path, "--model", model), None))
        c.add(f"data-check-{wav}", Case("data check", ("data", "check", path), None))
    for wav in ("odd-byte-count", "header-only", "fmt-size-huge", "data-past-end",
                "data-before-fmt", "extensible-float"):
        path = data_dir(wav, wav)
        c.add(f"evaluate-{wav}", Case("evaluate", ("evaluate", path, "--model", model),
                                      WAV_OUTCOMES[wav], f"{path}/wav.scp"))
        c.add(f"data-check-{wav}", Case("data check", ("data", "check", path),
                                        WAV_OUTCOMES[wav], f"{path}/wav.scp"))
    ok = str(c.data)
    evaluate = ("evaluate", "--model", model, ok)
    for name, argv, expect, names in [
            ("json-is-a-directory", ("--json", str(root)), "is a directory", "--json"),
            ("json-under-a-file", ("--json", str(c.a_file("evaluate-json") / "scores.json")),
             "not a directory", "--json"),
            ("mode-unknown", ("--mode", "x"), "--mode", "--mode"),
            ("train-text-missing", ("--train-text", str(root / "gone")), "not a data directory",
             str(root / "gone")),
            ("train-text-not-utf8", ("--train-text", str(root / "bad-data" / "text-not-utf8")),
             "not UTF-8", "text-not-utf8/text"),
            ("second-dir-missing", (str(root / "gone-data"),), "not a data directory",
             str(root / "gone-data")),
            ("model-is-a-wav", ("--model", c.good_wav), "not a model", c.good_wav)]:
        c.add(f"evaluate-{name}", Case("evaluate", (*evaluate, *argv), expect, names))
    c.add("evaluate-json-new-dir", Case("evaluate", (
        *evaluate, "--json", str(root / "out" / "deeper" / "scores.json")), None))
    c.add("evaluate-train-text", Case("evaluate", (*evaluate, "--train-text", ok), None))
    c.add("evaluate-same-dir-twice", Case("evaluate", (*evaluate, ok), None))
    c.add("evaluate-shipped-int8", Case("evaluate", ("evaluate", ok), None))
