# Makes conf/ importable as the package ``maml_sweep.conf`` (see pyproject.toml), so Hydra finds
# these YAML files with pkg://maml_sweep.conf from any install, editable or not.
