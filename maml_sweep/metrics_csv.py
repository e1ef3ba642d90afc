"""``metrics.csv`` and ``adaptation.csv``: the trainer's writers and the readers' bounded parsers.

``metrics.csv`` (columns :data:`maml_sweep.rundir.METRIC_COLUMNS`) is appended and flushed row by row,
so a killed run leaves a readable prefix; :func:`read_metrics` keeps the rows before the first damage
and thins long curves (:func:`thin_rows`) as it reads, so memory stays bounded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .rundir import (
    ADAPTATION,
    ADAPTATION_COLUMNS,
    METRIC_COLUMNS,
    METRICS,
    DamagedRunFile,
    atomic_path,
    open_file,
    read_bytes,
)


class MetricsLog:
    """Appends evaluation rows to ``metrics.csv``, flushing each, so a killed run leaves a prefix."""

    def __init__(self, run_dir: Path, keep_until_step: int = 0):
        """Open the log, keeping only the rows with step <= ``keep_until_step`` (0: start afresh)."""
        self.path = Path(run_dir) / METRICS
        rows = self._rows_until(keep_until_step) if keep_until_step > 0 else []
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join([",".join(METRIC_COLUMNS) + "\n"] + rows))
        self._file = open_file(self.path, "a")

    def _rows_until(self, step: int) -> list[str]:
        try:
            with open_file(self.path) as f:
                lines = [raw.decode("utf-8", "replace").rstrip("\r\n") for raw in f][1:]
        except FileNotFoundError:
            return []
        kept = []
        for line in lines:
            head = line.split(",", 1)[0]
            if line.count(",") == len(METRIC_COLUMNS) - 1 and head.isdigit() and int(head) <= step:
                kept.append(line + "\n")
        return kept

    def append(self, step: int, val: float, val_mse: float, train: float, elapsed_s: float) -> None:
        self._file.write(metrics_line(step, val, val_mse, train, elapsed_s))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def metrics_line(step: int, val: float, val_mse: float, train: float, elapsed_s: float) -> str:
    """One ``metrics.csv`` row (columns :data:`METRIC_COLUMNS`), newline-terminated."""
    return f"{int(step)},{val:.10g},{val_mse:.10g},{train:.10g},{elapsed_s:.4f}\n"


def write_metrics(run_dir: Path, rows) -> None:
    """Write a whole ``metrics.csv`` of (step, val, val_mse, train, elapsed_s) rows at once, atomically
    (for runs made outside the trainer, e.g. synthetic ones; the trainer appends via :class:`MetricsLog`)."""
    with atomic_path(Path(run_dir) / METRICS) as tmp, open(tmp, "w") as f:
        f.write(",".join(METRIC_COLUMNS) + "\n")
        f.writelines(metrics_line(*row) for row in rows)


def write_adaptation_csv(path: Path, rows: list[dict]) -> None:
    """``adaptation.csv`` (columns :data:`ADAPTATION_COLUMNS`) from dict rows, atomically."""
    with atomic_path(path) as tmp:
        lines = [",".join(ADAPTATION_COLUMNS)]
        lines += [",".join(_csv_cell(r[c]) for c in ADAPTATION_COLUMNS) for r in rows]
        tmp.write_text("\n".join(lines) + "\n")


def _csv_cell(v) -> str:
    return f"{float(v):.10g}" if isinstance(v, (float, np.floating)) else str(v)


# ---------------------------------------------------------------- reading

MAX_CURVE_POINTS = 2000  # rows per run a reader keeps of a long metrics.csv (see thin_rows)


@dataclass
class Metrics:
    """A run's ``metrics.csv``: ``columns`` (header names), ``values`` (float64, shape (rows, columns)),
    ``rows`` (complete rows in the file, before any thinning), ``last`` (the file's last complete row,
    shape (columns,); None when there is none) and ``issue`` (what was dropped, or None)."""

    columns: list[str]
    values: np.ndarray
    rows: int = 0
    last: np.ndarray | None = None
    issue: str | None = None


_NAN_TEXTS = ["nan", "NaN", "-nan"]  # what Python and numpy write for NaN; an empty field is malformed
_CHUNK_ROWS = 1 << 18  # rows per parser chunk: memory stays bounded for any file length


def read_metrics(run_dir: Path, max_points: int | None = None) -> Metrics:
    """Read ``metrics.csv``, stopping at the first malformed line and dropping a last line without
    its newline (a killed or live writer's torn row); never raises for a bad file (the reason is in
    ``issue``). Small files are parsed in Python (pandas' fixed cost per call dominates there),
    large ones with pandas' C parser in chunks; both accept exactly the rows :func:`_row` accepts.

    With ``max_points``, a longer file is thinned by :func:`thin_rows` chunk by chunk as it is read,
    so memory stays bounded by the kept rows plus one chunk, whatever the file's length.
    """
    path = Path(run_dir) / METRICS
    try:
        with open_file(path) as f:
            header = f.readline()
            columns = [h.strip() for h in header.decode("utf-8", "replace").rstrip("\r\n").split(",")]
            if not header.endswith(b"\n") or "step" not in columns:
                return Metrics([], np.empty((0, 0)), issue="metrics.csv has no header row with 'step'")
            start, size = len(header), os.fstat(f.fileno()).st_size
            if size - start <= _SMALL_BYTES:
                return _read_small(f.read(), columns, max_points)
            rows, torn = _count_lines(f)
            try:
                good = rows
                values = _parse_rows(f, start, columns, rows, max_points)
            except ValueError:  # a malformed line: find it, keep the rows before it
                good = _first_bad_row(f, start, len(columns))
                values = _parse_rows(f, start, columns, good, max_points)
            return Metrics(columns, *values, issue=_damage(good, rows, torn))
    except FileNotFoundError:  # no evaluation yet
        return Metrics([], np.empty((0, 0)))
    except OSError as e:
        return Metrics([], np.empty((0, 0)), issue=f"metrics.csv unreadable ({e.strerror})")
    except DamagedRunFile as e:
        return Metrics([], np.empty((0, 0)), issue=str(e))


_SMALL_BYTES = 1 << 18  # bodies up to this size (~6,000 rows) are parsed in Python


def _row(raw: bytes, ncol: int) -> list[float] | None:
    """One body line as ``ncol`` numbers, or None when it is malformed (wrong field count, an empty
    field, text that is no number)."""
    parts = raw.rstrip(b"\r").split(b",")
    if len(parts) != ncol:
        return None
    try:
        return [float(p) for p in parts]
    except ValueError:
        return None


def _damage(good: int, complete: int, torn: bool) -> str | None:
    """The issue text for a body of ``complete`` newline-terminated rows of which the first ``good``
    are well-formed, followed (``torn``) or not by a line without its newline."""
    if good < complete - 1 or (good == complete - 1 and torn):
        return f"metrics.csv: malformed line {good + 2}; kept the {good} row(s) before it"
    if good == complete - 1 or torn:
        return "metrics.csv: truncated last line dropped"
    return None


def _read_small(body: bytes, columns: list[str], max_points: int | None) -> Metrics:
    lines = body.split(b"\n")  # the last item is b"" unless the last line is torn
    complete, torn = lines[:-1], lines[-1] != b""
    values = []
    for raw in complete:
        row = _row(raw, len(columns))
        if row is None:
            break
        values.append(row)
    array = np.asarray(values, dtype=float).reshape(len(values), len(columns))
    last = array[-1].copy() if len(array) else None
    return Metrics(columns, thin_rows(array, columns, max_points), len(array), last,
                   _damage(len(values), len(complete), torn))


def _count_lines(f) -> tuple[int, bool]:
    """(complete lines from the current position to the end, whether a torn line without newline follows)."""
    count, tail = 0, b"\n"
    while chunk := f.read(1 << 23):
        count += chunk.count(b"\n")
        tail = chunk
    return count, not tail.endswith(b"\n")


def _parse_rows(f, offset: int, columns: list[str], nrows: int, max_points: int | None):
    """(values, rows, last): the first ``nrows`` body rows (thinned to ``max_points``), their count
    and the last one. Raises ValueError for a malformed row among them."""
    if nrows == 0:
        return np.empty((0, len(columns))), 0, None
    import pandas as pd  # here: the trainer imports this module and need not pay for pandas

    f.seek(offset)
    thinner = _Thinner(nrows, columns, max_points)
    reader = pd.read_csv(f, header=None, names=list(range(len(columns))), dtype=np.float64, engine="c",
                         keep_default_na=False, na_values=_NAN_TEXTS, skip_blank_lines=False,
                         index_col=False, nrows=nrows, chunksize=_CHUNK_ROWS)
    with reader:
        for chunk in reader:
            thinner.add(chunk.to_numpy())
    if thinner.seen != nrows:
        raise ValueError(f"{thinner.seen} rows parsed of {nrows}")
    return thinner.result(), nrows, thinner.last


def _first_bad_row(f, offset: int, ncol: int) -> int:
    """Index of the first body row :func:`_row` rejects (the number of good rows before it)."""
    f.seek(offset)
    good = 0
    for raw in f:
        if not raw.endswith(b"\n") or _row(raw[:-1], ncol) is None:
            break
        good += 1
    return good


def _primary(columns: list[str]) -> str:
    """The column whose lowest point a thinned curve keeps: the validation objective if logged."""
    others = [c for c in columns if c != "step"]
    return "val_meta_objective" if "val_meta_objective" in others else (others[0] if others else "step")


def thin_stride(rows: int, max_points: int | None) -> int:
    """The stride :func:`thin_rows` uses: 1 up to ``max_points`` rows, else the smallest power of two
    that leaves at most ``max_points - 2`` rows (room for the lowest and the last row)."""
    if not max_points or rows <= max_points:
        return 1
    stride = 1
    while -(-rows // stride) > max(max_points - 2, 1):
        stride *= 2
    return stride


def thin_rows(values: np.ndarray, columns: list[str], max_points: int | None) -> np.ndarray:
    """A long curve thinned for reading: every ``stride``-th row from the first (the stride a power
    of two, :func:`thin_stride`, so runs of one schedule keep the same steps, and a shorter run's
    steps include a longer one's), plus the row of the lowest ``val_meta_objective`` and the last
    row. At most ``max_points`` rows; a curve of up to ``max_points`` rows is kept whole.
    ``values`` has shape (rows, len(columns)); :func:`read_metrics` applies the same rule chunk by chunk."""
    thinner = _Thinner(len(values), columns, max_points)
    thinner.add(values)
    return thinner.result()


class _Thinner:
    """:func:`thin_rows`' rule, fed block by block (row blocks in file order)."""

    def __init__(self, rows: int, columns: list[str], max_points: int | None):
        self.stride = thin_stride(rows, max_points)
        self.primary = columns.index(_primary(columns))
        self.ncol = len(columns)
        self.blocks: list[tuple[np.ndarray, np.ndarray]] = []  # (row indices, rows)
        self.low: tuple[int, np.ndarray] | None = None
        self.seen, self.last = 0, None

    def add(self, block: np.ndarray) -> None:
        if not len(block):
            return
        index = self.seen + np.arange(len(block))
        keep = index % self.stride == 0
        self.blocks.append((index[keep], block[keep]))
        col = block[:, self.primary]
        if self.stride > 1 and np.isfinite(col).any():
            j = int(np.nanargmin(col))
            if self.low is None or col[j] < self.low[1][self.primary]:
                self.low = (self.seen + j, block[j].copy())
        self.seen += len(block)
        self.last = block[-1].copy()

    def result(self) -> np.ndarray:
        if not self.blocks:
            return np.empty((0, self.ncol))
        index = np.concatenate([i for i, _ in self.blocks])
        rows = np.concatenate([r for _, r in self.blocks])
        extra = [self.low] if self.low is not None else []
        if self.stride > 1:
            extra.append((self.seen - 1, self.last))
        if extra:
            index = np.concatenate([index, [i for i, _ in extra]])
            rows = np.concatenate([rows, np.stack([r for _, r in extra])])
            index, first = np.unique(index, return_index=True)  # sorted, each row once
            rows = rows[first]
        return rows


# ---------------------------------------------------------------- adaptation.csv

def read_adaptation(run_dir: Path) -> tuple[list[dict], str | None]:
    """``adaptation.csv`` as dict rows (columns :data:`ADAPTATION_COLUMNS`; absent ones NaN) and an issue or None;
    ([], None) when the run has none. A malformed line is dropped, never raised."""
    path = Path(run_dir) / ADAPTATION
    try:
        lines = read_bytes(path).decode(errors="replace").split("\n")
    except FileNotFoundError:
        return [], None
    except OSError as e:
        return [], f"adaptation.csv unreadable ({e.strerror})"
    except DamagedRunFile as e:
        return [], str(e)
    header = [h.strip() for h in lines[0].split(",")]
    if any(n not in header for n in ("init", "k", "mse_mean")):
        return [], "adaptation.csv lacks init/k/mse_mean columns"
    records, issue = [], None
    for i, line in enumerate(ln for ln in lines[1:] if ln.strip()):
        parts = line.split(",")
        rec = dict(zip(header, parts))
        try:
            if len(parts) != len(header):
                raise ValueError(line)
            records.append({"init": rec["init"], "k": int(float(rec["k"])),
                            **{c: float(rec.get(c) or "nan") for c in ADAPTATION_COLUMNS[2:]}})
        except ValueError:
            issue = f"adaptation.csv: malformed line {i + 2} dropped"
    return records, issue
