"""`bench`, `footprint` and `report`: counts, boards, lengths, stages, data and output dirs,
refused before minutes of measuring."""

from __future__ import annotations

from bad_inputs.corpus import Case, Corpus


def add_cases(c: Corpus) -> None:
    root, model = c.root, str(c.model_dir)
    out = root / "measure-outs"
    bench_out = str(out / "bench")
    for name, argv, expect, names in [
            *[(f"{option[2:]}-0", (option, "0"), option, option)
              for option in ("--threads", "--repeats", "--rounds", "--beam")],
            ("threads-text", ("--threads", "x"), "--threads", "--threads"),
            ("lengths-empty", ("--lengths", ""), "--lengths", "--lengths"),
            ("lengths-negative", ("--lengths", "1,-5"), "--lengths", "--lengths"),
            ("lengths-text", ("--lengths", "short"), "--lengths", "--lengths"),
            ("lengths-nan", ("--lengths", "nan"), "--lengths", "--lengths"),
            ("lengths-huge", ("--lengths", "1e9"), "--lengths", "--lengths"),
            ("mode-unknown", ("--mode", "x"), "--mode", "--mode"),
            ("fp32-model-missing", ("--fp32-model", str(root / "gone")),
             "not a tinyasr model directory", str(root / "gone")),
            ("int8-model-missing", ("--int8-model", str(root / "gone.tac")),
             "no such compressed model file", str(root / "gone.tac")),
            ("int8-model-is-a-dir", ("--int8-model", model), "no such compressed model file",
             model),
            ("sparse-model-is-a-wav", ("--sparse-model", c.good_wav), "bad magic", c.good_wav)]:
        c.add(f"bench-{name}", Case("bench", ("bench", "--out", bench_out, *argv), expect,
                                    names))
    c.add("bench-out-is-a-file", Case("bench", ("bench", "--out", str(c.a_file("bench"))),
                                      "not a directory", str(c.a_file("bench"))))
    c.add("bench-out-under-a-file", Case("bench", (
        "bench", "--out", str(c.a_file("bench-under") / "b")), "not a directory",
        str(c.a_file("bench-under"))))
    c.add("bench-no-out", Case("bench", ("bench",), "required", "--out"))

    footprint_out = str(out / "footprint")
    for name, argv, expect, names in [
            ("board-unknown", ("--boards", "host,nope"), "unknown target 'nope'", "nope"),
            ("boards-empty", ("--boards", ""), "unknown target ''", "''"),
            ("lengths-negative", ("--lengths", "-5"), "--lengths", "--lengths"),
            ("mode-unknown", ("--mode", "x"), "--mode", "--mode"),
            ("model-missing", ("--model", str(root / "gone")), "not a tinyasr model directory",
             str(root / "gone")),
            ("model-is-a-wav", ("--model", c.good_wav), "bad magic", c.good_wav)]:
        c.add(f"footprint-{name}", Case("footprint", ("footprint", "--out", footprint_out,
                                                      "--boards", "host", *argv), expect, names))
    c.add("footprint-out-is-a-file", Case("footprint", (
        "footprint", "--out", str(c.a_file("footprint"))), "not a directory",
        str(c.a_file("footprint"))))

    data, report_out = str(c.corpus), str(out / "report")
    for name, argv, expect, names in [
            *[(f"{option[2:]}-0", (f"tiny={model}", option, "0"), option, option)
              for option in ("--threads", "--beam", "--max-utterances")],
            ("stage-without-name", (model,), "expected NAME=PATH", model),
            ("stage-empty-path", ("tiny=",), "expected NAME=PATH", "tiny="),
            ("stage-empty-name", (f"={model}",), "expected NAME=PATH", f"={model}"),
            ("stage-missing", (f"tiny={root / 'gone'}",), "not a tinyasr model directory",
             str(root / "gone")),
            ("second-stage-missing", (f"tiny={model}", f"gone={root / 'gone.tac'}"),
             "gone.tac", str(root / "gone.tac")),
            ("stage-names-repeat", (f"tiny={model}", f"tiny={c.tac}"), "tiny", "tiny"),
            ("stage-is-a-wav", (f"wav={c.good_wav}",), "bad magic", c.good_wav),
            ("mode-unknown", (f"tiny={model}", "--mode", "x"), "--mode", "--mode")]:
        c.add(f"report-{name}", Case("report", ("report", *argv, "--data", data, "--out",
                                                report_out), expect, names))
    no_test = c.corpus_with("report-no-test", "test", root / "nothing")
    c.add("report-corpus-without-test", Case("report", (
        "report", f"tiny={model}", "--data", str(no_test), "--out", report_out), "test",
        str(no_test / "test")))
    c.add("report-out-is-a-file", Case("report", (
        "report", f"tiny={model}", "--data", data, "--out", str(c.a_file("report"))),
        "not a directory", str(c.a_file("report"))))
    c.add("report-out-under-a-file", Case("report", (
        "report", f"tiny={model}", "--data", data, "--out", str(c.a_file("report-u") / "r")),
        "not a directory", str(c.a_file("report-u"))))
    c.add("report-tiny", Case("report", ("report", f"tiny={model}", f"tac={c.tac}", "--data",
                                         data, "--out", str(out / "report-ok")), None))
