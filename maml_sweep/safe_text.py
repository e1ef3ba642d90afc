"""Run data shown to people is data: the one place that neutralises it for CSV and Markdown.

Anything read from a run directory (config values, override strings, error texts, directory names)
can hold text that a spreadsheet runs as a formula or a Markdown renderer turns into markup. Every
CSV the project writes goes through :func:`csv_frame` / :func:`csv_cell`; every run-derived string
put into Markdown goes through :func:`md_text` (HTML is escaped with :func:`html.escape`).
"""
from __future__ import annotations

import html

import pandas as pd

# OWASP's rule for CSV injection: a cell starting with one of these is prefixed with a single quote.
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(value):
    """``value`` unchanged unless it is text a spreadsheet would read as a formula; then ``'`` + text.

    Numbers (and text that is exactly a number, like ``-0.5``) stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS) and not is_number_text(value):
        return "'" + value
    return value


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell (and column name) passed through :func:`csv_cell`."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(csv_cell)
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out


_MD_SPECIAL = "\\`*_[]|~"  # inline markup, links, table cells; '#', '-', '+' matter only at a line's start


def md_text(value) -> str:
    """Run data as literal Markdown text: HTML-escaped, and every Markdown control character
    backslash-escaped, so no run file can put a tag, link, emphasis or table cell break into a report."""
    text = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(value))
    if text[:1] in "#-+>=" and text:
        text = "\\" + text
    return html.escape(text, quote=False).replace("\n", " ").replace("\r", " ")
