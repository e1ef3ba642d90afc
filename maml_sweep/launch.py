"""The ``maml-sweep`` command's entry point: a tab-completion query is answered from its cache
(:mod:`maml_sweep.completion`) before the imports a run needs (Hydra, numpy, autograd)."""
import os
import sys


def main() -> None:
    try:  # Ctrl-C while Hydra, numpy and autograd load: one line, not a traceback through the imports
        from . import completion

        if completion.serve(sys.argv[1:]):
            return
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("maml-sweep: interrupted before anything started", file=sys.stderr)
        sys.exit(130)
    try:
        cli_main()
    except KeyboardInterrupt:  # a Ctrl-C after the CLI's own handling (exit 130, no traceback)
        sys.exit(130)
    except BrokenPipeError:  # `maml-sweep --help | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
