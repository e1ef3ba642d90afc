"""Tools beside the core, each run as ``python -m maml_sweep.tools.<name>``: benchmarks (``bench``,
``bench_sweep``, ``bench_validation``, ``bench_completion``, ``bench_report``), measurements on trained
runs (``bank_sizes``, ``fresh_blowups``), ``reevaluate``, the MAML-paper table (``paper``), the docs'
example report (``example``) and synthetic run directories for tests (``synthetic``)."""
