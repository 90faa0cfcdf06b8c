"""Simulator registry.

Simulators register themselves under a short name with :func:`register`, so
pipeline files and the command line can name them (``name = "pulsar_full"``).
Every module in this package is imported the first time a name is looked up.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, TypeVar

from popstore.simulator import Simulator

_REGISTRY: dict[str, type[Simulator]] = {}
S = TypeVar("S", bound=type[Simulator])


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`~popstore.Simulator` available as ``name``."""

    def deco(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"simulator name {name!r} is already registered to {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _import_all() -> None:
    for mod in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
        importlib.import_module(mod.name)


def available() -> list[str]:
    """Names of every registered simulator."""
    _import_all()
    return sorted(_REGISTRY)


def get_simulator(name: str, **config: Any) -> Simulator:
    """Instantiate the simulator registered as ``name`` with keyword ``config``."""
    if name not in _REGISTRY:
        _import_all()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown simulator {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None
    return cls(**config)
