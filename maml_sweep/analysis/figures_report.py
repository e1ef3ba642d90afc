"""The report's figures, chosen by the kind of sweep (:data:`maml_sweep.analysis.design.KINDS`).

Which configurations a figure shows (:func:`shown_configs`): the one configuration (``single``); every
configuration (``overlay``); per condition, the best configuration's line through the hyperparameter
with the most levels (``grid``); per condition, each method at its own best hyperparameters
(``algorithms``); the five best trials (``search``). Conditions are panels, never lines.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import components, rundir, stats
from ..rundir import COMPLETED
from . import panels, plots
from .aggregate import curve_bands
from .context import ReportContext
from .document import code, num
from .paired import paired_rows
from .selection import conditions_of

MAX_LINES = 12  # lines in one panel of an overlay; more configurations: the best ones
SEARCH_TOP = 5


def shown_configs(c: ReportContext) -> pd.DataFrame:
    """Rows of ``c.order`` to draw, with ``line`` (legend label) and ``panel`` (condition label)."""
    d, out = c.design, []
    for _, part in conditions_of(c.order, d):
        ok = part[part["n"] > 0]
        if ok.empty:
            continue
        best = ok[ok["rank"] == 1]
        best = best.iloc[0] if len(best) else ok.iloc[0]
        if d.kind == "grid" and d.hyper:
            line_key = max(d.hyper, key=lambda k: c.runs[k].astype(str).nunique())
            fixed = [k for k in d.chosen if k != line_key]
            sel = ok[np.logical_and.reduce([ok[k].astype(str) == str(best[k]) for k in fixed])] if fixed else ok
            sel = sel.sort_values(line_key, kind="stable")  # an ordered palette follows the values
            sel = sel.assign(line=[c.text(r, [line_key]) for _, r in sel.iterrows()])
        elif d.kind == "algorithms":
            method = d.methods[0]
            sel = ok.sort_values("rank", na_position="last").drop_duplicates(method)
            sel = sel.assign(line=[plots.label(v) for v in sel[method]])
        elif d.kind == "search":
            sel = ok.sort_values("rank", na_position="last").head(SEARCH_TOP)
            sel = sel.assign(line=[f"#{i + 1}: {c.config_text(r)}" for i, (_, r) in enumerate(sel.iterrows())])
        else:
            sel = ok.sort_values("rank", na_position="last").head(MAX_LINES)
            sel = sel.assign(line=[c.config_text(r) for _, r in sel.iterrows()])
        out.append(sel.assign(panel=c.condition_text(best)))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def colour_map(c: ReportContext, shown: pd.DataFrame) -> dict:
    """One colour per line label, the same in every figure; methods keep their colour across conditions."""
    d = c.design
    if d.kind == "algorithms":
        levels = plots.ordered_labels(c.runs[d.methods[0]])
        return panels.colours([lv for lv in levels if lv in set(shown["line"])])
    labels = list(dict.fromkeys(shown["line"]))
    numeric = d.kind == "grid"
    return panels.colours(labels, numeric=numeric)


def _legend_title(c: ReportContext) -> str:
    d = c.design
    if d.kind == "algorithms":
        return c.names[d.methods[0]]
    if d.kind == "grid" and d.hyper:
        return max(d.hyper, key=lambda k: c.runs[k].astype(str).nunique())
    return "configuration"


def _merge(c: ReportContext, frame: pd.DataFrame, shown: pd.DataFrame) -> pd.DataFrame:
    keys = c.design.keys
    if not keys:
        return frame.assign(line=shown["line"].iloc[0], panel=shown["panel"].iloc[0])
    left = frame.assign(**{f"_{i}": frame[k].astype(str) for i, k in enumerate(keys)})
    right = shown[keys + ["line", "panel"]].assign(**{f"_{i}": shown[k].astype(str) for i, k in enumerate(keys)})
    on = [f"_{i}" for i in range(len(keys))]
    return left.merge(right.drop(columns=keys), on=on).drop(columns=on)


def figure_curves(c: ReportContext, shown: pd.DataFrame, colour: dict) -> None:
    metric = c.select if c.select in set(c.rs.curves["metric"].astype(str)) else "val_meta_objective"
    bands = curve_bands(c.rs.curves, c.runs, c.design.keys, metric=metric, seed=stats.BOOT_SEED)
    c.csv(bands, "learning_curves.csv")
    data = _merge(c, bands, shown) if len(bands) else bands
    fig = panels.line_panels(data, x="step", y="mean", line="line", panel="panel" if c.design.conditions else None,
                             colour=colour, xlabel="outer step", ylabel=f"{metric} (validation)",
                             band=("ci95_low", "ci95_high"), legend_title=_legend_title(c)) if len(data) else None
    c.figure(fig, "learning_curves",
             f"Validation {metric} against outer step: mean over seeds, band = 95% bootstrap CI over seeds "
             f"(diverged and failed runs left out); {_what(c)}.", "No learning curves: no run logged metrics.")


def _what(c: ReportContext) -> str:
    d = c.design
    per = "one panel per condition; " if d.conditions else ""
    return per + {
        "single": "the one configuration",
        "overlay": "one line per configuration",
        "grid": "lines through the hyperparameter with most levels, the others at each condition's best",
        "algorithms": "one line per method at its best hyperparameters in the condition",
        "search": f"the {SEARCH_TOP} best trials on validation",
    }[d.kind]


def own_init(adaptation: pd.DataFrame) -> pd.DataFrame:
    """Each run's own initialisation's rows (the first init in its adaptation.csv)."""
    first = adaptation.groupby("run", sort=False)["init"].first()
    return adaptation[adaptation["init"].astype(str) == adaptation["run"].map(first).astype(str)]


def figure_adaptation(c: ReportContext, shown: pd.DataFrame, colour: dict) -> None:
    if not len(c.rs.adaptation):
        c.doc.p("No adaptation curves: no run has `adaptation.csv` (only completed runs are tested).")
        return
    runs = c.runs[c.runs["status"].astype(str) == COMPLETED]
    cols = ["run"] + c.design.keys
    extra = [x for x in ("algorithm.inner_steps", "noise_floor") if x in runs.columns and x not in cols]
    data = c.rs.adaptation.merge(runs[cols + extra], on="run")
    single = c.design.kind == "single"
    if not single:
        data = own_init(data)
    data = _merge(c, data, shown)
    if data.empty:
        c.doc.p("No adaptation curves for the configurations shown.")
        return
    if single:
        data = data.assign(line=data["init"].astype(str))
        colour = panels.colours(list(dict.fromkeys(data["line"])))
    agg = data.groupby(["panel", "line", "k"], sort=False).agg(
        mse=("mse_mean", "mean"), sd=("mse_mean", "std"), n=("mse_mean", "size"),
        low1=("mse_ci95_low", "first"), high1=("mse_ci95_high", "first")).reset_index()
    from .intervals import t_quantile

    half = np.array([t_quantile(n - 1) * s / np.sqrt(n) if n >= 3 else np.nan for n, s in zip(agg["n"], agg["sd"])])
    agg["low"] = np.where(agg["n"] == 1, agg["low1"], agg["mse"] - half)
    agg["high"] = np.where(agg["n"] == 1, agg["high1"], agg["mse"] + half)
    marks = None
    if "algorithm.inner_steps" in data.columns and not single:
        marks = data.groupby("line")["algorithm.inner_steps"].first().to_dict()
    floor = float(data["noise_floor"].mean()) if "noise_floor" in data.columns else np.nan
    c.csv(agg.drop(columns=["low1", "high1"]), "adaptation.csv")
    fig = panels.line_panels(agg, x="k", y="mse", line="line", panel="panel" if c.design.conditions else None,
                             colour=colour, xlabel="adaptation steps k on a new task", ylabel="test MSE",
                             band=("low", "high"), marks=marks, hline=(floor, "noise floor"),
                             legend_title="initialisation" if single else _legend_title(c))
    band = ("band: the test tasks' 95% CI" if data.groupby(["line", "k"]).size().max() == 1
            else "band: 95% t-interval over seeds (3 or more)")
    c.figure(fig, "adaptation",
             f"Test MSE against the number of adaptation steps k, mean over the test bank's tasks (and seeds); "
             f"{band}; " + ("each initialisation of the run (meta-learned, pretrained, from scratch)" if single else
                            f"{_what(c)}; dotted: the inner steps each was trained with")
             + (f"; dashed: the noise floor ({floor:.3g}) where it is inside the axis" if np.isfinite(floor) else "")
             + ".", "No adaptation curves.")


def figure_ecdf(c: ReportContext, shown: pd.DataFrame, colour: dict) -> None:
    scores = {}
    for _, r in shown.iterrows():
        label = r["line"] if not c.design.conditions else f"{r['line']} | {r['panel']}"
        by_k = {k: x for k in c.steps if (x := c.score_matrix(r, k)) is not None}
        if by_k:
            scores[label] = by_k
    data = panels.ecdf_frame(scores)
    if data.empty:
        c.doc.p("No ECDF: no run has `test_mse.npz`.")
        return
    col = colour if not c.design.conditions else panels.colours(list(scores))
    fig = panels.line_panels(data, x="mse", y="fraction", line="line", panel="panel", colour=col,
                             xlabel="test MSE of one task", ylabel="fraction of (seed, task) pairs <= x",
                             logx=panels.log_axis(data["mse"]), steps=True, logy=False, legend_title=_legend_title(c))
    c.figure(fig, "ecdf", f"Empirical CDF of the per-task test MSE over every seed and test task, one panel per "
                          f"report step; higher and further left is better; a curve that stops short of 1 has tasks "
                          f"that blow up (non-finite); {_what(c)}.", "No ECDF.")


def figure_forest(c: ReportContext, colour: dict) -> None:
    rows = []
    for _, part in conditions_of(c.order, c.design):
        best = part[part["rank"] == 1]
        others = part[part["rank"] > 1]
        if c.design.kind == "algorithms":
            method = c.design.methods[0]
            others = others[others[method].astype(str) != str(best.iloc[0][method])] if len(best) else others
            others = others.drop_duplicates(method)
        others = others.head(8)
        if best.empty or others.empty:
            continue
        p = paired_rows(c.runs, c.design.keys, best.iloc[0], others, c.steps, scores=c.scores)
        if len(p):
            p["label"] = [(plots.label(r[c.design.methods[0]]) if c.design.kind == "algorithms" else
                           c.config_text(r)) + (f" | {c.condition_text(r)}" if c.design.conditions else "")
                          for _, r in p.iterrows()]
            rows.append(p)
    if not rows:
        return
    data = pd.concat(rows, ignore_index=True)
    col = ({lab: colour.get(lab.split(" | ")[0], "C0") for lab in data["label"]}
           if c.design.kind == "algorithms" else None)
    fig = panels.forest(data, "label", col)
    c.figure(fig, "forest", "Paired differences in mean test MSE against the best configuration of the same "
                            "condition (positive: worse than the best), 95% intervals over seeds and test tasks; "
                            "hollow: no interval (fewer than 3 common seeds). Up to 8 configurations per condition, "
                            "in the order of the validation ranking.", "")


def figure_heatmaps(c: ReportContext) -> None:
    d = c.design
    if not d.hyper or c.order.empty:
        return
    by_levels = sorted(d.hyper, key=lambda k: -c.runs[k].astype(str).nunique())
    x, y = by_levels[0], (by_levels[1] if len(by_levels) > 1 else None)
    cells = []
    for _, part in conditions_of(c.order, d):
        best = part[part["rank"] == 1]
        if best.empty:
            continue
        fixed = [k for k in d.chosen if k not in (x, y)]
        sel = part[np.logical_and.reduce([part[k].astype(str) == str(best.iloc[0][k]) for k in fixed])] \
            if fixed else part
        cells.append(sel.assign(panel=c.condition_text(best.iloc[0]), best=sel["rank"] == 1))
    if not cells:
        return
    data = pd.concat(cells, ignore_index=True)
    data = data[data["n"] > 0]
    fig = plots.heatmaps(data, x, y, "panel" if d.conditions else None, c.select)
    held = [k for k in d.chosen if k not in (x, y)]
    c.figure(fig, "heatmap", f"Mean {c.select} over seeds for each {x}" + (f" and {y}" if y else "")
             + " (± the 95% t-interval over seeds, n seeds); one panel per condition, coloured relative to that "
               "condition's best (red box)" + (f"; {', '.join(held)} at each condition's best" if held else "") + ".",
             "")


def figure_fits(c: ReportContext) -> None:
    if c.best.empty or c.best["note"].astype(str).ne("").all():
        return
    b = c.best[c.best["note"].astype(str) == ""].iloc[0]
    runs = c.runs_of(b)
    runs = runs[(runs["status"].astype(str) == COMPLETED) & np.isfinite(runs[c.select].astype(float))]
    if runs.empty:
        return
    run = runs.sort_values(c.select).iloc[0]
    missing = "No fits: the best run has no `params.npz`."
    try:
        fig = plots.best_fits(run["path"])
    except (components.RestoreError, rundir.DamagedFile, rundir.RunDirError) as e:
        fig, missing = None, f"No fits: {e}."
    c.figure(fig, "best_fits", f"Run {run['run']} (lowest {c.select} of the best configuration"
             + (f" for {c.condition_text(b)}" if c.design.conditions else "") + ") adapted to the first four tasks "
             "of its test bank: data as blue crosses, each inner step's prediction in red, fading in.", missing)


def figure_cost(c: ReportContext) -> None:
    d = c.design
    x = next((k for k in d.methods + d.hyper if c.runs[k].astype(str).nunique() <= 12), None)
    hue = d.conditions[0] if d.conditions else None
    fig = plots.cost(c.runs, x, hue)
    c.figure(fig, "cost", "Milliseconds per outer step and wall time per run" + (f" by {x}" if x else "")
             + (f" and {hue}" if hue else "") + ": each point is one run, the bar its group's median. Timings "
             "vary with machine load: read an effect only where the points separate.", "")


def figures_search(c: ReportContext) -> None:
    from . import search

    d = c.design
    params = d.hyper + d.methods
    trials = search.trials_frame(c.runs, params, c.select)
    c.csv(trials, "trials.csv")
    c.figure(search.history_figure(trials, c.select), "search_history",
             f"{c.select} of each trial in the order started, with the best so far; pruned trials marked; "
             f"non-finite ones at the top edge.", "No search history.")
    c.figure(search.slices_figure(trials, params, c.select), "search_slices",
             f"{c.select} against each searched parameter (log axis where the values span more than 20x); colour: "
             f"trial number; the best trial marked.", "No slices.")
    imp = search.importance(trials, params, c.select)
    c.csv(imp, "importance.csv")
    if len(imp):
        c.doc.p("Parameter importance for " + code(c.select) + " (" + str(imp["evaluator"].iloc[0]) + "): "
                + ", ".join(f"{code(p)} {num(v)}" for p, v in zip(imp["param"], imp["importance"])) + ".")


def section_figures(c: ReportContext) -> None:
    """The figures that fit the sweep's kind, each with its caption."""
    if c.order.empty:
        return
    c.doc.h(2, "Figures")
    shown = shown_configs(c)
    if shown.empty:
        c.doc.p("No figures: no configuration has a completed run.")
        return
    colour = colour_map(c, shown)
    kind = c.design.kind
    if kind == "search":
        figures_search(c)
    if kind == "grid":
        figure_heatmaps(c)
    figure_curves(c, shown, colour)
    figure_adaptation(c, shown, colour)
    if kind != "single":
        figure_forest(c, colour)
    figure_ecdf(c, shown, colour)
    figure_fits(c)
    if kind != "search":
        figure_cost(c)
