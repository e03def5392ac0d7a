"""`compress prune|quantize|pack`: out-of-range numbers, block shapes, layer names, data too
short to use, output paths."""

from __future__ import annotations

from bad_inputs.corpus import Case, Corpus
from bad_inputs.files import write_data_dir


def add_cases(c: Corpus) -> None:
    model, corpus, root = str(c.model_dir), str(c.corpus), c.root
    out = c.dir("compress-outs")
    short = root / "short-corpus"
    for split in ("train", "dev"):
        write_data_dir(short / split, f"a {c.wavs / 'zero-samples.wav'}\n"
                                      f"b {c.wavs / 'under-one-frame.wav'}\n", "a hi\nb yo\n")
    c.add("compress-quantize-no-usable-calibration", Case("compress", (
        "compress", "quantize", model, "--data", str(short), "--out", str(root / "q.tac")),
        "no utterance is long enough", str(short / "train")))
    c.add("compress-prune-no-usable-data", Case("compress", (
        "compress", "prune", model, "--data", str(short), "--sparsity", "0.5", "--steps", "1",
        "--out", str(root / "pruned")), "no utterance is long enough", str(short / "train")))
    c.add("compress-prune-block-divides-nothing", Case("compress", (
        "compress", "prune", model, "--data", str(short), "--sparsity", "0.5", "--block", "7x7",
        "--out", str(root / "pruned")), "divides no layer", "--block"))

    prune = ("compress", "prune", model, "--data", corpus)
    for name, argv, expect, names in [
            ("sparsity-0", ("--sparsity", "0"), "--sparsity", "--sparsity"),
            ("sparsity-1", ("--sparsity", "1"), "--sparsity", "--sparsity"),
            ("sparsity-negative", ("--sparsity", "-0.5"), "--sparsity", "--sparsity"),
            ("sparsity-nan", ("--sparsity", "nan"), "--sparsity", "--sparsity"),
            ("sparsity-text", ("--sparsity", "half"), "--sparsity", "--sparsity"),
            ("block-0x4", ("--sparsity", "0.5", "--block", "0x4"), "--block", "--block"),
            ("block-text", ("--sparsity", "0.5", "--block", "big"), "--block", "--block"),
            ("block-negative", ("--sparsity", "0.5", "--block", "-1x4"), "--block", "--block"),
            ("steps-negative", ("--sparsity", "0.5", "--steps", "-1"), "--steps", "--steps"),
            ("lr-negative", ("--sparsity", "0.5", "--lr", "-1"), "--lr", "--lr"),
            ("lr-nan", ("--sparsity", "0.5", "--lr", "nan"), "--lr", "--lr"),
            ("batch-seconds-0", ("--sparsity", "0.5", "--batch-seconds", "0"),
             "--batch-seconds", "--batch-seconds"),
            ("distill-weight-2", ("--sparsity", "0.5", "--distill-weight", "2"),
             "--distill-weight", "--distill-weight"),
            ("train-utterances-0", ("--sparsity", "0.5", "--train-utterances", "0"),
             "--train-utterances", "--train-utterances"),
            ("threads-0", ("--sparsity", "0.5", "--threads", "0"), "--threads", "--threads"),
            ("tolerance-negative", ("--sparsity", "0.5", "--scan", "--tolerance", "-1"),
             "--tolerance", "--tolerance"),
            ("scan-utterances-0", ("--sparsity", "0.5", "--scan", "--scan-utterances", "0"),
             "--scan-utterances", "--scan-utterances"),
            ("scan-from-missing", ("--sparsity", "0.5", "--scan-from", str(root / "gone.json")),
             "gone.json", str(root / "gone.json")),
            ("scan-from-not-json", ("--sparsity", "0.5", "--scan-from", str(c.tac)),
             "--scan-from", str(c.tac)),
            ("layer-no-equals", ("--sparsity", "0.5", "--layer", "encoder"), "--layer",
             "--layer"),
            ("layer-sparsity-1", ("--sparsity", "0.5", "--layer", "x=1"), "--layer", "--layer"),
            ("layer-unknown", ("--sparsity", "0.5", "--layer", "no.such.layer=0.5"),
             "no.such.layer", "--layer"),
            ("no-out", ("--sparsity", "0.5"), "--out", "--out"),
            ("model-is-a-tac", ("--sparsity", "0.5"), "not a tinyasr model directory",
             str(c.tac))]:
        head = prune if name != "model-is-a-tac" else ("compress", "prune", str(c.tac), "--data",
                                                       corpus)
        tail = () if name == "no-out" else ("--out", str(out / f"prune-{name}"))
        c.add(f"compress-prune-{name}", Case("compress", (*head, *argv, *tail), expect, names))
    c.add("compress-prune-out-is-a-file", Case("compress", (
        *prune, "--sparsity", "0.5", "--out", str(c.a_file("prune-out"))), "not a directory",
        str(c.a_file("prune-out"))))
    c.add("compress-prune-data-missing", Case("compress", (
        "compress", "prune", model, "--data", str(root / "nowhere"), "--sparsity", "0.5",
        "--out", str(out / "p")), "nowhere", str(root / "nowhere")))

    quantize = ("compress", "quantize", model, "--data", corpus)
    for name, argv, expect, names in [
            ("calibration-0", ("--calibration-utterances", "0"), "--calibration-utterances",
             "--calibration-utterances"),
            ("qat-steps-negative", ("--qat-steps", "-1"), "--qat-steps", "--qat-steps"),
            ("lr-negative", ("--qat-steps", "1", "--lr", "-1"), "--lr", "--lr"),
            ("batch-seconds-0", ("--qat-steps", "1", "--batch-seconds", "0"),
             "--batch-seconds", "--batch-seconds"),
            ("threads-0", ("--threads", "0"), "--threads", "--threads"),
            ("activations-unknown", ("--activations", "int4"), "--activations",
             "--activations"),
            ("keep-fp32-unknown", ("--keep-fp32", "no.such.layer"), "no.such.layer",
             "--keep-fp32"),
            ("distill-weight-negative", ("--distill-weight", "-1"), "--distill-weight",
             "--distill-weight")]:
        c.add(f"compress-quantize-{name}", Case("compress", (
            *quantize, *argv, "--out", str(out / f"q-{name}.tac")), expect, names))
    c.add("compress-quantize-static-without-data", Case("compress", (
        "compress", "quantize", model, "--out", str(out / "q.tac")), "--data", "--data"))
    c.add("compress-quantize-out-is-a-directory", Case("compress", (
        *quantize, "--out", str(root)), "is a directory", "--out"))
    c.add("compress-pack-out-in-missing-dir", Case("compress", (   # made, as for any --out
        "compress", "pack", model, "--out", str(root / "no-dir" / "p.tac")), None))
    c.add("compress-quantize-dynamic", Case("compress", (
        "compress", "quantize", model, "--activations", "dynamic", "--out",
        str(out / "dynamic.tac")), None))
    c.add("compress-pack-out-is-a-directory", Case("compress", (
        "compress", "pack", model, "--out", str(root)), "is a directory", "--out"))
    c.add("compress-pack-out-under-a-file", Case("compress", (
        "compress", "pack", model, "--out", str(c.a_file("pack-out") / "x.tac")), "--out",
        "--out"))
    c.add("compress-pack-model-missing", Case("compress", (
        "compress", "pack", str(root / "gone"), "--out", str(out / "p.tac")),
        "not a tinyasr model directory", str(root / "gone")))
    c.add("compress-pack-ok", Case("compress", ("compress", "pack", model, "--out",
                                                str(out / "packed.tac")), None))
    c.add("compress-no-action", Case("compress", ("compress",), "required", "ACTION"))
