"""The sweep report: tables (CSV), figures (PNG + PDF), ``report.md`` and a self-contained ``report.html``.

It answers which settings work (ranked configurations, per-key effects, heatmap, curves), by how
much (differences in mean over seeds) and how sure we are (95% CIs, n, diverged counts).
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import rundir
from . import plots
from .aggregate import aggregate, best_config, config_mask, curve_bands, in_order, is_test_metric, ranked, t975
from ..rundir import COMPLETED, DIVERGED, FAILED
from .load import RunSet
from .paired import section_paired
from .roles import Roles

TOP = 15  # configurations listed in the report (all of them are in the CSV)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write a file via a temp file and rename, so a reader never sees half of it."""
    with rundir.atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, frame.to_csv(index=False))


def fmt(v, digits: int = 4) -> str:
    """A number for a table: 4 significant digits; blanks for missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}g}"
    return str(v)


def key_effects(runs: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Per swept key and level: mean metric over the completed runs with that level (all other
    keys pooled), 95% CI, n. A quick look at which settings matter."""
    rows = []
    done = runs[(runs["status"].astype(str) == COMPLETED) & np.isfinite(runs[metric].astype(float))]
    for k in keys:
        for level, part in done.groupby(k, sort=True, dropna=False):
            v = part[metric].astype(float)
            n = len(v)
            sem = v.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
            rows.append({"key": k, "level": plots.label(level), "mean": v.mean(),
                         "ci95": t975(n - 1) * sem if n > 1 else math.nan, "n": n})
    return pd.DataFrame(rows, columns=["key", "level", "mean", "ci95", "n"])


# ---------------------------------------------------------------- documents

class Doc:
    """Report content as blocks, rendered to Markdown and to self-contained HTML."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def items(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def table(self, frame: pd.DataFrame):
        self.blocks.append(("table", frame))

    def figure(self, name: str, caption: str):
        self.blocks.append(("fig", name, caption))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {i}" for i in b[1]))
            elif b[0] == "table":
                out.append(_md_table(b[1]))
            elif b[0] == "fig":
                out.append(f"![{b[2]}]({b[1]}.png)\n\n*{b[2]}* ([PDF]({b[1]}.pdf))")
        return "\n\n".join(out) + "\n"

    def html(self, out_dir: Path, title: str) -> str:
        body = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "table":
                frame = b[1].map(fmt) if len(b[1]) else b[1]
                body.append('<div class="scroll">' + frame.to_html(index=False, escape=True, border=0, classes="t")
                            + "</div>")
            elif b[0] == "fig":
                data = base64.b64encode((out_dir / f"{b[1]}.png").read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{_inline(b[2])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
                 "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
                 "table.t td,table.t th{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}"
                 ".scroll{overflow-x:auto;max-width:100%}table.t th{white-space:nowrap}"
                 "p,li,figcaption{overflow-wrap:anywhere}"
                 "img{max-width:100%;height:auto}figcaption{font-size:0.85em;color:#555}code{background:#f3f3f3}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escape text for HTML, keeping Markdown's `code` and **bold**."""
    parts = html.escape(text).split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _md_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "*(none)*"
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the report

def plural(n: int, word: str) -> str:
    """``1 run``, ``3 runs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def mean_ci(mean, ci, n) -> str:
    """``0.2174 ± 0.01 (95% CI, n=3)``, or ``0.2174 (n=1: no CI)`` when there is no interval."""
    if ci is None or not np.isfinite(ci):
        return f"{fmt(mean)} (n={n}: no CI)"
    return f"{fmt(mean)} ± {fmt(ci)} (95% CI, n={n})"


def report_title(sources: list[str], runs: pd.DataFrame) -> str:
    """``Report on outputs/multirun/X (18 runs)``: what was loaded, as the user named it."""
    shown = sources[:3] + ([f"{len(sources) - 3} more"] if len(sources) > 3 else [])
    return f"Report on {', '.join(shown)} ({plural(len(runs), 'run')})"


@dataclass
class Section:
    """What every section of the report reads, and where it writes."""

    rs: RunSet
    roles: Roles
    out_dir: Path
    say: Callable[[str], None]
    doc: Doc = field(default_factory=Doc)
    written: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)  # metrics with at least one value
    agg: pd.DataFrame = field(default_factory=pd.DataFrame)  # aggregate over seeds, tidy
    best: pd.Series | None = None  # the best configuration's aggregate row, or None

    @property
    def runs(self) -> pd.DataFrame:
        return self.rs.runs

    @property
    def keys(self) -> list[str]:
        return self.rs.group_keys

    def csv(self, frame: pd.DataFrame, name: str) -> None:
        write_csv(frame, self.out_dir / name)
        self.written[name] = self.out_dir / name

    def figure(self, fig, name: str, caption: str, missing: str) -> None:
        """Save ``fig`` (PNG + PDF) and show it with ``caption``; or say ``missing`` when it is None."""
        if fig is None:
            self.doc.p(missing)
            return
        self.say(f"figure {name}")
        for path in plots.save_figure(fig, self.out_dir, name):
            self.written[path.name] = path
        self.doc.figure(name, caption)

    def fixed_note(self, fixed: list[str]) -> str:
        """``; other keys at the best configuration's values: k=v, ...`` for keys held fixed in a figure."""
        if not fixed or self.best is None:
            return ""
        return "; other keys at the best configuration's values: " + \
            ", ".join(f"{k}={plots.label(self.best[k])}" for k in fixed)

    def at_best(self, frame: pd.DataFrame, fixed: list[str]) -> pd.DataFrame:
        """Rows of ``frame`` whose ``fixed`` keys equal the best configuration's."""
        return frame[config_mask(frame, fixed, self.best)] if (self.best is not None and fixed) else frame


def _config_text(config, keys: list[str]) -> str:
    return ", ".join(f"`{k}={plots.label(config[k])}`" for k in keys) or "(the only configuration)"


def _ranked_table(agg: pd.DataFrame, keys: list[str], roles: Roles, extra: list[str]) -> pd.DataFrame:
    """Configurations best first on ``roles.select``, with ``roles.metric`` and other metrics as mean ± CI."""
    order = ranked(agg, keys, roles.select)
    table = order[keys].copy() if keys else pd.DataFrame(index=order.index)
    shown = [roles.select] + [m for m in [roles.metric] + extra if m != roles.select]
    for m in dict.fromkeys(shown):
        rows = in_order(agg, keys, order, m)
        table[m] = rows["mean"].to_numpy()
        table[f"{m} ±95%CI"] = rows["ci95"].to_numpy()
    table["n (completed)"] = order["n"].to_numpy()
    table["diverged+failed / runs"] = [f"{d}/{r}" for d, r in zip(order["n_diverged"] + order["n_failed"],
                                                                   order["n_runs"])]
    return table


def shown_with_ci(table: pd.DataFrame) -> pd.DataFrame:
    """For reading: each ``m`` / ``m ±95%CI`` column pair as one text column ``m (±95% CI)``
    ("0.194 ± 0.156", or "0.194" alone when there is no interval); ``ranked.csv`` keeps the numbers."""
    out = pd.DataFrame(index=table.index)
    for c in table.columns:
        if c.endswith(" ±95%CI"):
            continue
        if f"{c} ±95%CI" in table.columns and table[f"{c} ±95%CI"].notna().any():
            out[f"{c} (±95% CI)"] = [fmt(m) + (f" ± {fmt(ci)}" if pd.notna(ci) and np.isfinite(ci) else "")
                                     for m, ci in zip(table[c], table[f"{c} ±95%CI"])]
        else:
            out[c] = table[c]
    return out


def problem_runs(rs: RunSet) -> pd.DataFrame:
    """(run, path, issue) for every run that did not complete (its error text, the step it diverged
    at, how far it got) followed by the loader's issues with kept runs: ``issues.csv``."""
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


def section_loaded(s: Section, sources: list[str], command: str) -> None:
    """Title, the command, what was loaded (counts by status, skipped directories) and what was swept."""
    runs, keys = s.runs, s.keys
    s.doc.h(1, report_title(sources, runs))
    if command:
        s.doc.p(f"Made by `{command}`.")
    status_text = ", ".join(f"{n} {st}" for st, n in runs["status"].value_counts().items())
    s.doc.p(f"**{plural(len(runs), 'run')}** loaded from {', '.join(f'`{x}`' for x in sources)}: {status_text}"
            + (f"; **{len(s.rs.skipped)} skipped**." if len(s.rs.skipped) else "."))
    if len(s.rs.skipped):
        s.doc.items([f"{n} skipped: {reason}" for reason, n in s.rs.skipped["reason"].value_counts().items()])
    n_seeds = runs["seed"].nunique() if "seed" in runs.columns else 1
    if not keys:
        what = "one configuration" + (f" over {plural(n_seeds, 'seed')}" if n_seeds > 1 else "")
        s.doc.p(f"Nothing swept besides `seed`: {what}." if n_seeds > 1 else "One configuration, one seed.")
        return
    swept_text = ", ".join(f"`{k}` ({s.roles.levels.get(k, runs[k].nunique())} levels: "
                           f"{', '.join(plots.ordered_labels(runs[k])[:8])}"
                           f"{', ...' if runs[k].nunique() > 8 else ''})" for k in keys)
    s.doc.p(f"Swept: {swept_text}; {plural(n_seeds, 'seed')}. A configuration is one combination of the swept "
            f"keys other than `seed`; statistics are over the seeds of its **completed** runs "
            f"(mean, 95% CI = t-based for tables, bootstrap for curve bands). Diverged and failed runs are "
            f"counted, not averaged.")


def section_problems(s: Section) -> None:
    """Runs that did not complete, each with its error text or diverged step, and other issues (``issues.csv``)."""
    problems = problem_runs(s.rs)
    s.csv(problems, "issues.csv")
    if problems.empty:
        return
    s.doc.h(2, "Failed, diverged and unfinished runs")
    s.doc.p(f"{plural(len(problems), 'issue')} (all in `issues.csv`):")
    s.doc.table(problems[["run", "issue"]].head(TOP * 2))


def section_settings(s: Section) -> None:
    """Which settings work: the best configuration, by how much, the ranked table, each key's effect."""
    s.say("aggregating over seeds")
    runs, keys, roles = s.runs, s.keys, s.roles
    s.metrics = [m for m in s.rs.metrics if runs[m].notna().any()]
    s.agg = aggregate(runs, keys, s.metrics) if s.metrics else pd.DataFrame()
    s.csv(runs, "runs.csv")
    s.csv(s.agg, "aggregate.csv")
    s.csv(s.rs.skipped, "skipped.csv")
    s.doc.h(2, "Which settings work")
    n_done = int((runs["status"].astype(str) == COMPLETED).sum())
    if n_done == 0:
        s.doc.p("No run completed, so there is nothing to rank: see the runs listed above for why.")
        return
    try:
        s.best = best_config(s.agg, keys, roles.select)
    except ValueError as e:
        s.doc.p(f"No best configuration yet: {e}.")
        return
    best = s.best
    select_note = "" if roles.select == roles.metric else \
        f" (you asked for `{roles.metric}`; the choice is made on validation: `{roles.select}`)"
    order = ranked(s.agg, keys, roles.select)
    order = order[order["n"] > 0]
    if len(order) == 1 and not keys:
        s.doc.p(f"`{roles.select}`: **{mean_ci(best['mean'], best['ci95'], best['n'])}**"
                f" over {plural(int(best['n']), 'completed run')}.")
    else:
        s.doc.p(f"Best configuration, chosen on **`{roles.select}`**{select_note} (lowest mean over seeds among "
                f"configurations with no diverged or failed run; never on the test bank): "
                f"{_config_text(best, keys)}: **{mean_ci(best['mean'], best['ci95'], best['n'])}**.")
    if len(order) > 1:
        second, worst = order.iloc[1], order.iloc[-1]
        s.doc.p(f"On `{roles.select}`, the runner-up {_config_text(second, keys)} is worse by "
                f"{fmt(float(second['mean'] - best['mean']))} and the worst ({_config_text(worst, keys)}) by "
                f"{fmt(float(worst['mean'] - best['mean']))}. These are the numbers the choice was made on, so they "
                f"flatter the best; how much better it is on the test bank is measured below, paired over seeds "
                f"and test tasks.")
    extra = [m for m in s.metrics if is_test_metric(m)][:3] + [m for m in ("ms_per_step",) if m in s.metrics]
    table = _ranked_table(s.agg, keys, roles, extra)
    s.csv(table, "ranked.csv")
    if len(table) > 1:
        s.doc.p(f"Configurations ranked on `{roles.select}` (top {min(TOP, len(table))} of {len(table)}; "
                f"all in `aggregate.csv`, tidy: one row per configuration and metric):")
    else:
        s.doc.p("Its metrics" + (" (mean and 95% CI over seeds" if best["n"] > 1 else " (one run") +
                "; all in `aggregate.csv`):")
    s.doc.table(shown_with_ci(table.head(TOP)))
    if keys and roles.metric in runs.columns:
        effects = key_effects(runs, keys, roles.metric)
        s.csv(effects, "key_effects.csv")
        s.doc.p(f"Each swept key on its own (mean `{roles.metric}` over completed runs at each level, "
                f"other keys pooled):")
        s.doc.table(effects)


def section_curves(s: Section) -> None:
    """Learning curves of the validation metric with bootstrap bands over seeds."""
    roles, keys = s.roles, s.keys
    fixed = [k for k in keys if k not in roles.curve_keys()]
    metric = "val_meta_objective" if roles.select == "last_val_meta_objective" else roles.select
    if metric not in set(s.rs.curves["metric"].astype(str)):
        metric = "val_meta_objective"
    s.doc.h(2, "Learning curves")
    s.say("learning curves: bootstrap CIs")
    bands = curve_bands(s.rs.curves, s.runs, keys, metric=metric, seed=plots.BOOT_SEED)
    s.csv(bands, "learning_curves.csv")
    several = s.runs["seed"].nunique() > 1 if "seed" in s.runs.columns else False
    band_text = ("bands: 95% bootstrap CI over seeds (all runs but diverged and failed ones, as far as each got)"
                 if several else "one seed per line, so no band")
    fig = plots.learning_curves(s.at_best(bands, fixed), metric, roles.hue, roles.col, roles.row,
                                title=f"{metric}: mean over seeds, 95% bootstrap CI{s.fixed_note(fixed)}"
                                if several else f"{metric}{s.fixed_note(fixed)}")
    by = [f"colour: `{roles.hue}`"] * bool(roles.hue) + [f"columns: `{roles.col}`"] * bool(roles.col) + \
        [f"rows: `{roles.row}`"] * bool(roles.row)
    s.figure(fig, "learning_curves",
             f"`{metric}` against outer step{'; ' + ', '.join(by) if by else ''}; "
             f"{band_text}{s.fixed_note(fixed)}.",
             "No learning curves: no run has logged `metrics.csv` rows yet.")


def section_heatmap(s: Section) -> None:
    """The final metric over two swept keys (only when two keys besides ``seed`` were swept)."""
    roles = s.roles
    if not (roles.heat_x and roles.heat_y and len(s.agg)):
        return  # nothing to show; said once in the swept line
    s.doc.h(2, "Heatmap")
    fixed = [k for k in s.keys if k not in (roles.heat_x, roles.heat_y)]
    rows = s.at_best(s.agg[s.agg["metric"] == roles.metric], fixed)
    best = s.best
    fig = plots.heatmap(rows, roles.heat_x, roles.heat_y, roles.metric,
                        best=(best[roles.heat_x], best[roles.heat_y]) if best is not None else None,
                        title=f"{roles.metric}, mean over seeds{s.fixed_note(fixed)}")
    s.figure(fig, "heatmap", f"Final `{roles.metric}` (mean over seeds) over `{roles.heat_x}` and "
                             f"`{roles.heat_y}`; the red box is the best configuration{s.fixed_note(fixed)}.",
             "No heatmap: no completed runs.")


def section_adaptation(s: Section) -> None:
    """Test MSE against adaptation steps for each initialisation, with the noise floor."""
    s.doc.h(2, "Adaptation")
    if not len(s.rs.adaptation):
        s.doc.p("No adaptation curves: no run has `adaptation.csv` (only completed runs are tested).")
        return
    keys, runs = s.keys, s.runs
    style = "algorithm.name" if "algorithm.name" in keys else None
    data = s.rs.adaptation.merge(runs[["run"] + keys + [c for c in ("noise_floor", "task.noise")
                                                        if c in runs.columns and c not in keys]], on="run")
    fixed = [k for k in keys if k != style]
    data = s.at_best(data, fixed)
    floor = data["noise_floor"].mean() if "noise_floor" in data.columns and data["noise_floor"].notna().any() \
        else (float(data["task.noise"].mean()) ** 2 if "task.noise" in data.columns else None)
    fig = plots.adaptation_curves(data, style=style, noise_floor=floor,
                                  title=f"test MSE after k steps{s.fixed_note(fixed)}")
    s.csv(data, "adaptation.csv")
    s.figure(fig, "adaptation", "Test MSE against adaptation steps k for each initialisation"
             + (" and algorithm" if style else "") + "; 95% CI over seeds (over test tasks for a single run); "
             + f"dashed: the noise floor{s.fixed_note(fixed)}.", "No adaptation curves.")


def section_fits(s: Section) -> None:
    """The best run adapted to the first tasks of its test bank."""
    s.doc.h(2, "The best run's fits")
    if s.best is None:
        s.doc.p("No fits: there is no best configuration.")
        return
    runs, select = s.runs, s.roles.select
    cand = runs[config_mask(runs, s.keys, s.best) & (runs["status"].astype(str) == COMPLETED)]
    cand = cand[np.isfinite(cand[select].astype(float))].sort_values(select)
    missing = "No fits: the best run has no `params.npz`."
    try:
        fig = plots.best_fits(Path(cand.iloc[0]["path"])) if len(cand) else None
    except rundir.RestoreError as e:  # a run this version cannot rebuild: say why
        fig, missing = None, f"No fits: {e}."
    s.figure(fig, "best_fits",
             f"Run `{cand.iloc[0]['run'] if len(cand) else ''}` (lowest `{select}` in the best "
             f"configuration) adapted to the first four tasks of its test bank: data as blue crosses, each inner "
             f"step's prediction in red, fading in.", missing)


def section_cost(s: Section) -> None:
    """Milliseconds per outer step and wall time, one point per run."""
    s.doc.h(2, "Cost")
    roles = s.roles
    x, hue = roles.hue, (roles.col if roles.col != roles.hue else None)
    fig = plots.cost(s.runs, x, hue)
    by = (f" by `{x}`" if x else "") + (f" and `{hue}`" if hue else "")
    s.figure(fig, "cost", f"Milliseconds per outer step and wall time{by}: each point is one run (other keys "
                          f"pooled), the bar its group's median. Timings vary with machine load: read an "
                          f"effect only where the points separate.", "No cost figure: no summaries with timings.")
    if "ms_per_step" in s.metrics:
        s.csv(s.agg[s.agg["metric"].isin(["ms_per_step", "wall_s"])], "cost.csv")


def write_report(rs: RunSet, out_dir: Path, roles: Roles, *, sources: list[str], command: str = "",
                 progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write the report for a loaded :class:`RunSet` into ``out_dir``; returns the written files by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = Section(rs, roles, out_dir, progress or (lambda msg: None))
    section_loaded(s, sources, command)
    section_problems(s)
    for section in SECTIONS:
        section(s)
    s.say("writing report.md and report.html")
    atomic_write(out_dir / "report.md", s.doc.markdown())
    atomic_write(out_dir / "report.html", s.doc.html(out_dir, report_title(sources, rs.runs)))
    s.written["report.md"] = out_dir / "report.md"
    s.written["report.html"] = out_dir / "report.html"
    return s.written


# The sections after the header, in order; each takes the shared :class:`Section`.
SECTIONS: tuple[Callable[[Section], None], ...] = (
    section_settings, section_paired, section_curves, section_heatmap, section_adaptation, section_fits, section_cost)
