"""A report as a reader sees it: report.html of every report kind rendered by a real headless Chromium
(Debian's) at 1280 px. Every image loads and the page never scrolls sideways (wide tables scroll inside their
box). The screenshot is kept in tests/artifacts/ for a person to look at."""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from services import chromium

from maml_sweep.analysis import load_runs
from maml_sweep.analysis.design import experiment_design
from maml_sweep.analysis.report_cli import main

ARTIFACTS = Path(__file__).parent / "artifacts"
WIDTH = 1280

# Appended to a copy of the page: after load, writes what a reader would see into the DOM.
PROBE = """<script>
window.addEventListener('load', () => {
  const d = document.documentElement;
  const out = {images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
               scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, height: d.scrollHeight,
               tables: [...document.querySelectorAll('table')].map(t => t.parentElement.className)};
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def probe(html: Path, profile: Path) -> dict:
    page = html.with_name("probe.html")
    page.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(page.as_uri(), profile, "--virtual-time-budget=10000", "--dump-dom", width=WIDTH)
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert m, dom[-2000:]
    return json.loads(unescape(m.group(1)))


def kind_sweeps(root: Path) -> dict[str, list[Path]]:
    """A small synthetic sweep of every report kind (planted effects), as the report's inputs."""
    import itertools

    import numpy as np

    from maml_sweep.tools.synthetic import planted_sweep

    rng = np.random.default_rng(1)
    algos = ["maml", "fomaml", "anil", "metasgd", "reptile", "pretrain", "scratch"]
    planted_sweep(root / "grid", [{"task.bins": b, "algorithm.inner_lr": lr, "algorithm.inner_steps": k}
                                  for b, lr, k in itertools.product([3, 6], [0.01, 0.1], [1, 5])],
                  level=lambda c: c["task.bins"] / 3 * (1 + abs(np.log10(c["algorithm.inner_lr"]) + 1)))
    planted_sweep(root / "algorithms", [{"algorithm": a} for a in algos],
                  level=lambda c: 1 + algos.index(c["algorithm"]) / 5)
    planted_sweep(root / "search", [{"algorithm.inner_lr": float(10 ** rng.uniform(-3, 0)),
                                     "optimizer.lr": float(10 ** rng.uniform(-4, -1)),
                                     "algorithm.inner_steps": int(rng.choice([1, 3, 5, 10]))} for _ in range(20)],
                  seeds=(0,), level=lambda c: 1 + 3 * abs(np.log10(c["algorithm.inner_lr"]) + 1) ** 2)
    planted_sweep(root / "a", [{"algorithm.inner_lr": 0.1}], seeds=(0,))
    planted_sweep(root / "b", [{"algorithm.inner_lr": 0.3, "train.outer_steps": 400}], seeds=(0,),
                  level=lambda c: 1.4, random_seed=1)
    return {"single": [root / "a" / "0"], "overlay": [root / "a" / "0", root / "b" / "0"],
            "grid": [root / "grid"], "algorithms": [root / "algorithms"], "search": [root / "search"]}


@pytest.mark.slow
def test_every_report_kind_renders_in_chromium_with_all_images_and_no_sideways_scroll(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ARTIFACTS.mkdir(exist_ok=True)
    for kind, inputs in kind_sweeps(tmp_path / "sweeps").items():
        out = tmp_path / f"report-{kind}"
        assert main([*map(str, inputs), "--out", str(out), "-q"]) == 0
        assert experiment_design(load_runs(inputs)).kind == kind
        html = out / "report.html"
        seen = probe(html, tmp_path / f"profile-probe-{kind}")
        assert len(seen["images"]) >= 4, (kind, seen["images"])
        for img in seen["images"]:
            assert img["complete"] and img["width"] > 0, (kind, img)
            assert img["width"] <= 2400, (kind, img)
        assert set(seen["tables"]) <= {"scroll"}
        assert seen["scrollWidth"] <= seen["clientWidth"] <= WIDTH, (kind, seen)
        shot = ARTIFACTS / f"report-{kind}-1280.png"
        shot.unlink(missing_ok=True)
        chromium(html.as_uri(), tmp_path / f"profile-shot-{kind}", f"--screenshot={shot}", width=WIDTH,
                 height=min(seen["height"] + 40, 16000))
        assert shot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_report_renders_in_chromium_with_all_images_and_no_sideways_scroll(real_sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([str(real_sweep), "--out", "report", "-q"]) == 0
    html = tmp_path / "report" / "report.html"
    seen = probe(html, tmp_path / "profile-probe")

    assert len(seen["images"]) == 7  # heatmap, curves, adaptation, forest, ECDF, fits, cost
    for img in seen["images"]:
        assert img["complete"] and img["width"] > 0, img
    assert seen["tables"] and set(seen["tables"]) == {"scroll"}
    assert seen["scrollWidth"] <= seen["clientWidth"] <= WIDTH, seen

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-1280.png"
    shot.unlink(missing_ok=True)
    chromium(html.as_uri(), tmp_path / "profile-shot", f"--screenshot={shot}", width=WIDTH,
             height=min(seen["height"] + 40, 16000))
    assert shot.read_bytes()[:4] == b"\x89PNG"
