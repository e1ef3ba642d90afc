"""The ``maml-sweep`` command: Hydra composes the config, ``train.run`` does the work."""
from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from .config import ConfigError, check_values, register_configs
from .train import run

log = logging.getLogger("maml_sweep")
register_configs()


@hydra.main(config_path="pkg://maml_sweep.conf", config_name="config", version_base="1.3")
def main(cfg) -> float:
    """Train one run; return its final validation meta-objective (inf unless completed) for sweepers."""
    hc = HydraConfig.get()
    single = hc.mode == RunMode.RUN
    errors = check_values(cfg)
    if errors and single:
        for line in errors:
            print(f"maml-sweep: error: {line}", file=sys.stderr)
        sys.exit(2)
    try:
        summary = run(cfg, Path(hc.runtime.output_dir))
    except ConfigError as exc:
        if not single:
            raise
        print(f"maml-sweep: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if summary["status"] != "completed":
        if single and summary["status"] == "interrupted":
            sys.exit(130)
        return math.inf
    return summary["val_meta_objective"]


if __name__ == "__main__":
    main()
