"""``maml-sweep-report PATH... [--out DIR] [--condition K[,K]] [--metric M] [--kind KIND]``.

Loads run directories, sweep directories, parents of several sweeps or globs, and writes
``report.md``, a self-contained ``report.html``, the figures (PNG + PDF) and the tables (CSV)
into ``analysis/<name>-<hash>/`` (one folder per set of inputs) or ``--out DIR``.
Several sweeps in one command are compared side by side.
"""
from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import sys
import time
from pathlib import Path

PROG = "maml-sweep-report"
KINDS = ("single", "overlay", "grid", "algorithms", "search")  # maml_sweep.analysis.design.KINDS (checked by a test)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        print(f"{PROG}: error: {message} (see {PROG} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Report on maml-sweep runs: which settings work, by how much and how "
                                       "sure we are. Writes report.md, a self-contained report.html, the "
                                       "figures (PNG, PDF) and the tables (CSV).",
                epilog="Keys may be given by a unique suffix: --condition inner_lr means algorithm.inner_lr.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="run or sweep directories, parents of sweeps, or globs")
    p.add_argument("--out", metavar="DIR", help="output directory (default: analysis/<name of the inputs>-"
                        "<hash of the inputs>, one per input set)")
    p.add_argument("--condition", metavar="K[,K]", action="append",
                   help="keys that are task conditions besides task.* (compared only within, best chosen per "
                        "condition); full names or unique suffixes")
    p.add_argument("--metric", metavar="M", help="validation metric the best configuration is chosen on "
                                                  "(default val_mse, the shared validation MSE)")
    p.add_argument("--resolve", metavar="DELTA", type=_positive,
                   help="a difference in mean test MSE to resolve: the report says how many seeds (or test tasks) "
                        "would resolve it at 95%%")
    p.add_argument("--kind", choices=KINDS, help="report layout (default: from the sweep: one configuration, "
                                                 "a few overlaid, a grid, methods, a search)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    return p


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--resolve {text!r}: a positive number (a difference in test MSE)")
    return value


INPUTS_FILE = "report_inputs.txt"  # the resolved input paths a report folder was made from, one a line


def _short(path: Path) -> str:
    """A path's readable part: relative to the working directory without ``outputs/``, else its last 3 parts."""
    try:
        rel = path.relative_to(Path.cwd().resolve())
        parts = rel.parts[1:] if rel.parts[:1] == ("outputs",) else rel.parts
    except ValueError:
        parts = path.parts[-3:]
    return "_".join(parts) or "here"


def input_set(paths: list[str]) -> list[str]:
    """The inputs as a set: resolved, sorted, without duplicates."""
    return sorted({str(Path(p).resolve()) for p in paths})


def default_out(paths: list[str]) -> Path:
    """``analysis/<label>-<hash>``: the label names the inputs (``multirun_2026-11-26_10-00-00``,
    ``A_and_2_more``), the hash of the resolved input set makes it unique: two different input sets
    never share a folder, and the same inputs refresh their own report."""
    inputs = input_set(paths)
    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", _short(Path(p))).strip("_") or "runs" for p in inputs]
    label = names[0][:60] + (f"_and_{len(names) - 1}_more" if len(names) > 1 else "")
    digest = hashlib.sha1("\n".join(inputs).encode()).hexdigest()[:8]
    return Path("analysis") / f"{label}-{digest}"


def previous_inputs(out: Path) -> list[str] | None:
    """The input set of the report already in ``out``, or None when there is none."""
    f = out / INPUTS_FILE
    return f.read_text().splitlines() if f.is_file() else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t0:5.1f}s] {msg}", file=sys.stderr, flush=True)

    from .aggregate import SELECT, is_test_metric
    from .design import DesignError, experiment_design
    from .load import LoadError, counts_text, load_runs
    from .report import atomic_write, write_report

    try:
        rs = load_runs(args.paths, progress=say)
        design = experiment_design(rs, args.condition)
    except (LoadError, DesignError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    select = args.metric or (SELECT if SELECT in rs.runs.columns else "val_meta_objective")
    if is_test_metric(select) or select not in rs.runs.columns:
        allowed = [m for m in rs.metrics if not is_test_metric(m)]
        print(f"{PROG}: error: --metric {select!r}: the best is chosen on a validation metric of these runs; "
              f"allowed: {', '.join(allowed) or 'none'}", file=sys.stderr)
        return 2
    if args.kind:
        design.kind = args.kind
    say(f"loaded {len(rs.runs)} runs ({counts_text(rs)}); {design.kind}; conditions: "
        f"{', '.join(design.conditions) or 'none'}; methods: {', '.join(design.methods) or 'none'}; "
        f"hyperparameters: {', '.join(design.hyper) or 'none'}")
    out = Path(args.out) if args.out else default_out(args.paths)
    inputs, before = input_set(args.paths), previous_inputs(out)
    if before is not None and before != inputs:
        print(f"{PROG}: warning: replacing the report in {out} (it was made from {', '.join(before)})",
              file=sys.stderr)
    command = " ".join([PROG] + [shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])])
    try:
        written = write_report(rs, out, design, sources=list(args.paths), command=command, select=select,
                               resolve=args.resolve, progress=say)
        atomic_write(out / INPUTS_FILE, "\n".join(inputs) + "\n")
    except OSError as e:
        print(f"{PROG}: error: --out {str(out)!r}: cannot write ({e.strerror})", file=sys.stderr)
        return 1
    say(f"wrote {len(written)} files")
    print(out / "report.md")
    print(out / "report.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
