"""Vectorised orbit integration in a static potential.

Second-order kick-drift-kick leapfrog (symplectic; Binney & Tremaine 2008,
Sect. 3.4.1), all stars advanced together as float64 torch tensors. Units:
kpc, km/s, time in Myr (converted with
:data:`popstore.galaxy.dynamics.constants.TIME_UNIT_MYR`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from popstore.galaxy.dynamics.constants import TIME_UNIT_MYR


def leapfrog(
    acceleration: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    v: np.ndarray,
    time_myr: float,
    dt_myr: float = 0.5,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Advance positions (n, 3) [kpc] and velocities (n, 3) [km/s] by ``time_myr``.

    The step is shortened so that a whole number of steps spans ``time_myr``.
    """
    if time_myr < 0 or dt_myr <= 0:
        raise ValueError(f"need time_myr >= 0 and dt_myr > 0, got {time_myr}, {dt_myr}")
    n_steps = int(np.ceil(time_myr / dt_myr))
    if n_steps == 0:
        return np.array(x, dtype=float), np.array(v, dtype=float)
    dt = time_myr / n_steps / TIME_UNIT_MYR
    xt = torch.tensor(np.asarray(x, dtype=np.float64))
    vt = torch.tensor(np.asarray(v, dtype=np.float64))
    acc = acceleration(xt)
    for _ in tqdm(range(n_steps), disable=not progress, desc="leapfrog"):
        vt += 0.5 * dt * acc
        xt += dt * vt
        acc = acceleration(xt)
        vt += 0.5 * dt * acc
    return xt.numpy(), vt.numpy()
