"""`compile`: unknown targets, output paths, tuning databases and options that do not fit the
model; all refused before the build."""

from __future__ import annotations

from pathlib import Path

from bad_inputs.corpus import REPO, Case, Corpus


def add_cases(c: Corpus) -> None:
    model, root = str(c.model_dir), c.root
    existing = str(c.dir("compile-existing"))

    def file(name: str) -> Path:
        return c.a_file(f"compile-{name}")

    def compile_(name: str, *argv: str, out: str | None = None,
                 target: str = "host") -> tuple[str, ...]:
        return ("compile", model, "--target", target, "--out",
                out or str(root / "compile-outs" / name), *argv)

    for name, argv, expect, names in [
            ("unknown-target", compile_("t", target="pentium"), "unknown target 'pentium'",
             "pentium"),
            ("empty-target", compile_("e", target=""), "unknown target", "''"),
            ("no-target", ("compile", model, "--out", str(root / "x")), "required", "--target"),
            ("no-out", ("compile", model, "--target", "host"), "required", "--out"),
            ("out-exists", compile_("x", out=existing), "already exists", existing),
            ("out-is-a-file", compile_("f", out=str(file("out"))), "not a directory",
             str(file("out"))),
            ("out-is-a-file-force", compile_("ff", "--force", out=str(file("force"))),
             "not a directory", str(file("force"))),
            ("out-under-a-file", compile_("u", out=str(file("under") / "lib")),
             "not a directory", str(file("under"))),
            ("model-missing", ("compile", str(root / "gone"), "--target", "host", "--out",
                               str(root / "cg")), "not a tinyasr model directory",
             str(root / "gone")),
            ("model-is-a-wav", ("compile", c.good_wav, "--target", "host", "--out",
                                str(root / "cw")), "not a tinyasr", c.good_wav),
            ("int8-with-san-m", compile_("i", "--int8"), "--int8", "--int8"),
            ("database-and-untuned", compile_("du", "--database", existing, "--untuned"),
             "not allowed with", "--untuned"),
            ("database-is-a-file", compile_("df", "--database", str(c.tac)), "--database",
             str(c.tac)),
            ("database-missing", compile_("dm", "--database", str(root / "no-db")),
             "--database", str(root / "no-db")),
            ("database-for-another-device", compile_("dd", "--database",
                                                     str(REPO / "schedules" / "x86-64-v3")),
             "x86-64-v3", "x86-64-v3"),
            ("dump-ir-is-a-file", compile_("dump", "--dump-ir", str(file("dump"))), "--dump-ir",
             str(file("dump")))]:
        c.add(f"compile-{name}", Case("compile", argv, expect, names))
