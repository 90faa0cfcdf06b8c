"""Simulator registry: the names that pipeline files and the command line use.

A name resolves, in this order, to

1. a class registered in this process with :func:`register` (a script's own simulator);
2. a built-in simulator of the core (``gaussian_fields``);
3. an entry point of the ``popstore.simulators`` group: popstore's science domains declare
   theirs in its ``pyproject.toml``, and a user's package declares its own the same way::

       [project.entry-points."popstore.simulators"]
       my_sim = "my_package.simulators:MySimulator"

4. ``"module:Class"``: any importable :class:`~popstore.Simulator` subclass, no installation needed.

As in xarray's backend plugins, an entry point that fails to import is a warning naming it
(never a crash of the whole command), and an unknown name is an error listing what is installed.
"""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, TypeVar

from popstore.errors import UserError
from popstore.simulator import Simulator

ENTRY_POINT_GROUP = "popstore.simulators"
BUILTIN: dict[str, str] = {"gaussian_fields": "popstore.simulators.gaussian_fields:GaussianFields"}

_REGISTRY: dict[str, type[Simulator]] = {}
S = TypeVar("S", bound=type[Simulator])


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make a :class:`~popstore.Simulator` available as ``name`` in this process."""

    def deco(cls: S) -> S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"simulator name {name!r} is already registered to {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names of every simulator that can be looked up (registered, built in, or installed as a plugin)."""
    return sorted(set(_REGISTRY) | set(BUILTIN) | set(_plugins()))


def _import_class(spec: str, origin: str) -> type[Simulator]:
    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"simulator {origin!r}: cannot import {spec!r} ({e})") from None
    if not (isinstance(obj, type) and issubclass(obj, Simulator)):
        raise UserError(f"simulator {origin!r}: {spec!r} is not a popstore.Simulator subclass")
    return obj


def simulator_class(name: str) -> type[Simulator]:
    """The :class:`~popstore.Simulator` subclass that ``name`` (or ``"module:Class"``) refers to."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in BUILTIN:
        cls = _import_class(BUILTIN[name], name)
    elif name in (plugins := _plugins()):
        try:
            cls = plugins[name].load()
        except Exception as e:  # a broken plugin must not take the others down
            warnings.warn(f"popstore simulator plugin {name!r} ({plugins[name].value}) failed to load: {e}",
                          RuntimeWarning, stacklevel=2)
            raise UserError(f"simulator {name!r} is installed but failed to load: {e}") from None
    elif ":" in name:
        cls = _import_class(name, name)
    else:
        raise UserError(f"unknown simulator {name!r}; available: {', '.join(available())} "
                        "(or name one as 'module:Class')")
    if cls.name == Simulator.name:  # a plain class named by "module:Class": that spec finds it again
        cls.name = name
    _REGISTRY.setdefault(name, cls)
    return cls


def get_simulator(name: str, **config: Any) -> Simulator:
    """Instantiate the simulator ``name`` (see the module docstring) with keyword ``config``."""
    return simulator_class(name)(**config)
