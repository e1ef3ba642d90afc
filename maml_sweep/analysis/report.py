"""The sweep report: the answer first (roles of the keys, the best configuration per task condition,
the paired comparison with the runner-up), then the figures that fit the kind of sweep, then the long
tables. Writes ``report.md``, a self-contained ``report.html``, figures (PNG + PDF) and tables (CSV).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..console import counts_text
from ..rundir import COMPLETED, DIVERGED, FAILED
from . import figures_report, intervals
from .aggregate import SELECT
from .context import ReportContext, atomic_write, build_context
from .design import Design
from .document import code, num, num_ci, num_pm, pct
from .load import RunSet
from .paired import COLUMNS as PAIRED_COLUMNS
from .paired import paired_rows
from .selection import BEST_CSV, conditions_of

KIND_TEXT = {
    "single": "one configuration",
    "overlay": "a few configurations, overlaid",
    "grid": "a grid of hyperparameters",
    "algorithms": "a comparison of methods",
    "search": "a search over sampled values",
}


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def report_title(sources: list[str], runs: pd.DataFrame) -> str:
    """``Report on outputs/multirun/X (18 runs)``: what was loaded, as the user named it."""
    shown = sources[:3] + ([f"{len(sources) - 3} more"] if len(sources) > 3 else [])
    return f"Report on {', '.join(shown)} ({plural(len(runs), 'run')})"


# ---------------------------------------------------------------- the answer

def section_header(c: ReportContext) -> None:
    """Title, the command that made the report, what was loaded, the kind of sweep and the roles of its keys."""
    runs, d, sources = c.runs, c.design, c.sources
    c.doc.h(1, report_title(sources, runs))
    if c.command:
        c.doc.p(f"Made by {code(c.command)}.")
    status = counts_text([str(s) for s in runs["status"]])
    skipped = f"; **{len(c.rs.skipped)} skipped**" if len(c.rs.skipped) else ""
    loaded = f"**{plural(len(runs), 'run')}** loaded from {', '.join(code(x) for x in sources)}: {status}{skipped}."
    if d.kind == "single":
        c.doc.p(loaded + (" One run." if len(runs) == 1 else
                          f" Nothing but the seed differs between them: one configuration, {plural(d.seeds, 'seed')}."))
        return
    c.doc.p(f"{loaded} This is **{KIND_TEXT[d.kind]}** ({plural(d.n_configs, 'configuration')}). "
            f"Roles of the keys that differ:")
    c.doc.items(d.roles_text())
    c.doc.p(f"The best configuration is chosen **per condition** on the validation metric {code(c.select)} (lowest "
            f"mean over seeds; a configuration with any diverged, failed or non-finite run is never chosen) and "
            f"measured on the test bank. Intervals are 95% over seeds and test tasks (two-way t-intervals; "
            f"none below {intervals.MIN_SEEDS} seeds).")


def pm_column(table: pd.DataFrame, col: str) -> list[str]:
    """``col`` as ``estimate ± half`` from its ``_low``/``_high`` columns (the estimate alone without them)."""
    if f"{col}_low" not in table.columns:
        return [num_pm(e, float("nan")) for e in table[col]]
    return [num_pm(e, (hi - lo) / 2) for e, lo, hi in zip(table[col], table[f"{col}_low"], table[f"{col}_high"])]


def best_table(c: ReportContext) -> pd.DataFrame:
    """``best.csv``: one row per condition, its chosen keys, n_seeds, the selection metric and the
    test statistics at the report steps."""
    d = c.design
    rows = []
    for _, b in c.best.iterrows():
        row = {k: b[k] for k in d.conditions}
        row.update({k: b[k] for k in d.chosen})
        eligible = isinstance(b.get("note"), str) and not b["note"]
        row["n_seeds"] = int(b["n"]) if eligible else 0
        row[c.select] = b["mean"]
        row[f"{c.select}_ci95"] = b["ci95"]
        if eligible:
            row.update(c.test_statistics(b))
            for k in c.steps:  # runs without test_mse.npz: the summaries' means
                col = f"test_mse_k{k}"
                if f"test_mean_k{k}" not in row and col in c.runs.columns:
                    row[f"test_mean_k{k}"] = float(c.runs_of(b)[col].mean())
        row["note"] = b.get("note", "")
        rows.append(row)
    return pd.DataFrame(rows)


def section_answer(c: ReportContext) -> None:
    """Best per condition (best.csv), the paired sentence for each condition's runner-up, and which
    configurations could not be chosen."""
    c.doc.h(2, "The answer")
    if c.best.empty:
        n_done = int((c.runs["status"].astype(str) == COMPLETED).sum())
        c.doc.p("Nothing to choose: " + ("no run completed." if not n_done else f"no run has {code(c.select)}."))
        return
    table = best_table(c)
    c.csv(table, BEST_CSV)
    k = c.steps[len(c.steps) // 2] if c.steps else None
    shown = table[c.design.conditions + c.design.chosen].copy()
    shown["seeds"] = table["n_seeds"]
    shown[f"{c.select} (±95% over seeds)"] = [num_pm(m, h) for m, h in zip(table[c.select], table[f"{c.select}_ci95"])]
    for stat in intervals.STATISTICS if k is not None else ():
        if f"test_{stat}_k{k}" in table.columns:
            shown[f"test {stat} k={k}"] = pm_column(table, f"test_{stat}_k{k}")
    few = int(table["n_seeds"].min()) < intervals.MIN_SEEDS
    note = f"; fewer than {intervals.MIN_SEEDS} seeds give no interval" if few else ""
    if c.design.kind == "single":
        c.doc.p(f"Its results over {plural(int(table['n_seeds'].iloc[0]), 'seed')}: validation {code(c.select)} and "
                f"the test bank's per-task MSE after k={k} steps (all statistics in {code(BEST_CSV)}{note}):")
    else:
        what = "each condition" if c.design.conditions else "the runs"
        c.doc.p(f"Best configuration for {what}, chosen on {code(c.select)} (all statistics in {code(BEST_CSV)}"
                f"{note}):")
    c.doc.table(shown, BEST_CSV)
    c.doc.items([s.replace("`", "'") for s in runner_up_sentences(c, k)] if k is not None else [])
    blocked = c.order[~c.order["eligible"] & (c.order["n"] + c.order["n_nonfinite"] > 0)]
    if len(blocked):
        c.doc.p("Not eligible (" + plural(len(blocked), "configuration") + "): "
                + "; ".join(f"{c.text(r, c.design.keys)} ({int(r['n_nonfinite'])} non-finite, "
                            f"{int(r['n_diverged'])} diverged, {int(r['n_failed'])} failed of {int(r['n_runs'])} runs)"
                            for _, r in blocked.head(10).iterrows()).replace("`", "'") + ".")
    for _, r in c.best[c.best["note"].astype(str) != ""].iterrows():
        c.doc.p(f"{c.condition_text(r)}: {r['note']}.")


def paired_sentence(row, who: str = "it", best_who: str = "the best") -> str:
    """One plain sentence about one row of :func:`paired.paired_rows`: ``who`` minus ``best_who`` at its k."""
    k, d, lo, hi = int(row["k"]), row["mean_diff"], row["mean_diff_low"], row["mean_diff_high"]
    if not np.isfinite(d):
        return (f"At k={k} the mean difference is not finite ({pct(row['blowup'])} of {who}'s and "
                f"{pct(row['blowup_best'])} of {best_who}'s test tasks blow up); the difference of medians "
                f"is {num(row['median_diff'])}.")
    if not np.isfinite(lo):
        why = "one seed" if row["n_seeds"] == 1 else ("no common seeds" if str(row["pairing"]).startswith("unpaired")
                                                      else f"{row['n_seeds']} seeds")
        return (f"At k={k}, {who}'s mean test MSE is {'higher' if d > 0 else 'lower'} by {num(abs(d))} "
                f"({why}: no interval).")
    if lo > 0:
        verdict = f"{best_who} is better on the test bank too"
    elif hi < 0:
        verdict = f"{who} is better on the test bank: the choice on validation did not carry over"
    else:
        verdict = "the test bank cannot tell them apart at 95%"
    p = row["p_improve"]
    return (f"At k={k}, {who}'s mean test MSE minus {best_who}'s is {num_ci(d, lo, hi)} (95% interval over "
            f"seeds and tasks); {best_who} is better on {pct(1 - p)} of (seed, task) pairs: {verdict}.")


def runner_up_sentences(c: ReportContext, k: int) -> list[str]:
    """Per condition, its best against its runner-up on validation, paired on the test bank at step k."""
    sentences = []
    for _, part in conditions_of(c.order, c.design):
        runner = part[part["rank"] == 2]
        best = part[part["rank"] == 1]
        if best.empty or runner.empty:
            continue
        rows = paired_rows(c.runs, c.design.keys, best.iloc[0], runner.iloc[[0]], [k], scores=c.scores)
        if rows.empty:
            continue
        where = f"For {c.condition_text(best.iloc[0])}: the" if c.design.conditions else "The"
        sentences.append(where + f" best ({c.config_text(best.iloc[0])}) against the runner-up on validation "
                         f"({c.config_text(runner.iloc[0])}). "
                         + paired_sentence(rows.iloc[0], "the runner-up", "the best"))
    return sentences


def precision_table(c: ReportContext, k: int, delta: float | None) -> pd.DataFrame:
    """Per condition, from its best and runner-up paired on the test bank at step k: today's seeds and
    tasks, the smallest mean difference resolved at 95% (the interval's half-width), and the seeds (or
    tasks) that would resolve ``delta``."""
    rows = []
    for _, part in conditions_of(c.order, c.design):
        best, runner = part[part["rank"] == 1], part[part["rank"] == 2]
        if best.empty or runner.empty:
            continue
        a, b = c.scores(runner.iloc[0]), c.scores(best.iloc[0])
        seeds = sorted(set(a) & set(b))
        if len(seeds) < 2 or k >= min(a[s][0].shape[1] for s in seeds):
            continue
        diff = np.stack([a[s][0][:, k] - b[s][0][:, k] for s in seeds])
        if not np.isfinite(diff).all():
            continue
        comp = intervals.components(diff)
        row = {key: best.iloc[0][key] for key in c.design.conditions}
        row.update(k=k, n_seeds=comp.n_seeds, n_tasks=comp.n_tasks, seed_var=comp.seed, task_var=comp.task,
                   noise_var=comp.noise,
                   resolvable=comp.half_width(max(comp.n_seeds, intervals.MIN_SEEDS), comp.n_tasks))
        if delta is not None:
            row.update(delta=delta, seeds_needed=comp.seeds_for(delta), tasks_needed=comp.tasks_for(delta))
        rows.append(row)
    return pd.DataFrame(rows)


def section_precision(c: ReportContext) -> None:
    """How small a difference this sweep can resolve, and what would resolve ``--resolve DELTA``."""
    delta = c.resolve
    if c.order.empty or not c.steps:
        return
    k = c.steps[len(c.steps) // 2]
    table = precision_table(c, k, delta)
    if table.empty:
        return
    c.csv(table, "precision.csv")
    parts = []
    for _, r in table.iterrows():
        where = f" for {c.condition_text(r)}" if c.design.conditions else ""
        text = (f"{num(r['resolvable'])}{where} ({int(r['n_seeds'])} seeds x {int(r['n_tasks'])} tasks"
                + (f"; at {intervals.MIN_SEEDS} seeds" if r["n_seeds"] < intervals.MIN_SEEDS else "") + ")")
        if delta is not None:
            s, t = r["seeds_needed"], r["tasks_needed"]
            text += (f"; to resolve {num(delta)}: {int(s)} seeds" if pd.notna(s) else
                     f"; {num(delta)} is not resolved by up to 1,000 seeds on these tasks")
            text += f" or {int(t)} test tasks" if pd.notna(t) else ""
        parts.append(text)
    c.doc.p(f"**Precision** (from the best and the runner-up, paired, at k={k}; {code('precision.csv')}): the "
            f"smallest difference in mean test MSE these runs resolve at 95% is " + "; ".join(parts) + ".")


def problem_runs(rs: RunSet) -> pd.DataFrame:
    """(run, path, issue) for every run that did not complete, then the loader's issues: ``issues.csv``."""
    rows = []
    for r in rs.runs.itertuples(index=False):
        status = str(r.status)
        if status == COMPLETED:
            continue
        error = getattr(r, "error", None)
        step = getattr(r, "diverged_step", None)
        got = getattr(r, "last_step", None)
        if status == DIVERGED:
            text = f"{DIVERGED} at step {step}" if not pd.isna(step) else DIVERGED
        elif status == FAILED:
            text = f"failed: {error}" if isinstance(error, str) and error else "failed (no error text recorded)"
        else:
            text = status + (f" at step {got}" if got is not None and not pd.isna(got) else "")
        if status != FAILED and isinstance(error, str) and error:
            text += f": {error}"
        rows.append((r.run, r.path, text))
    frame = pd.DataFrame.from_records(rows, columns=["run", "path", "issue"])
    return pd.concat([frame, rs.issues[["run", "path", "issue"]]], ignore_index=True) if len(rs.issues) else frame


def section_problems(c: ReportContext) -> None:
    """Runs that did not complete, the loader's issues and damaged per-task files (``issues.csv``)."""
    for _, config in c.order.iterrows():  # read every configuration's test_mse.npz now (cached for the rest)
        c.scores(config)
    problems = problem_runs(c.rs)
    if c.read_issues:
        problems = pd.concat([problems, pd.DataFrame(c.read_issues, columns=["run", "path", "issue"])],
                             ignore_index=True)
    c.csv(problems, "issues.csv")
    c.csv(c.rs.skipped, "skipped.csv")
    if problems.empty:
        return
    c.doc.h(2, "Runs that did not complete, and damaged files")
    c.doc.table(problems[["run", "issue"]], "issues.csv")


# ---------------------------------------------------------------- long tables

def ranked_table(c: ReportContext) -> pd.DataFrame:
    """Every configuration, condition by condition, best first: selection metric over seeds, the
    test statistics at the report steps with intervals, counts."""
    rows = []
    for _, r in c.order.iterrows():
        row = {k: r[k] for k in c.design.keys}
        row.update(rank=r["rank"], n_seeds=int(r["n"]), n_runs=int(r["n_runs"]), n_nonfinite=int(r["n_nonfinite"]),
                   n_diverged=int(r["n_diverged"]), n_failed=int(r["n_failed"]))
        row[c.select] = r["mean"]
        row[f"{c.select}_ci95"] = r["ci95"]
        row.update(c.test_statistics(r))
        rows.append(row)
    return pd.DataFrame(rows)


def section_tables(c: ReportContext) -> None:
    """The ranked configurations (``ranked.csv``), paired differences against each condition's best
    (``paired.csv``) and the aggregate over seeds (``aggregate.csv``, ``runs.csv``)."""
    c.csv(c.runs, "runs.csv")
    if c.agg.empty:
        return
    c.csv(c.agg, "aggregate.csv")
    if c.order.empty:
        return
    table = ranked_table(c)
    c.csv(table, "ranked.csv")
    if c.design.kind == "single":
        return
    c.doc.h(2, "All configurations")
    k = c.steps[len(c.steps) // 2] if c.steps else None
    shown = table[c.design.keys].copy()
    shown["rank"] = table["rank"]
    shown[f"{c.select} (±95%)"] = [num_pm(m, h) for m, h in zip(table[c.select], table[f"{c.select}_ci95"])]
    for stat in intervals.STATISTICS:
        if f"test_{stat}_k{k}" in table.columns:
            shown[f"test {stat} k={k}"] = pm_column(table, f"test_{stat}_k{k}")
    shown["seeds"] = table["n_seeds"]
    shown["diverged+failed+non-finite / runs"] = [
        f"{a + b + e}/{n}"
        for a, b, e, n in zip(table["n_diverged"], table["n_failed"], table["n_nonfinite"], table["n_runs"])]
    c.doc.p(f"Ranked on {code(c.select)} within each condition (rank 1 = the best, marked; blank rank: not "
            f"eligible). Test statistics of per-task MSE after k={k} steps, mean over seeds of each seed's "
            f"statistic over the test tasks, ±95% over seeds and tasks; every report step in {code('ranked.csv')}.")
    c.doc.table(shown, "ranked.csv", mark=0)
    paired = paired_all(c)
    c.csv(paired, "paired.csv")
    if len(paired):
        c.doc.p(f"Each configuration minus its condition's best on the test bank, paired over seeds and tasks "
                f"(mean, median and IQM differences with 95% intervals, the probability that it beats the best "
                f"on a random (seed, task), blow-up fractions): {code('paired.csv')}, "
                f"{plural(len(paired), 'row')}.")


def paired_all(c: ReportContext) -> pd.DataFrame:
    """Each eligible configuration minus its condition's best, at every report step."""
    parts = []
    for _, part in conditions_of(c.order, c.design):
        best = part[part["rank"] == 1]
        others = part[part["rank"] > 1]
        if len(best) and len(others):
            parts.append(paired_rows(c.runs, c.design.keys, best.iloc[0], others, c.steps, scores=c.scores))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*c.design.keys, *PAIRED_COLUMNS])


# ---------------------------------------------------------------- the report

def write_report(rs: RunSet, out_dir: Path, design: Design, *, sources: list[str], command: str = "",
                 select: str = SELECT, resolve: float | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write the report for a loaded :class:`RunSet` into ``out_dir``; returns the written files by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = build_context(rs, design, out_dir, select, progress)
    c.sources, c.command, c.resolve = sources, command, resolve
    for section in SECTIONS:
        section(c)
    c.say("writing report.md and report.html")
    atomic_write(out_dir / "report.md", c.doc.markdown())
    atomic_write(out_dir / "report.html", c.doc.html(out_dir, report_title(sources, rs.runs)))
    c.written["report.md"] = out_dir / "report.md"
    c.written["report.html"] = out_dir / "report.html"
    return c.written


# Every section, in reading order: the header, the answer, problems, figures, long tables.
SECTIONS: tuple[Callable[[ReportContext], None], ...] = (
    section_header, section_answer, section_precision, section_problems, figures_report.section_figures,
    section_tables)

