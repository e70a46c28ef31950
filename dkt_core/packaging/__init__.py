"""Packaging trained artifacts as BentoML models (``dkt-model:<model_version>``) and finding them again.

The package's API is ``dkt_core.packaging.store.__all__``, re-exported here."""

from dkt_core.packaging.store import *  # noqa: F403
from dkt_core.packaging.store import __all__ as __all__
