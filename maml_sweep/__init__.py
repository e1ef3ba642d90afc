"""maml-sweep: Model-Agnostic Meta-Learning experiments on small 1-D regression problems."""

__version__ = "0.1.0"
