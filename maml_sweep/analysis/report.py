"""The sweep report: tables (CSV), figures (PNG + PDF), ``report.md`` and a self-contained ``report.html``.

It answers which settings work (ranked configurations, per-key effects, heatmap, curves), by how
much (differences in mean over seeds) and how sure we are (95% CIs, n, diverged counts).
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import rundir
from . import plots
from .aggregate import aggregate, best_config, config_mask, curve_bands, is_test_metric, ranked, t975
from ..rundir import COMPLETED
from .load import RunSet
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


def welch_difference(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """(b.mean - a.mean, 95% CI half-width) for two aggregate rows (mean, std, n), Welch's t."""
    diff = float(b["mean"] - a["mean"])
    if a["n"] < 2 or b["n"] < 2:
        return diff, math.nan
    va, vb = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, 0.0
    df = (va + vb) ** 2 / (va ** 2 / (a["n"] - 1) + vb ** 2 / (b["n"] - 1))
    return diff, t975(max(1, int(math.floor(df)))) * se


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
                body.append(frame.to_html(index=False, escape=True, border=0, classes="t"))
            elif b[0] == "fig":
                data = base64.b64encode((out_dir / f"{b[1]}.png").read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{_inline(b[2])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
                 "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
                 "table.t td,table.t th{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}"
                 "img{max-width:100%}figcaption{font-size:0.85em;color:#555}code{background:#f3f3f3}")
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

def _config_text(config, keys: list[str]) -> str:
    return ", ".join(f"`{k}={plots.label(config[k])}`" for k in keys) or "(the only configuration)"


def _at_best(frame: pd.DataFrame, best, keys: list[str]) -> pd.DataFrame:
    """Rows of ``frame`` whose ``keys`` equal the best configuration's."""
    return frame[config_mask(frame, keys, best)] if (best is not None and keys) else frame


def _ranked_table(agg: pd.DataFrame, keys: list[str], roles: Roles, extra: list[str]) -> pd.DataFrame:
    """Configurations best first on ``roles.select``, with ``roles.metric`` and other metrics as mean ± CI."""
    order = ranked(agg, keys, roles.select)
    table = order[keys].copy() if keys else pd.DataFrame(index=order.index)
    shown = [roles.select] + [m for m in [roles.metric] + extra if m != roles.select]
    for m in dict.fromkeys(shown):
        rows = agg[agg["metric"] == m].set_index(keys)[["mean", "ci95"]] if keys else \
            agg[agg["metric"] == m][["mean", "ci95"]].reset_index(drop=True)
        if keys:
            rows = rows.reindex(pd.MultiIndex.from_frame(order[keys]) if len(keys) > 1 else order[keys[0]])
        table[m] = rows["mean"].to_numpy()
        table[f"{m} ±95%CI"] = rows["ci95"].to_numpy()
    table["n (completed)"] = order["n"].to_numpy()
    table["diverged+failed / runs"] = [f"{d}/{r}" for d, r in zip(order["n_diverged"] + order["n_failed"],
                                                                   order["n_runs"])]
    return table


def write_report(rs: RunSet, out_dir: Path, roles: Roles, *, sources: list[str], command: str = "",
                 progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write the report for a loaded :class:`RunSet` into ``out_dir``; returns the written files by name."""
    say = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, keys = rs.runs, rs.group_keys
    written: dict[str, Path] = {}
    doc = Doc()
    title = f"Sweep report: {', '.join(sorted(runs['sweep'].unique()))}"
    doc.h(1, title)
    if command:
        doc.p(f"Made by `{command}`.")

    # What was loaded.
    counts = runs["status"].value_counts()
    status_text = ", ".join(f"{n} {s}" for s, n in counts.items())
    doc.p(f"**{len(runs)} runs** loaded from {', '.join(f'`{s}`' for s in sources)}: {status_text}"
          + (f"; **{len(rs.skipped)} skipped**." if len(rs.skipped) else "."))
    notes = [f"{n} skipped: {reason}" for reason, n in rs.skipped["reason"].value_counts().items()] if len(rs.skipped) else []
    if len(rs.issues):
        notes += [f"{n} run(s): {issue}" for issue, n in rs.issues["issue"].value_counts().items()]
    doc.items(notes)
    swept_text = ", ".join(f"`{k}` ({roles.levels.get(k, runs[k].nunique())} levels: "
                           f"{', '.join(plots.ordered_labels(runs[k])[:8])}"
                           f"{', ...' if runs[k].nunique() > 8 else ''})" for k in keys) or "none"
    n_seeds = runs["seed"].nunique() if "seed" in runs.columns else 1
    doc.p(f"Swept: {swept_text}; {n_seeds} seed(s). A configuration is one combination of the swept "
          f"keys other than `seed`; statistics are over the seeds of its **completed** runs "
          f"(mean, 95% CI = t-based for tables, bootstrap for curve bands). Diverged and failed runs are "
          f"counted, not averaged.")

    # Tables.
    say("aggregating over seeds")
    metrics = [m for m in rs.metrics if runs[m].notna().any()]
    agg = aggregate(runs, keys, metrics) if metrics else pd.DataFrame()
    best = None
    doc.h(2, "Which settings work")
    if len(agg):
        try:
            best = best_config(agg, keys, roles.select)
        except ValueError as e:
            doc.p(f"No best configuration yet: {e}.")
    for name, frame in (("runs", runs), ("aggregate", agg), ("skipped", rs.skipped), ("issues", rs.issues)):
        write_csv(frame, out_dir / f"{name}.csv")
        written[f"{name}.csv"] = out_dir / f"{name}.csv"

    if best is not None:
        select_note = "" if roles.select == roles.metric else \
            f" (you asked for `{roles.metric}`; the choice is made on validation: `{roles.select}`)"
        doc.p(f"Best configuration, chosen on **`{roles.select}`**{select_note} (lowest mean over seeds among "
              f"configurations with no diverged or failed run; never on the test bank): "
              f"{_config_text(best, keys)}: **{fmt(best['mean'])} ± {fmt(best['ci95'])}** (95% CI, n={best['n']}).")
        order = ranked(agg, keys, roles.select)
        order = order[order["n"] > 0]
        if len(order) > 1:
            second, worst = order.iloc[1], order.iloc[-1]
            diff, ci = welch_difference(best, second)
            sure = ("the difference is clear at 95%" if np.isfinite(ci) and diff - ci > 0 else
                    "the difference is within noise at 95%: run more seeds to separate them" if np.isfinite(ci)
                    else "too few seeds for a CI on the difference")
            doc.p(f"By how much: the runner-up {_config_text(second, keys)} is worse by **{fmt(diff)}"
                  f"{' ± ' + fmt(ci) if np.isfinite(ci) else ''}** (Welch 95% CI; {sure}); the worst "
                  f"configuration ({_config_text(worst, keys)}) by {fmt(float(worst['mean'] - best['mean']))}.")
        test_cols = [m for m in metrics if is_test_metric(m)]
        extra = test_cols[:3] + [m for m in ("ms_per_step",) if m in metrics]
        table = _ranked_table(agg, keys, roles, extra)
        doc.p(f"Configurations ranked on `{roles.select}` (top {min(TOP, len(table))} of {len(table)}; "
              f"all in `aggregate.csv`, tidy: one row per configuration and metric):")
        doc.table(table.head(TOP))
        write_csv(table, out_dir / "ranked.csv")
        written["ranked.csv"] = out_dir / "ranked.csv"
        if keys and roles.metric in runs.columns:
            effects = key_effects(runs, keys, roles.metric)
            write_csv(effects, out_dir / "key_effects.csv")
            doc.p(f"Each swept key on its own (mean `{roles.metric}` over completed runs at each level, "
                  f"other keys pooled):")
            doc.table(effects)

    # Figures.
    fixed_curve = [k for k in keys if k not in roles.curve_keys()]
    fixed_note = lambda fixed: ("; other keys at the best configuration's values: " +  # noqa: E731
                                ", ".join(f"{k}={plots.label(best[k])}" for k in fixed)) if fixed and best is not None else ""
    curve_metric = "val_meta_objective" if roles.select in ("val_meta_objective", "last_val_meta_objective") \
        else roles.select
    if curve_metric not in set(rs.curves["metric"].astype(str)):
        curve_metric = "val_meta_objective"
    doc.h(2, "Learning curves")
    say("learning curves: bootstrap CIs")
    bands = curve_bands(rs.curves, runs, keys, metric=curve_metric, seed=plots.BOOT_SEED)
    write_csv(bands, out_dir / "learning_curves.csv")
    shown = _at_best(bands, best, fixed_curve)
    fig = plots.learning_curves(shown, curve_metric, roles.hue, roles.col, roles.row,
                                title=f"{curve_metric}: mean over seeds, 95% bootstrap CI{fixed_note(fixed_curve)}")
    _emit(doc, fig, out_dir, "learning_curves", written, say,
          f"Validation meta-objective against outer step; hue `{roles.hue}`"
          + (f", columns `{roles.col}`" if roles.col else "") + (f", rows `{roles.row}`" if roles.row else "")
          + f"; bands: 95% bootstrap CI over seeds (all runs but diverged and failed ones, as far as each got){fixed_note(fixed_curve)}.",
          "No learning curves: no run has logged `metrics.csv` rows yet.")

    doc.h(2, "Heatmap")
    if roles.heat_x and roles.heat_y and len(agg):
        fixed_heat = [k for k in keys if k not in (roles.heat_x, roles.heat_y)]
        rows = _at_best(agg[agg["metric"] == roles.metric], best, fixed_heat)
        fig = plots.heatmap(rows, roles.heat_x, roles.heat_y, roles.metric,
                            best=(best[roles.heat_x], best[roles.heat_y]) if best is not None else None,
                            title=f"{roles.metric}, mean over seeds{fixed_note(fixed_heat)}")
        _emit(doc, fig, out_dir, "heatmap", written, say,
              f"Final `{roles.metric}` (mean over seeds) over `{roles.heat_x}` and `{roles.heat_y}`; "
              f"the red box is the best configuration{fixed_note(fixed_heat)}.", "No heatmap: no completed runs.")
    else:
        doc.p("No heatmap: it needs two swept keys besides `seed` (or `--heatmap X,Y`).")

    doc.h(2, "Adaptation")
    if len(rs.adaptation):
        style = "algorithm.name" if "algorithm.name" in keys else None
        data = rs.adaptation.merge(runs[["run"] + keys + [c for c in ("noise_floor", "task.noise")
                                                         if c in runs.columns and c not in keys]], on="run")
        fixed_ad = [k for k in keys if k != style]
        data = _at_best(data, best, fixed_ad)
        floor = data["noise_floor"].mean() if "noise_floor" in data.columns and data["noise_floor"].notna().any() \
            else (float(data["task.noise"].mean()) ** 2 if "task.noise" in data.columns else None)
        fig = plots.adaptation_curves(data, style=style, noise_floor=floor,
                                      title=f"test MSE after k steps{fixed_note(fixed_ad)}")
        write_csv(data, out_dir / "adaptation.csv")
        _emit(doc, fig, out_dir, "adaptation", written, say,
              "Test MSE against adaptation steps k for each initialisation"
              + (" and algorithm" if style else "") + "; 95% CI over seeds; dashed: the noise floor"
              + f"{fixed_note(fixed_ad)}.", "No adaptation curves.")
    else:
        doc.p("No adaptation curves: no run has `adaptation.csv`.")

    doc.h(2, "The best run's fits")
    if best is not None:
        cand = runs[config_mask(runs, keys, best) & (runs["status"].astype(str) == COMPLETED)]
        cand = cand[np.isfinite(cand[roles.select].astype(float))].sort_values(roles.select)
        missing = "No fits: the best run has no `params.npz`."
        try:
            fig = plots.best_fits(Path(cand.iloc[0]["path"])) if len(cand) else None
        except rundir.RestoreError as e:
            fig, missing = None, f"No fits: {e}."
        _emit(doc, fig, out_dir, "best_fits", written, say,
              f"Run `{cand.iloc[0]['run'] if len(cand) else ''}` (lowest `{roles.select}` in the best "
              f"configuration) adapted to the first four tasks of its test bank: data as blue crosses, each inner step's "
              f"prediction in red, fading in.", missing)
    else:
        doc.p("No fits: there is no best configuration.")

    doc.h(2, "Cost")
    cost_x = roles.hue
    fig = plots.cost(runs, cost_x, roles.col if roles.col != cost_x else None,
                     title="mean over runs, 95% bootstrap CI")
    _emit(doc, fig, out_dir, "cost", written, say,
          f"Milliseconds per outer step and wall time per run by `{cost_x}`"
          + (f" and `{roles.col}`" if roles.col and roles.col != cost_x else "")
          + " (other keys pooled; all runs with timings); 95% bootstrap CI over runs.",
          "No cost figure: no summaries with timings.")
    if "ms_per_step" in metrics:
        cost_rows = agg[agg["metric"].isin(["ms_per_step", "wall_s"])]
        write_csv(cost_rows, out_dir / "cost.csv")

    say("writing report.md and report.html")
    atomic_write(out_dir / "report.md", doc.markdown())
    atomic_write(out_dir / "report.html", doc.html(out_dir, title))
    written["report.md"] = out_dir / "report.md"
    written["report.html"] = out_dir / "report.html"
    return written


def _emit(doc: Doc, fig, out_dir: Path, name: str, written: dict, say, caption: str, missing: str) -> None:
    if fig is None:
        doc.p(missing)
        return
    say(f"figure {name}")
    for path in plots.save_figure(fig, out_dir, name):
        written[path.name] = path
    doc.figure(name, caption)
