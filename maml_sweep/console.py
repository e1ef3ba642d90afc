"""What a sweep prints: one line per finished job and a live progress line, then where the results are.

:class:`SweepConsole` runs in the process that launched the multirun and reads the job directories
(through :mod:`maml_sweep.rundir`), so it works the same with every launcher: serial, joblib,
submitit, SLURM. On a terminal the progress line (ended / running / failed / diverged, rate, ETA)
is redrawn in place on stderr; elsewhere it is printed at most every :data:`PROGRESS_EVERY_S`.
The jobs' own per-step lines go to their log files (:class:`maml_sweep.logs.QuietConsole`).
"""
from __future__ import annotations

import io
import math
import sys
import threading
import time
from pathlib import Path

from . import rundir, rundir_read
from .roles import is_condition

POLL_S = 0.5
PROGRESS_EVERY_S = 30.0  # not a terminal: a progress line at most this often
BEST_ROWS = 3  # rows of the best-runs table when the sweep has one condition
MAX_BEST_ROWS = 12


def counts_text(statuses: list[str]) -> str:
    """``2 completed, 1 diverged``: how many runs have each status word, the ended ones first in
    :data:`rundir.ENDED` order, then others as first seen; empty for no runs. The one wording of
    status counts (sweep progress, a sweep's last words, the report's loaded runs)."""
    order = [*rundir.ENDED, *dict.fromkeys(s for s in statuses if s not in rundir.ENDED)]
    return ", ".join(f"{statuses.count(s)} {s}" for s in order if s in statuses)


def report_command(path: Path) -> str:
    """The command that reports on a run or sweep directory."""
    return f"maml-sweep-report {shown_path(path)}"


class SweepConsole:
    """Watches ``sweep_dir``'s jobs in a background thread and prints each one once it has ended.

    ``planned``: jobs this multirun launches (None if unknown); ``swept``: the override keys that
    vary (the job line shows only these; all overrides when empty); ``refused``: a callable giving
    {job number: message} of jobs this sweep refused."""

    def __init__(self, sweep_dir: Path, planned: int | None, swept: list[str], refused, out=None, err=None):
        self.sweep_dir, self.planned, self.swept, self.refused = Path(sweep_dir), planned, swept, refused
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.live = _isatty(self.err)
        self.started = time.time()
        self.ended: dict[str, str] = {}  # job name -> status, in the order they ended
        self.running = 0
        self._last_progress = self.started
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> "SweepConsole":
        self._thread = threading.Thread(target=self._watch, name="maml-sweep-console", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, print the jobs that ended since the last look, clear the live line."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.poll()
        if self.live:
            self.err.write("\r\033[K")
            self.err.flush()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.poll()
            except (OSError, ValueError):  # a job directory changing under us: look again next time
                pass

    def poll(self) -> None:
        """Print a line for each job that ended since the last call; redraw the progress line."""
        with self._lock:
            refused = self.refused() or {}
            running, new = 0, []
            for run in rundir_read.sweep_jobs(self.sweep_dir) if self.sweep_dir.is_dir() else []:
                if run.name in self.ended:
                    continue
                if run.name in refused:
                    new.append((run, rundir.FAILED, {"error": f"refused: {refused[run.name]}"}))
                    continue
                state = rundir_read.read_state(run)
                if state.status in rundir.ENDED:
                    new.append((run, state.status, state.summary))
                elif state.status == rundir.RUNNING:
                    running += 1
            self.running = running
            for run, status, summary in new:
                self.ended[run.name] = status
                self._print(self.out, self.job_line(run, status, summary))
            now = time.time()
            if self.live:
                self.err.write("\r\033[K" + self.progress_line(now))
                self.err.flush()
            elif new and now - self._last_progress >= PROGRESS_EVERY_S:
                self._print(self.err, self.progress_line(now))
                self._last_progress = now

    def _print(self, stream, line: str) -> None:
        if self.live:
            self.err.write("\r\033[K")
            self.err.flush()
        stream.write(printable(line) + "\n")
        stream.flush()

    def job_line(self, run: Path, status: str, summary: dict) -> str:
        """``[3/6] job 2 completed  val_mse 1.78  test_mse k1 2.89 k5 2.41 k10 2.19  task.bins=3 seed=0``."""
        count = f"[{len(self.ended)}/{self.planned or '?'}]"
        parts = [f"{count} job {run.name} {status}"]
        if status == rundir.COMPLETED:
            parts.append(f"val_mse {_num(summary.get('val_mse'))}")
            tests = test_steps(summary)
            if tests:
                parts.append("test_mse " + " ".join(f"k{k} {_num(summary[f'test_mse_k{k}'])}" for k in tests))
        elif status == rundir.DIVERGED:
            parts.append(f"at step {summary.get('diverged_step') or summary.get('steps', '?')}")
        elif summary.get("error"):
            parts.append(str(summary["error"])[:200])
        elif status in (rundir.INTERRUPTED, rundir.KILLED):
            parts.append(f"at step {summary.get('steps', '?')}/{summary.get('outer_steps', '?')}")
        parts.append(self.overrides_text(run))
        return "  ".join(p for p in parts if p)

    def overrides_text(self, run: Path) -> str:
        try:
            overrides = rundir_read.read_overrides(run)
        except rundir.DamagedFile:
            return ""
        shown = [o for o in overrides if o.key in self.swept] if self.swept else overrides
        return " ".join(o.text for o in shown)

    def progress_line(self, now: float) -> str:
        """``sweep 3/6 ended (2 completed, 1 diverged) | 2 running | 4.1 runs/min | ETA 45s``."""
        p = progress([{"status": s} for s in self.ended.values()], {"started": self.started, "planned": self.planned},
                     now)
        counts = counts_text([s for s in self.ended.values() if s in rundir.ENDED]) or "none yet"
        eta = "?" if p["eta_s"] is None else _duration(p["eta_s"])
        return (f"sweep {p['ended']}/{self.planned or '?'} ended ({counts}) | {self.running} running | "
                f"{p['per_min']:.1f} runs/min | ETA {eta}")

    def final_lines(self, rows: list[dict], summary_csv: Path) -> list[str]:
        """The sweep's last words: where it is, its best runs, the report command."""
        statuses = [r["status"] for r in rows]
        counts = counts_text(statuses)
        lines = [f"sweep: {len(rows)} runs ({counts}) in {_duration(time.time() - self.started)}",
                 f"sweep directory: {shown_path(self.sweep_dir)}  (one row per run: {summary_csv.name})"]
        ranked = sorted((r for r in rows if r["status"] == rundir.COMPLETED and _finite(r.get("val_mse"))),
                        key=lambda r: r["val_mse"])
        # An experiment preset may set the task; from the overrides alone the console cannot tell, so it is one too.
        conditions = [k for k in self.swept if is_condition(k) or k == "experiment"]
        if conditions:  # best is chosen per condition (what the task is), never across them
            firsts = {tuple(str(r.get(k)) for k in conditions): r for r in reversed(ranked)}
            best = sorted(firsts.values(), key=lambda r: [rundir_read.natural_key(str(r.get(k))) for k in conditions])
            title = f"best by val_mse per {', '.join(conditions)}:"
        else:
            best = ranked[:BEST_ROWS]
            title = f"best {len(best)} of {len(rows)} by val_mse:"
        best = best[:MAX_BEST_ROWS]
        if best:
            tests = [k for k in (f"test_mse_k{s}" for s in test_steps(best[0])) if k in best[0]]
            keys = [k for k in self.swept if any(k in r for r in best)]
            header = ["job", *keys, "val_mse", *tests]
            body = [[str(r["job"]), *(str(r.get(k, "")) for k in keys), _num(r["val_mse"]),
                     *(_num(r.get(t)) for t in tests)]
                    for r in best]
            lines.append(title)
            lines += ["  " + line for line in table([header] + body).splitlines()]
        lines.append(f"report: {report_command(self.sweep_dir)}")
        return lines


def test_steps(summary: dict) -> list[int]:
    """The report steps k a summary has ``test_mse_k<k>`` for, in order."""
    return sorted(int(k[len("test_mse_k"):]) for k in summary
                  if k.startswith("test_mse_k") and k[len("test_mse_k"):].isdigit())


def run_end_lines(run_dir: Path, summary: dict) -> list[str]:
    """A single run's last words: its outcome, its test MSE at the report steps, the report command."""
    status, steps = summary.get("status"), summary.get("steps", 0)
    ms = summary.get("ms_per_step")
    pace = f" ({ms:.2f} ms per outer step)" if isinstance(ms, (int, float)) else ""
    lines = [f"{status} at step {summary.get('diverged_step') or steps}/{summary.get('outer_steps', '?')}{pace}"
             + (f"; val_mse {_num(summary.get('val_mse'))}" if status == rundir.COMPLETED else "")]
    tests = test_steps(summary)
    if tests:
        n = summary.get("n_test_tasks", "?")
        lines.append(f"test MSE after k adaptation steps, mean over {n} test tasks: "
                     + "  ".join(f"k={k} {_num(summary[f'test_mse_k{k}'])}" for k in tests)
                     + "  (median: " + ", ".join(_num(summary.get(f"test_median_k{k}")) for k in tests) + ")")
    lines.append(f"run directory: {shown_path(run_dir)}")
    lines.append(f"report: {report_command(run_dir)}")
    return lines


def table(rows: list[list[str]]) -> str:
    """Rows of text as aligned columns (the first row is the header); numeric columns right-aligned."""
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    numeric = [len(rows) > 1 and all(_is_number(r[i]) for r in rows[1:]) for i in range(len(widths))]
    out = io.StringIO()
    for row in rows:
        out.write("  ".join(c.rjust(w) if num else c.ljust(w)
                            for c, w, num in zip(row, widths, numeric)).rstrip() + "\n")
    return out.getvalue().rstrip("\n")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


def printable(text) -> str:
    """Run data as terminal text: control characters (escape sequences included) shown as ``\\xNN``."""
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in str(text))


def _num(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:.4g}"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when under it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(rows: list[dict], plan: dict, now: float) -> dict:
    """Runs ended (by status), planned, rate since the sweep started (runs/min) and ETA (s)."""
    ended = [r["status"] for r in rows if r["status"] in rundir.ENDED]
    minutes = max(now - plan["started"], 1e-9) / 60
    rate = len(ended) / minutes
    planned = plan.get("planned")
    eta = (planned - len(ended)) / rate * 60 if planned and rate > 0 else None
    return {"ended": len(ended), "planned": planned, "per_min": rate, "eta_s": eta,
            "counts": {s: ended.count(s) for s in rundir.ENDED if s in ended}}
