"""``maml-sweep-runs``: list, show and compare runs across sweeps, and export them to MLflow.

    maml-sweep-runs ls [PATH...] [--where KEY=VALUE]... [--sort [-]KEY] [--format table|csv|json]
    maml-sweep-runs show RUN
    maml-sweep-runs diff RUN_A RUN_B
    maml-sweep-runs export-mlflow PATH... --tracking-uri URI

PATH defaults to ``outputs/``. Bad input gives one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

from . import rundir, rundir_read, runs_index
from .console import printable, table
from .runs_index import LS_COLUMNS, MISSING, RunRecord
from .safe_text import csv_frame

PROG = "maml-sweep-runs"


class UsageError(Exception):
    """Bad input: printed as one line, exit 2."""


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv[:-1]):  # `--sort -val_mse`: argparse would read -val_mse as an option
        if arg == "--sort" and argv[i + 1].startswith("-"):
            argv[i:i + 2] = [f"--sort={argv[i + 1]}"]
            break
    args = build_parser().parse_args(argv)
    try:
        text = args.command(args)
    except (UsageError, rundir_read.LoadError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # `maml-sweep-runs ls | head`
        sys.exit(0)
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="List, show, compare and export maml-sweep runs.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    ls = sub.add_parser("ls", help="every run under the paths, one line each")
    ls.add_argument("paths", nargs="*", metavar="PATH",
                    help="run or sweep directories, parents or globs (default: outputs/)")
    ls.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                    help="keep runs whose override, config key, summary key or column KEY equals VALUE (repeatable)")
    ls.add_argument("--sort", metavar="[-]KEY", help="sort by a column or key (leading - for descending)")
    ls.add_argument("--format", choices=("table", "csv", "json"), default="table")
    ls.set_defaults(command=cmd_ls)
    show = sub.add_parser("show", help="one run: status, overrides, results, files, config")
    show.add_argument("run", metavar="RUN")
    show.set_defaults(command=cmd_show)
    diff = sub.add_parser("diff", help="two runs: the config keys that differ, then their metrics side by side")
    diff.add_argument("run_a", metavar="RUN_A")
    diff.add_argument("run_b", metavar="RUN_B")
    diff.set_defaults(command=cmd_diff)
    export = sub.add_parser("export-mlflow", help="log runs to MLflow (again: updates, never duplicates)")
    export.add_argument("paths", nargs="+", metavar="PATH")
    export.add_argument("--tracking-uri", required=True, metavar="URI",
                        help="e.g. sqlite:///mlflow.db or http://127.0.0.1:5000")
    export.set_defaults(command=cmd_export)
    return parser


# ---------------------------------------------------------------- ls

def cmd_ls(args) -> str:
    records = runs_index.find(args.paths or [runs_index.DEFAULT_PATH])
    for where in args.where:
        try:
            key, wanted = runs_index.parse_where(where)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        records = [r for r in records if runs_index.matches(r, key, wanted)]
    if args.sort:
        key = args.sort.lstrip("-")
        records.sort(key=runs_index.sort_key(key), reverse=args.sort.startswith("-"))
    rows = [{c: r.column(c) for c in LS_COLUMNS} for r in records]
    if args.format == "json":
        return json.dumps([{k: _json_value(v) for k, v in row.items()} for row in rows], indent=1)
    if args.format == "csv":
        import pandas as pd
        frame = csv_frame(pd.DataFrame(rows, columns=list(LS_COLUMNS)))
        return frame.to_csv(index=False, lineterminator="\n")
    return table([[*LS_COLUMNS]] + [[_cell(v) for v in row.values()] for row in rows]) + \
        f"\n{len(rows)} run{'s' if len(rows) != 1 else ''}"


def _json_value(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ---------------------------------------------------------------- show

def cmd_show(args) -> str:
    record = _one_run(args.run)
    s = record.summary
    lines = [f"run        {runs_index.display_path(record.path)}",
             f"status     {record.status}" + _progress(s),
             f"started    {runs_index.format_time(record.started) or '-'}",
             f"overrides  {record.overrides_text or '(none)'}"]
    sweep = record.sweep_dir()
    if sweep is not None:
        lines.append(f"sweep      {runs_index.display_path(sweep)}")
    if s.get("error"):
        lines.append(f"error      {s['error']}")
    lines += [f"issue      {i}" for i in record.issues]
    lines += ["", "results"] + _indent(table([["key", "value"]]
                                             + [[k, _cell(s[k])] for k in runs_index.headline_keys(record)
                                                if k in s and k not in ("status", "error")]))
    files = rundir_read.run_files(record.path)
    lines += ["", "files"] + _indent(table([["name", "bytes"]] + [[name, str(size)] for name, size in files]))
    config = yaml.safe_dump(_unflatten(record.config), sort_keys=False, default_flow_style=False).rstrip()
    lines += ["", "config"] + _indent(config)
    return printable("\n".join(lines))


def _progress(summary: dict) -> str:
    if "steps" not in summary:
        return ""
    parts = [f"step {summary['steps']}/{summary.get('outer_steps', '?')}"]
    if isinstance(summary.get("ms_per_step"), (int, float)):
        parts.append(f"{summary['ms_per_step']:.2f} ms per outer step")
    return f" ({', '.join(parts)})"


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


# ---------------------------------------------------------------- diff

def cmd_diff(args) -> str:
    a, b = _one_run(args.run_a), _one_run(args.run_b)
    names = [runs_index.display_path(a.path), runs_index.display_path(b.path)]
    differ = runs_index.config_diff(a, b)
    lines = [f"A = {names[0]}", f"B = {names[1]}", "",
             f"config keys that differ: {len(differ)}" + ("" if differ else " (same config)")]
    if differ:
        lines += _indent(table([["key", "A", "B"]] + [[k, _cell(va), _cell(vb)] for k, va, vb in differ]))
    metrics = [[k, _cell(a.summary.get(k, MISSING)), _cell(b.summary.get(k, MISSING))]
               for k in runs_index.headline_keys(a, b) if k in a.summary or k in b.summary]
    metrics[0:0] = [["status (read)", a.status, b.status]] if a.status != a.summary.get("status") or \
        b.status != b.summary.get("status") else []
    lines += ["", "metrics"] + _indent(table([["key", "A", "B"]] + metrics))
    return printable("\n".join(lines))


def _one_run(arg: str) -> RunRecord:
    path = Path(arg)
    if not path.is_dir():
        raise UsageError(f"RUN {arg!r} is not a directory (give a run directory, e.g. outputs/multirun/DATE/TIME/0)")
    if not (path / rundir.HYDRA_CONFIG).is_file():
        raise UsageError(f"RUN {arg!r} is not a run directory (no {rundir.HYDRA_CONFIG}); "
                         f"`{PROG} ls {arg}` lists the runs under it")
    return runs_index.read_run(path.resolve())


# ---------------------------------------------------------------- export-mlflow

def cmd_export(args) -> str:
    try:
        from . import mlflow_export
    except ImportError as exc:
        raise UsageError(f"export-mlflow needs MLflow ({exc}): pip install 'maml-sweep[mlflow]'") from None
    records = runs_index.find(args.paths)
    if not records:
        raise UsageError(f"no runs under {' '.join(args.paths)}")
    try:
        done = mlflow_export.export(records, args.tracking_uri)
    except mlflow_export.ExportError as exc:
        raise UsageError(str(exc)) from None
    created = sum(1 for d in done if d.created)
    experiments = sorted({d.experiment for d in done})
    return (f"exported {len(done)} runs to {args.tracking_uri} ({created} new, {len(done) - created} updated) "
            f"in experiment{'s' if len(experiments) > 1 else ''}: {', '.join(experiments)}")


# ---------------------------------------------------------------- text

def _cell(value) -> str:
    """A value as table text: numbers with 4 significant digits, missing as ``-``."""
    if value is MISSING or value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]


if __name__ == "__main__":
    main()
