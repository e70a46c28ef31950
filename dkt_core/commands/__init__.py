"""Subcommands of the ``dkt`` CLI, one module per stage; each exposes ``register(subparsers)``."""
