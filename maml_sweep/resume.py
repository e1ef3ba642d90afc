"""Resume by directory: ``maml-sweep hydra.run.dir=DIR`` (or ``-m hydra.sweep.dir=DIR``) with no other
overrides resumes the run (sweep) that DIR holds, with the overrides it was started with; a command
whose overrides differ from DIR's is refused naming each differing key and the command that resumes.

The recorded overrides come from the run's ``.hydra/overrides.yaml`` or the sweep's ``multirun.yaml``
(:func:`maml_sweep.rundir_read.read_overrides`, :func:`maml_sweep.rundir_read.read_sweep_overrides`).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from . import rundir, rundir_read

RUN_DIR, SWEEP_DIR = "hydra.run.dir", "hydra.sweep.dir"
_KEEP_FROM_SWEEP = ("hydra/", "hydra.launcher", "hydra.sweeper")  # a sweep's recorded hydra overrides worth repeating


def fill_in(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` with the recorded overrides appended when it names a run or sweep directory and
    gives no task override of its own; and a line saying so (None when nothing was added)."""
    from hydra._internal.utils import get_args_parser

    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:  # not for us to judge: Hydra will say what is wrong
        return argv, None
    if any(getattr(args, flag, None) for flag in ("cfg", "help", "hydra_help", "info", "shell_completion")):
        return argv, None
    overrides = [o for o in args.overrides]
    if any(not _is_hydra(o) for o in overrides):
        return argv, None
    key = SWEEP_DIR if args.multirun else RUN_DIR
    where = _value(overrides, key)
    if not where:
        return argv, None
    if args.multirun:
        recorded = rundir_read.read_sweep_overrides(Path(where))
        if recorded is None or not recorded[0]:
            return argv, None
        task, hydra_args = recorded
        given = {_key(o) for o in overrides}
        added = task + [h for h in hydra_args if h.startswith(_KEEP_FROM_SWEEP) and _key(h) not in given]
    else:
        try:
            added = [o.text for o in rundir_read.read_overrides(Path(where))]
        except rundir.DamagedFile:
            return argv, None
        if not added:
            return argv, None
    what = "sweep" if args.multirun else "run"
    return argv + added, f"maml-sweep: resuming the {what} in {where} with its overrides: {' '.join(added)}"


def differing_keys(recorded: list[str], given: list[str]) -> list[str]:
    """``key (A there, B here)`` for each override key whose value differs between the recorded
    and the given overrides (``unset`` where one side lacks it), in the order first seen."""
    there, here = _by_key(recorded), _by_key(given)
    out = []
    for key in dict.fromkeys([*there, *here]):
        a, b = there.get(key, "unset"), here.get(key, "unset")
        if a != b:
            out.append(f"{key} ({a} there, {b} here)")
    return out


def run_refusal(run_dir: Path, given: list[str]) -> str | None:
    """For a run directory holding another config's run: which override keys differ and the command
    that resumes that run; None when the directory holds no readable record of overrides."""
    if not (Path(run_dir) / rundir.HYDRA_OVERRIDES).is_file():
        return None
    try:
        recorded = [o.text for o in rundir_read.read_overrides(run_dir)]
    except rundir.DamagedFile:
        return None
    keys = differing_keys(recorded, given) or ["the config, not the overrides (another version's defaults?)"]
    return f"it differs in {', '.join(keys)}; resume that run with: {rerun_command(recorded, [], RUN_DIR, run_dir)}"


def sweep_refusal(sweep_dir: Path, recorded: list[str], recorded_hydra: list[str], given: list[str]) -> str:
    """For a sweep directory holding another sweep: the differing keys and the command that resumes it."""
    keys = differing_keys(recorded, given) or ["the sweeper settings"]
    return f"it differs in {', '.join(keys)}; resume that sweep with: " \
           f"{rerun_command(recorded, recorded_hydra, SWEEP_DIR, sweep_dir)}"


def _by_key(texts: list[str]) -> dict[str, str]:
    out = {}
    for text in texts:
        o = rundir_read.parse_override(text)
        if o is not None:
            out[o.key] = o.value if o.op != "delete" else "deleted"
    return out


def _is_hydra(override: str) -> bool:
    return _key(override).startswith(("hydra.", "hydra/")) or _key(override) == "hydra"


def _key(override: str) -> str:
    return override.lstrip("~+").split("=", 1)[0].strip()


def _value(overrides: list[str], key: str) -> str | None:
    for o in reversed(overrides):
        if _key(o) == key and "=" in o:
            return o.split("=", 1)[1].strip()
    return None


def rerun_command(task: list[str], hydra_args: list[str], key: str, where: Path) -> str:
    """The shell command that reruns a run (``key`` hydra.run.dir) or a sweep (hydra.sweep.dir) in
    its own directory ``where``: the command line's overrides with that directory made explicit
    (a default ``${now:...}`` directory would otherwise be a new one)."""
    kept = [a for a in hydra_args
            if a.lstrip("+").split("=", 1)[0] not in ("hydra.run.dir", "hydra.sweep.dir", "hydra.mode")]
    where = Path(where).absolute()
    try:
        where = where.relative_to(Path.cwd())
    except ValueError:
        pass
    program = "maml-sweep" if Path(sys.argv[0]).name == "maml-sweep" else "python -m maml_sweep"
    args = (["-m"] if key == "hydra.sweep.dir" else []) + task + kept + [f"{key}={where}"]
    return " ".join([program, *(shlex.quote(a) for a in args)])
