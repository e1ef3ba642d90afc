"""The class Hydra instantiates for ``hydra/sweeper=optuna`` (plugins must live in ``hydra_plugins``)."""
from maml_sweep.search import sweeper


class SearchSweeper(sweeper.SearchSweeper):
    """:class:`maml_sweep.search.sweeper.SearchSweeper`, where Hydra looks for it."""
