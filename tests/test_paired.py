"""Paired comparisons on the shared test bank, recomputed by hand on synthetic sweeps."""
import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import base_config, write_run

from maml_sweep import evaluate
from maml_sweep.analysis import aggregate, intervals, load_runs
from maml_sweep.analysis.paired import paired_rows, report_steps
from maml_sweep.analysis.report_cli import main as report_main

T, K = 40, 11


def task_mse(seed: int, offset: float) -> np.ndarray:
    """Per-task MSE (T, K): a task difficulty shared by every run (the same test bank), a seed
    effect, and noise; ``offset`` shifts the whole configuration."""
    difficulty = np.random.default_rng(100).gamma(2.0, 0.5, size=(T, 1))
    rng = np.random.default_rng(seed + int(1000 * offset))
    return difficulty * np.exp(-0.1 * np.arange(K)) + offset + 0.05 * seed + rng.normal(0, 0.02, size=(T, K))


def write_sweep(folder, inner_lr: float, offset: float, val: float, seeds=(0, 1, 2), blowup=None, algorithm=None):
    mats = {}
    for seed in seeds:
        config = base_config(seed)
        config["algorithm"]["inner_lr"] = inner_lr
        if algorithm:
            config["algorithm"]["name"] = algorithm
        run_dir = folder / str(seed)
        mse = task_mse(seed, offset)
        if blowup is not None and seed == 0:
            mse[blowup, 5:] = [5e3, 1e5, 1e8, np.inf, np.inf, np.nan]
        mats[seed] = mse
        write_run(run_dir, config, [f"algorithm={algorithm}"] * bool(algorithm) + [f"algorithm.inner_lr={inner_lr}",
                                                                                  f"seed={seed}"], metrics=[])
        keys = evaluate.record(run_dir, {"trained": mse, "scratch": mse + 1}, "trained", [1, 5, 10], 5)
        from maml_sweep import rundir
        rundir.write_json(run_dir / rundir.SUMMARY, {"status": "completed", "steps": 10, "outer_steps": 10,
                                                     "val_mse": val + 0.01 * seed, **keys})
    return mats


def _paired(rs):
    from maml_sweep.analysis.design import experiment_design
    from maml_sweep.analysis.selection import ranked_within
    design = experiment_design(rs)
    order = ranked_within(aggregate(rs.runs, design.keys, ["val_mse"]), design, "val_mse")
    return paired_rows(rs.runs, design.keys, order.iloc[0], order.iloc[1:], report_steps(rs.runs))


def test_paired_difference_equals_a_hand_computation_on_two_sweeps(tmp_path):
    best = write_sweep(tmp_path / "a", 0.1, 0.0, val=0.5)
    other = write_sweep(tmp_path / "b", 0.3, 0.2, val=0.9)
    rs = load_runs([tmp_path / "a", tmp_path / "b"])
    table = _paired(rs)
    assert report_steps(rs.runs) == [1, 5, 10]
    assert list(table["k"]) == [1, 5, 10] and set(table["algorithm.inner_lr"]) == {0.3}
    assert (table["pairing"] == "seeds and tasks").all() and (table["n_seeds"] == 3).all()
    for _, row in table.iterrows():
        k = row["k"]
        a = np.stack([other[s][:, k] for s in (0, 1, 2)])
        b = np.stack([best[s][:, k] for s in (0, 1, 2)])
        assert row["mean_diff"] == pytest.approx((a - b).mean(), rel=1e-12)
        by_hand = intervals.two_way_interval(a - b)
        assert (row["mean_diff_low"], row["mean_diff_high"]) == pytest.approx((by_hand.low, by_hand.high), rel=1e-12)
        assert 0 < row["mean_diff_low"] < row["mean_diff"] < row["mean_diff_high"]
        medians = np.mean([np.median(a[s]) - np.median(b[s]) for s in range(3)])
        assert row["median_diff"] == pytest.approx(medians)  # a difference of medians (mean over seeds)
        assert row["p_improve"] == pytest.approx(np.mean(a < b))


def test_different_seeds_on_one_bank_give_an_estimate_and_no_interval(tmp_path):
    write_sweep(tmp_path / "a", 0.1, 0.0, val=0.5)
    write_sweep(tmp_path / "b", 0.3, 0.2, val=0.9, seeds=(3, 4))  # no common seed
    table = _paired(load_runs([tmp_path / "a", tmp_path / "b"]))
    assert (table["pairing"] == "unpaired (no common seeds): no interval").all()
    assert table["mean_diff_low"].isna().all()
    assert table["mean_diff"].iloc[0] == pytest.approx(0.2 + 0.05 * 3.5 - 0.05, abs=0.02)


def test_different_test_banks_are_never_compared(tmp_path):
    from maml_sweep.analysis.paired import compare
    a = {0: (np.ones((5, 3)), (("task.bins", "3"),))}
    b = {0: (np.ones((5, 3)), (("task.bins", "6"),))}
    assert compare(a, b, 1) is None


@pytest.mark.slow  # a whole report with figures: ~3 s
def test_a_blown_up_task_shows_in_the_report(tmp_path):
    write_sweep(tmp_path / "a", 0.1, 0.0, val=0.5)
    write_sweep(tmp_path / "b", 0.3, 0.2, val=0.9, blowup=7)
    rs = load_runs([tmp_path / "a", tmp_path / "b"])
    runs = rs.runs.set_index("algorithm.inner_lr")
    blown = runs.loc[0.3].sort_values("seed")
    assert list(blown["test_blowup_k5"]) == [1 / T, 0, 0] and list(blown["test_blowup_k10"]) == [1 / T, 0, 0]
    assert np.isnan(blown["test_mse_k10"].iloc[0])  # inf: summary.json stores null, the blow-up says why
    assert blown["test_mse_k5"].iloc[0] > 100 and np.isfinite(blown["test_median_k10"].iloc[0])
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "-q"]) == 0
    paired = pd.read_csv(out / "paired.csv")
    k10 = paired[paired["k"] == 10].iloc[0]
    assert np.isinf(k10["mean_diff"]) and np.isfinite(k10["iqm_diff"]) and np.isfinite(k10["iqm_diff_low"])
    assert k10["blowup"] == pytest.approx(1 / (3 * T))
    ranked = pd.read_csv(out / "ranked.csv")
    assert np.isinf(ranked.loc[ranked["algorithm.inner_lr"] == 0.3, "test_mean_k10"]).all()


def test_paper_table_pairs_maml_and_pretrain_by_hand(tmp_path, capsys):
    from scipy import stats as sps

    from maml_sweep.tools.paper import main as paper_main
    maml = write_sweep(tmp_path / "m", 0.1, 0.0, val=0.5, algorithm="maml", blowup=7)
    pre = write_sweep(tmp_path / "p", 0.1, 0.7, val=0.9, algorithm="pretrain")
    assert paper_main([str(tmp_path / "m"), str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    rows = {tuple(c.strip() for c in line.split("|")[2:5]): [c.strip() for c in line.split("|")[5:-1]]
            for line in out.splitlines() if line.startswith("| - | maml") or line.startswith("| - | pretrain")}
    # the median and the IQM: mean over seeds of the per-seed statistic over the 40 tasks
    for algo, mats in (("maml", maml), ("pretrain", pre)):
        for k in (1, 5, 10):
            x = np.nan_to_num(np.stack([mats[s][:, k] for s in (0, 1, 2)]), nan=np.inf)  # an overflow: +inf
            median, iqm_cell = rows[(algo, "3", str(k))][:2]
            assert median.startswith(f"{np.median(x, axis=1).mean():.3f} [")
            assert iqm_cell.startswith(f"{np.mean([sps.trim_mean(r, 0.25) for r in x]):.3f} [")
    # the mean where nothing blows up: the two-way ANOVA t-interval over seeds and tasks, by hand
    x = np.stack([pre[s][:, 1] for s in (0, 1, 2)])
    S, Tn = x.shape
    ms_seed = Tn * x.mean(axis=1).var(ddof=1)
    ms_task = S * x.mean(axis=0).var(ddof=1)
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    ms_err = (resid ** 2).sum() / ((S - 1) * (Tn - 1))
    assert ms_task > ms_err  # the plain Satterthwaite case
    terms = [(ms_seed, S - 1), (ms_task, Tn - 1), (-ms_err, (S - 1) * (Tn - 1))]
    var = sum(m for m, _ in terms) / (S * Tn)
    df = var ** 2 / sum((m / (S * Tn)) ** 2 / d for m, d in terms)
    half = sps.t.ppf(0.975, df) * np.sqrt(var)
    assert rows[("pretrain", "3", "1")][2] == f"{x.mean():.3f} [{x.mean() - half:.3f}, {x.mean() + half:.3f}]"
    # maml seed 0 blows up on task 7 from k=5: no mean there, and the bank's count over (seed, task)
    assert rows[("maml", "3", "5")][2:] == ["not reported (tasks blow up)", "1 of 120"]
    assert rows[("maml", "3", "1")][3] == "0 of 120" and rows[("maml", "3", "1")][2].startswith(
        f"{np.mean([maml[s][:, 1] for s in (0, 1, 2)]):.3f} [")
    # MAML minus pretrain: the difference of medians (mean over seeds), paired over seeds and tasks
    row = [line for line in out.splitlines() if line.startswith("| - | 5 |")][0].split("|")
    medians = np.mean([np.median(maml[s][:, 5]) - np.median(pre[s][:, 5]) for s in (0, 1, 2)])
    assert row[3].strip().startswith(f"{medians:.3f} [") and "seeds and tasks, 3 seeds x 40 tasks" in row[6]
    assert row[5].strip() == "not reported (tasks blow up)"
    by_hand = np.mean([maml[s][:, 1] - pre[s][:, 1] for s in (0, 1, 2)])
    k1 = [line for line in out.splitlines() if line.startswith("| - | 1 |")][0].split("|")
    assert k1[5].strip().startswith(f"{by_hand:.3f} [")


def test_clopper_pearson_is_the_exact_binomial_interval():
    from scipy import stats as sps

    from maml_sweep.tools.paper import clopper_pearson
    n = 39_600
    assert clopper_pearson(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n)))  # solves (1 - p)^n = 0.025
    low, high = clopper_pearson(4, n)
    assert sps.binom.sf(3, n, low) == pytest.approx(0.025) and sps.binom.cdf(4, n, high) == pytest.approx(0.025)
    assert (round(100 * low, 3), round(100 * high, 3)) == (0.003, 0.026)  # the 4 of 39,600


def test_paper_table_counts_blowups_on_fresh_tasks_with_an_exact_interval(tmp_path, capsys):
    from maml_sweep.tools.paper import clopper_pearson
    from maml_sweep.tools.paper import main as paper_main
    write_sweep(tmp_path / "m", 0.1, 0.0, val=0.5, algorithm="maml")
    write_sweep(tmp_path / "p", 0.1, 0.7, val=0.9, algorithm="pretrain")
    rows = ["path,seed,tasks,blowups_k1,blowups_k5,blowups_k10"]
    rows += [f"{tmp_path / 'm' / str(s)},{s},100,0,{s},{2 * s}" for s in (0, 1, 2)]  # 3 and 6 of 300 tasks
    rows += [f"{tmp_path / 'p' / str(s)},{s},100,0,0,0" for s in (0, 1, 2)]
    (tmp_path / "fresh.csv").write_text("\n".join(rows) + "\n")
    assert paper_main([str(tmp_path / "m"), str(tmp_path / "p"), "--fresh", str(tmp_path / "fresh.csv")]) == 0
    out = {tuple(c.strip() for c in line.split("|")[2:5]): [c.strip() for c in line.split("|")[5:-1]]
           for line in capsys.readouterr().out.splitlines() if line.startswith("| - |") and line.count("|") == 10}
    low, high = clopper_pearson(6, 300)
    assert out[("maml", "3", "10")][-1] == f"6 of 300: 2% [{100 * low:.2g}%, {100 * high:.2g}%]"
    assert out[("maml", "3", "10")][2] == "not reported (tasks blow up)"  # none on the bank, some on fresh tasks
    assert out[("pretrain", "3", "10")][-1].startswith("0 of 300: 0% [0%, ")
    assert not out[("maml", "3", "1")][2].startswith("not reported")
    assert paper_main([str(tmp_path / "m"), "--fresh", str(tmp_path / "m" / "0" / "summary.json")]) == 2


def test_paper_table_tunes_a_key_per_algorithm_on_validation_never_a_non_finite_one(tmp_path, capsys):
    """``--tune KEY``: per setting and algorithm the configuration with the lowest mean val_mse among
    those with every run completed and finite; a better-looking one with a non-finite seed is not it."""
    from conftest import set_summary

    from maml_sweep.tools.paper import main as paper_main
    write_sweep(tmp_path / "m", 0.1, 0.0, val=0.5, algorithm="maml")
    write_sweep(tmp_path / "p1", 0.1, 0.7, val=0.9, algorithm="pretrain")
    chosen = write_sweep(tmp_path / "p03", 0.03, 0.6, val=0.8, algorithm="pretrain")
    write_sweep(tmp_path / "p3", 0.3, 0.5, val=0.6, algorithm="pretrain")
    set_summary(tmp_path / "p3" / "1", val_mse=None)  # one seed's val_mse not finite: 0.3 is not eligible
    args = [str(tmp_path / d) for d in ("m", "p1", "p03", "p3")]
    assert paper_main(args + ["--tune", "algorithm.inner_lr"]) == 0
    out = capsys.readouterr().out
    selection = {tuple(c.strip() for c in line.split("|")[2:4]): [c.strip() for c in line.split("|")[4:-1]]
                 for line in out.split("\n\n")[1].splitlines()[2:]}
    lr = "algorithm.inner_lr"
    assert selection[("pretrain", f"{lr}=0.03")] == ["0.8100 [0.7852, 0.8348]", "3 of 3", "chosen"]
    assert selection[("pretrain", f"{lr}=0.3")][1:] == [  # a lower mean, and a seed whose val_mse is not finite
        "2 of 3", "not eligible (a run not completed, or its val_mse not finite)"]
    assert selection[("pretrain", f"{lr}=0.1")][2] == "" and selection[("maml", f"{lr}=0.1")][2] == "chosen"
    rows = {tuple(c.strip() for c in line.split("|")[2:5]): [c.strip() for c in line.split("|")[5:-1]]
            for line in out.splitlines() if line.startswith("| - | ")}
    median = np.median(np.stack([chosen[s][:, 1] for s in (0, 1, 2)]), axis=1).mean()
    assert rows[("pretrain, algorithm.inner_lr=0.03", "3", "1")][0].startswith(f"{median:.3f} [")
    assert not any(k[0].startswith("pretrain, algorithm.inner_lr=0.3") for k in rows)
    # without --tune the key is a setting: one row per value, nothing chosen
    assert paper_main(args) == 0
    assert "| algorithm.inner_lr=0.3, " not in capsys.readouterr().out.split("Protocol")[0]
