"""`tune`: targets, trial counts, budgets, trackers and work dirs, refused before any task is
extracted or measured."""

from __future__ import annotations

from bad_inputs.corpus import Case, Corpus


def add_cases(c: Corpus) -> None:
    model, root = str(c.model_dir), c.root
    work = str(root / "tune-work")

    def tune(*argv: str, target: str = "host") -> tuple[str, ...]:
        return ("tune", model, "--target", target, "--work-dir", work, *argv)

    for name, argv, expect, names in [
            ("unknown-target", tune("--trials", "1", target="cray"), "unknown target 'cray'",
             "cray"),
            ("trials-negative", tune("--trials", "-1"), "--trials", "--trials"),
            ("trials-text", tune("--trials", "many"), "--trials", "--trials"),
            ("trials-missing", tune(), "required", "--trials"),
            ("board-without-tracker", tune("--trials", "1", target="rpi4"), "--tracker",
             "rpi4"),
            ("trials-0-with-tracker", tune("--trials", "0", "--tracker", "127.0.0.1:1",
                                           target="rpi4"), "--trials", "--trials"),
            ("time-budget-0", tune("--trials", "1", "--time-budget", "0"), "--time-budget",
             "--time-budget"),
            ("time-budget-negative", tune("--trials", "1", "--time-budget", "-5"),
             "--time-budget", "--time-budget"),
            ("time-budget-nan", tune("--trials", "1", "--time-budget", "nan"), "--time-budget",
             "--time-budget"),
            ("tracker-no-port", tune("--trials", "1", "--tracker", "localhost", target="rpi4"),
             "HOST:PORT", "--tracker"),
            ("tracker-port-huge", tune("--trials", "1", "--tracker", "localhost:70000",
                                       target="rpi4"), "port", "--tracker"),
            ("tracker-closed", tune("--trials", "1", "--tracker", "127.0.0.1:1",
                                    target="rpi4"), "unreachable", "127.0.0.1:1"),
            ("work-dir-is-a-file", ("tune", model, "--target", "host", "--trials", "1",
                                    "--work-dir", str(c.a_file("tune"))), "--work-dir",
             str(c.a_file("tune"))),
            ("model-missing", ("tune", str(root / "gone"), "--target", "host", "--trials", "1",
                               "--work-dir", work), "not a tinyasr model directory",
             str(root / "gone"))]:
        c.add(f"tune-{name}", Case("tune", argv, expect, names))
