"""A report as a reader sees it: report.html rendered by a real headless Chromium (Debian's) at
1280 px. Every image loads and the page never scrolls sideways (wide tables scroll inside their
box). The screenshot is kept in tests/artifacts/ for a person to look at."""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest

from maml_sweep.analysis.report_cli import main
from services import chromium

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


@pytest.mark.slow
def test_report_renders_in_chromium_with_all_images_and_no_sideways_scroll(real_sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([str(real_sweep), "--out", "report", "-q"]) == 0
    html = tmp_path / "report" / "report.html"
    seen = probe(html, tmp_path / "profile-probe")

    assert len(seen["images"]) == 5
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
