"""The report as a document: blocks rendered to Markdown and to one self-contained HTML page, and the
rules for printing numbers.

Numbers are rounded to what their interval supports: the interval's half-width to two significant
digits and the estimate to the same decimal place (``0.3845 ± 0.0077``, ``1.62 ± 0.69``); a number
without an interval gets three significant digits. Run data (config values, run names, error texts)
enters text only through :func:`code` or :func:`maml_sweep.safe_text.md_text`, so no run file can put
markup into the report.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..safe_text import md_text

TOP = 15  # rows of a long table shown in the report; all of them are in its CSV
BEST_MARK = "★"


def _finite(v) -> bool:
    return v is not None and v is not pd.NA and isinstance(v, (int, float, np.number)) and math.isfinite(float(v))


def decimals(half: float) -> int:
    """Decimal places that keep two significant digits of ``half`` (negative: round to tens, hundreds)."""
    return 1 - int(math.floor(math.log10(abs(half)))) if half else 3


def _round(v: float, places: int) -> str:
    if places >= 0:
        return f"{v:.{places}f}"
    return f"{round(v, places):.0f}"


def num(v) -> str:
    """A number without an interval: three significant digits; ``inf``, ``-inf``, blank for missing."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.3g}"


def num_pm(est, half) -> str:
    """``est ± half`` rounded to what ``half`` supports; the estimate alone (3 digits) without one."""
    if not _finite(est) or not _finite(half) or half <= 0:
        return num(est)
    places = decimals(half)
    return f"{_round(float(est), places)} ± {_round(float(half), places)}"


def num_ci(est, low, high) -> str:
    """``est [low, high]`` rounded to what the interval supports."""
    if not (_finite(est) and _finite(low) and _finite(high)) or high <= low:
        return num(est)
    places = decimals((high - low) / 2)
    return f"{_round(float(est), places)} [{_round(float(low), places)}, {_round(float(high), places)}]"


def pct(v) -> str:
    """A fraction as a percentage with two significant digits (``0.33%``, ``12%``)."""
    return f"{100 * float(v):.2g}%" if _finite(v) else ""


def code(value) -> str:
    """Run data as a Markdown code span (backticks and line breaks inside it neutralised)."""
    text = str(value).replace("`", "'").replace("\n", " ").replace("\r", " ")
    return f"`{text}`"


def cell(v) -> str:
    """A table cell: numbers by :func:`num`, text as escaped Markdown text."""
    if isinstance(v, str):
        return md_text(v)
    return num(v)


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

    def table(self, frame: pd.DataFrame, csv_name: str = "", mark: int | None = None):
        """A table; more than :data:`TOP` rows show the top ones and name ``csv_name``, which has all.
        ``mark``: the position of the best row, marked with :data:`BEST_MARK`."""
        shown = frame.head(TOP).copy()
        if mark is not None and 0 <= mark < len(shown):
            shown.insert(0, "", [BEST_MARK if i == mark else "" for i in range(len(shown))])
        self.blocks.append(("table", shown))
        if len(frame) > TOP:
            self.p(f"*Top {TOP} of {len(frame)} rows; all in `{csv_name}`.*")

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
                out.append(f"![{b[1]}]({b[1]}.png)\n\n*{b[2]}* ([PDF]({b[1]}.pdf))")
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
                body.append(_html_table(b[1]))
            elif b[0] == "fig":
                data = base64.b64encode((out_dir / f"{b[1]}.png").read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(b[1])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{_inline(b[2])}</figcaption></figure>")
        return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
         "table.t{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
         "table.t td,table.t th{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right;white-space:nowrap}"
         "table.t tr.best td{background:#fff4c2;font-weight:bold}"
         ".scroll{overflow-x:auto;max-width:100%}"
         "p,li,figcaption{overflow-wrap:anywhere}"
         "img{max-width:100%;height:auto}figcaption{font-size:0.85em;color:#555}code{background:#f3f3f3}")


def _unescape_md(text: str) -> str:
    """Text made by :func:`md_text` back to plain characters (for HTML, which escapes on its own)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return html.unescape("".join(out))


def _inline(text: str) -> str:
    """Report text (Markdown with `code` and **bold**) as HTML: everything escaped, then those two rendered."""
    parts = text.split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            bold = html.escape(_unescape_md(part)).split("**")
            out.append("".join(f"<b>{p}</b>" if j % 2 else p for j, p in enumerate(bold)))
    return "".join(out)


def _md_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "*(none)*"
    cols = [md_text(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def _html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p><i>(none)</i></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        best = any(isinstance(v, str) and v == BEST_MARK for v in row)
        cells = "".join(f"<td>{html.escape(_unescape_md(cell(v)))}</td>" for v in row)
        rows.append(f"<tr class='best'>{cells}</tr>" if best else f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table class="t"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')
