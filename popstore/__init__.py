"""popstore: simulation-based inference datasets in labelled, chunked Zarr stores.

A simulator (:class:`Simulator`) turns parameters into maps; :func:`generate`
fills a Zarr store with thousands of them on a Dask cluster; :func:`split`
marks train/valid/test samples inside the store; :class:`MapDataset` feeds
the store to PyTorch.
"""

__version__ = "0.1.0"

from popstore.simulator import Axis, Output, Parameter, Simulator  # noqa: E402
from popstore.store import open_store  # noqa: E402
from popstore.generate import GenerationReport, generate  # noqa: E402
from popstore.splits import split  # noqa: E402
from popstore.torchdata import MapDataset, make_loader  # noqa: E402

__all__ = [
    "Axis", "Output", "Parameter", "Simulator", "open_store", "generate", "GenerationReport",
    "split", "MapDataset", "make_loader", "__version__",
]
