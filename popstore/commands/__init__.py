"""Subcommands of the ``popstore`` CLI: each module defines ``register(subparsers)``."""
