"""Loading checkpoints without running code from them.

``torch.load`` unpickles: a crafted ``.pt`` file can run any command while it
loads. Every popstore loader goes through :func:`load_checkpoint`, i.e.
``torch.load(..., weights_only=True)``, which accepts only tensors and plain
values (dicts, lists, tuples, str, numbers, bool, None); savers store configs
and scalers as such plain values (:func:`popstore.store.plain`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from popstore.errors import UserError


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The contents of a checkpoint of tensors and plain values; refuses (UserError) anything else.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    UserError
        The file holds other objects (code could run while loading them) or is not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: refusing to load a checkpoint holding more than tensors and plain values "
                        f"(loading it could run code): {first}") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise UserError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})") from None
