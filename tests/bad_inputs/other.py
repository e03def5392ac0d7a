"""`export onnx` and `demo`: their paths and models."""

from __future__ import annotations

from bad_inputs.corpus import Case, Corpus


def add_cases(c: Corpus) -> None:
    root, model = c.root, str(c.model_dir)
    for name, argv, expect, names in [
            ("out-is-a-file", (model, str(c.a_file("onnx"))), "not a directory",
             str(c.a_file("onnx"))),
            ("out-under-a-file", (model, str(c.a_file("onnx-u") / "onnx")), "not a directory",
             str(c.a_file("onnx-u"))),
            ("model-missing", (str(root / "gone"), str(root / "onnx-gone")),
             "not a tinyasr model directory", str(root / "gone")),
            ("model-is-a-wav", (c.good_wav, str(root / "onnx-wav")), "not a tinyasr",
             c.good_wav),
            ("format-unknown", None, "invalid choice", "tflite")]:
        argv_full = ("export", "tflite", model, "x") if argv is None else ("export", "onnx",
                                                                            *argv)
        c.add(f"export-{name}", Case("export", argv_full, expect, names))
    c.add("export-tiny", Case("export", ("export", "onnx", model, str(root / "onnx-ok")), None))
    for name, argv, expect, names in [
            ("model-missing", ("--model", str(root / "gone")), "not a tinyasr model directory",
             str(root / "gone")),
            ("model-is-a-wav", ("--model", c.good_wav), "not a tinyasr", c.good_wav),
            ("data-missing", ("--data", str(root / "no-data")), "not a data directory",
             str(root / "no-data")),
            ("data-is-a-file", ("--data", str(c.tac)), "not a data directory", str(c.tac))]:
        c.add(f"demo-{name}", Case("demo", ("demo", *argv), expect, names))
    c.add("demo-tiny-model", Case("demo", ("demo", "--model", model, "--data", str(c.data)),
                                  None))
    c.add("demo-zero-sample-utterance", Case("demo", (
        "demo", "--model", model, "--data", str(root / "odd-data" / "zero-sample-wav")), None))
