"""The class Hydra instantiates for ``hydra/launcher=lockstep`` (plugins must live in ``hydra_plugins``)."""
from maml_sweep import lockstep


class LockstepLauncher(lockstep.LockstepLauncher):
    """:class:`maml_sweep.lockstep.LockstepLauncher`, where Hydra looks for it."""
