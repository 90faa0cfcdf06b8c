"""popstore: simulation-based inference datasets in labelled, chunked Zarr stores.

A simulator (:class:`Simulator`) turns parameters into maps; :func:`generate`
fills a Zarr store with thousands of them on a Dask cluster; :func:`split`
marks train/valid/test samples inside the store; :class:`MapDataset` feeds
the store to PyTorch.

The names below are imported on first use, so ``import popstore`` is cheap and
the core works without the optional extras (``MapDataset`` needs ``popstore[torch]``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Axis": "simulator", "Output": "simulator", "Parameter": "simulator", "Simulator": "simulator",
    "open_store": "store", "generate": "generation", "GenerationReport": "generation", "split": "splits",
    "MapDataset": "torchdata", "make_loader": "torchdata", "UserError": "errors",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'popstore' has no attribute {name!r}")
    return getattr(importlib.import_module(f"popstore.{_EXPORTS[name]}"), name)
