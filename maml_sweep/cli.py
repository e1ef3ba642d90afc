"""The ``maml-sweep`` command: Hydra composes the config, ``train.run`` does the work."""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from . import logs, rundir
from .config import ConfigError, register_configs
from .sweep import write_sweep_summary
from .train import run

register_configs()
log = logging.getLogger(__name__)


@hydra.main(config_path="pkg://maml_sweep.conf", config_name="config", version_base="1.3")
def main(cfg) -> float:
    """Train one run; return its final validation meta-objective (inf unless completed) for sweepers.

    A run directory holding another config's run is refused untouched; bad values are recorded as
    a failed run before any training. Either gives one line and exit 2 in a single run, and an
    exception (that job fails, the others go on) in a multirun.
    """
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.MULTIRUN and not _in_process_launcher(hc):
        logs.tag_job(hc.job.num)  # parallel jobs' lines interleave: each says which job it is
    log.info("run directory: %s", out_dir)

    def record() -> None:
        rundir.save_hydra_record(out_dir, {
            "config.yaml": OmegaConf.to_yaml(cfg, resolve=True),  # self-contained: readers need no resolver
            "hydra.yaml": OmegaConf.to_yaml({"hydra": hc}),
            "overrides.yaml": OmegaConf.to_yaml(list(hc.overrides.task)),
        })

    try:
        summary = run(cfg, out_dir, on_accept=record)
    except ConfigError as exc:
        if hc.mode == RunMode.MULTIRUN:
            raise  # this job fails; the launcher runs the others
        for line in str(exc).split("; "):
            print(f"maml-sweep: error: {line}", file=sys.stderr)
        sys.exit(2)
    if summary["status"] == rundir.INTERRUPTED and (hc.mode == RunMode.RUN or _in_process_launcher(hc)):
        if hc.mode == RunMode.MULTIRUN:
            write_sweep_summary(Path(hc.sweep.dir))  # Hydra's on_job_end will not run
        sys.exit(130)  # stop here; with the basic launcher this also stops the rest of the sweep
    value = summary["val_meta_objective"] if summary["status"] == rundir.COMPLETED else None
    return math.inf if value is None else value


def _in_process_launcher(hc) -> bool:
    """True when the jobs of this multirun run one after another in this very process."""
    return str(hc.launcher.get("_target_", "")).endswith("BasicLauncher")


if __name__ == "__main__":
    main()
