"""``python -m maml_sweep.tools.example``: regenerate ``analysis/example/``, the report shown in docs/.

Runs a 30-run sweep (bins 3,6 x inner lr 0.01,0.03,0.1 x seeds 0-4, 800 outer steps) into
``outputs/multirun/example`` (made anew each time), writes its report into a temporary
folder and replaces ``analysis/example/`` with the report's Markdown, PNG figures and CSV tables
(HTML and PDFs are left out to keep the repository small). Nothing else writes into ``analysis/example``.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SWEEP_DIR = Path("outputs/multirun/example")
OUT = Path("analysis/example")
SWEEP = ["task.bins=3,6", "algorithm.inner_lr=0.01,0.03,0.1", "seed=0,1,2,3,4", "train.outer_steps=800",
         "train.eval_every=40", "hydra/launcher=joblib"]
KEPT = (".md", ".png", ".csv")
COMMAND = "python -m maml_sweep.tools.example"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--sweep-dir", type=Path, default=SWEEP_DIR,
                   help=f"where the sweep runs, replaced (default {SWEEP_DIR})")
    p.add_argument("--out", type=Path, default=OUT, help=f"the example folder (default {OUT})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sweep = [sys.executable, "-m", "maml_sweep", "-m", *SWEEP, f"hydra.sweep.dir={args.sweep_dir}"]
    if args.sweep_dir.exists():  # a fresh sweep: this version's config, every number made now
        shutil.rmtree(args.sweep_dir)
    print("running:", " ".join(sweep[1:]), flush=True)
    subprocess.run(sweep, check=True)

    from ..analysis.design import experiment_design
    from ..analysis.load import load_runs
    from ..analysis.report import write_report

    rs = load_runs([str(args.sweep_dir)])
    with tempfile.TemporaryDirectory() as tmp:
        written = write_report(rs, Path(tmp), experiment_design(rs), sources=[str(args.sweep_dir)], command=COMMAND)
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        for name, path in sorted(written.items()):
            if path.suffix in KEPT:
                shutil.copy2(path, args.out / name)
    md = args.out / "report.md"  # the PDFs stay out: no links to them
    md.write_text(re.sub(r" \(\[PDF\]\([^)]*\.pdf\)\)", "", md.read_text()))
    print(args.out / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
