"""The ``maml-sweep`` command's entry point: a tab-completion query is answered from its cache
(:mod:`maml_sweep.completion`) before the imports a run needs (Hydra, numpy, autograd)."""
import os
import sys


def main() -> None:
    from . import completion

    if completion.serve(sys.argv[1:]):
        return
    from .cli import main as cli_main

    try:
        cli_main()
    except BrokenPipeError:  # `maml-sweep --help | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
