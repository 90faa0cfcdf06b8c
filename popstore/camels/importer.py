"""Reader for the CAMELS Multifield Dataset (CMD) 2D maps.

CMD (Villaescusa-Navarro et al. 2022, ApJS 259, 61; https://camels-multifield-dataset.readthedocs.io)
ships each field of each suite and set as one ``.npy`` array
``Maps_{field}_{suite}_{set}_z=0.00.npy`` of shape ``(15 * n_sims, 256, 256)``
(15 projected maps of every simulation, periodic 25 Mpc/h boxes at z = 0) and
the parameters of every simulation in ``params_{set}_{suite}.txt`` of shape
``(n_sims, 6)``: Omega_m, sigma_8, A_SN1, A_AGN1, A_SN2, A_AGN2; map ``i``
belongs to simulation ``i // 15``.

:func:`read_cmd` turns a set of fields into one popstore store (one input
variable per field, the 6 parameters as labels, ``simulation(sample)`` to keep
the 15 maps of a simulation together) and splits it *by simulation*, so no
simulation is shared between train and test (CMD: 90/5/5 per cent, seed 1).
Maps are optionally smoothed with a periodic Gaussian beam (CMD's optional
preprocessing, ``scipy.ndimage.gaussian_filter(mode="wrap")``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from popstore.cf import SOLAR_MASS, megaparsec_over_h
from popstore.simulator import Axis, Output, Parameter, Simulator
from popstore.splits import split as split_store
from popstore.store import choose_layout, create_store, write_variables

MAPS_PER_SIMULATION = 15
BOX_SIZE = 25.0  # Mpc/h, side of every CAMELS box

#: CMD parameters with the prior ranges of the LH sets (A_* sampled log-uniformly).
PARAMETERS = (
    Parameter("Omega_m", 0.1, 0.5, long_name="matter density parameter"),
    Parameter("sigma_8", 0.6, 1.0, long_name="rms linear matter fluctuation in 8 Mpc/h spheres"),
    Parameter("A_SN1", 0.25, 4.0, log=True, long_name="supernova feedback: energy per unit SFR (relative)"),
    Parameter("A_AGN1", 0.25, 4.0, log=True, long_name="AGN feedback: energy per unit accretion (relative)"),
    Parameter("A_SN2", 0.5, 2.0, log=True, long_name="supernova feedback: wind speed (relative)"),
    Parameter("A_AGN2", 0.5, 2.0, log=True, long_name="AGN feedback: ejection speed / burstiness (relative)"),
)

CAMELS_H = 0.6711  # h of every CAMELS simulation
# (Msun/h)/(Mpc/h)^2 = h Msun Mpc^-2, as a UDUNITS/astropy unit (see popstore.cf)
_SURFACE_DENSITY = f"{float(SOLAR_MASS.split()[0]) * CAMELS_H:.7g} kg megaparsec-2"
#: Units and descriptions of the CMD fields (projected through the 25 Mpc/h box).
FIELDS: Mapping[str, tuple[str, str]] = {
    "Mgas": (_SURFACE_DENSITY, "gas mass surface density"),
    "Vgas": ("km s-1", "gas velocity magnitude"),
    "T": ("K", "gas temperature"),
    "P": ("CMD native units", "gas pressure"),
    "Z": ("1", "gas metallicity"),
    "HI": (_SURFACE_DENSITY, "neutral hydrogen surface density"),
    "ne": ("CMD native units", "electron number density"),
    "B": ("gauss", "magnetic field magnitude"),
    "MgFe": ("1", "magnesium-to-iron ratio"),
    "Mcdm": (_SURFACE_DENSITY, "dark matter surface density"),
    "Vcdm": ("km s-1", "dark matter velocity magnitude"),
    "Mstar": (_SURFACE_DENSITY, "stellar mass surface density"),
    "Mtot": (_SURFACE_DENSITY, "total matter surface density"),
}
#: CMD's input transform of each field (benchmark data loader: log10 of every field, log10(x + 1) for Mstar,
#: whose maps have empty pixels), stored as each variable's ``transform`` attribute, the default of
#: :func:`popstore.estimators.data.prepare`.
TRANSFORMS: Mapping[str, str] = {f: "log10(x + 1)" if f == "Mstar" else "log10" for f in FIELDS}


def maps_file(folder: str | Path, field: str, suite: str, set_name: str = "LH") -> Path:
    """Path of CMD's map file of one field."""
    return Path(folder) / f"Maps_{field}_{suite}_{set_name}_z=0.00.npy"


def params_file(folder: str | Path, suite: str, set_name: str = "LH") -> Path:
    """Path of CMD's parameter table."""
    return Path(folder) / f"params_{set_name}_{suite}.txt"


class CMDMaps(Simulator):
    """CMD map files behind the simulator protocol: ``seed`` is the global map index.

    Nothing is simulated: :meth:`simulate` returns the stored maps of map
    ``seed`` (smoothed if asked), which makes the files describable by the
    same store template as every simulator.
    """

    name = "cmd"
    version = "1"

    def __init__(self, folder: str | Path, fields: Sequence[str], suite: str, set_name: str = "LH",
                 smoothing: float = 0.0) -> None:
        if not fields:
            raise ValueError("give at least one CMD field")
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"unknown CMD fields {unknown}; known: {sorted(FIELDS)}")
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0 pixels, got {smoothing}")
        self.folder, self.fields, self.suite, self.set_name = Path(folder), list(fields), suite, set_name
        self.smoothing = float(smoothing)
        self._maps = {f: np.load(self._file(f), mmap_mode="r") for f in self.fields}
        shapes = {f: m.shape for f, m in self._maps.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"CMD map files disagree in shape: {shapes}")
        shape = shapes[self.fields[0]]
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(f"CMD maps must be (n_maps, npix, npix), got {shape}")
        self.n_maps, self.npix = shape[0], shape[1]
        self.table = self._read_params()
        if self.n_maps != MAPS_PER_SIMULATION * len(self.table):
            raise ValueError(f"{self.n_maps} maps for {len(self.table)} simulations; CMD has "
                             f"{MAPS_PER_SIMULATION} maps per simulation")

    def _file(self, field: str) -> Path:
        path = maps_file(self.folder, field, self.suite, self.set_name)
        if not path.exists():
            raise FileNotFoundError(f"no CMD map file {path}")
        return path

    def _read_params(self) -> pd.DataFrame:
        path = params_file(self.folder, self.suite, self.set_name)
        if not path.exists():
            raise FileNotFoundError(f"no CMD parameter file {path}")
        table = np.loadtxt(path, ndmin=2)
        if table.shape[1] != len(PARAMETERS):
            raise ValueError(f"{path}: expected {len(PARAMETERS)} columns, got {table.shape[1]}")
        return pd.DataFrame(table, columns=[p.name for p in PARAMETERS])

    @property
    def parameters(self) -> tuple[Parameter, ...]:
        return PARAMETERS

    @property
    def axes(self) -> tuple[Axis, ...]:
        return (
            Axis.linear("y", 0.0, BOX_SIZE, self.npix, units=megaparsec_over_h(CAMELS_H), long_name="comoving y"),
            Axis.linear("x", 0.0, BOX_SIZE, self.npix, units=megaparsec_over_h(CAMELS_H), long_name="comoving x"),
        )

    @property
    def outputs(self) -> tuple[Output, ...]:
        return tuple(Output(f, ("y", "x"), units=FIELDS[f][0], long_name=FIELDS[f][1],
                            attrs={"cmd_smoothing_pixels": self.smoothing, "transform": TRANSFORMS[f]}) for f in self.fields)

    @property
    def config(self) -> dict[str, Any]:
        return {"folder": str(self.folder.resolve()), "fields": self.fields, "suite": self.suite,
                "set": self.set_name, "smoothing": self.smoothing, "n_maps": self.n_maps, "npix": self.npix}

    def read(self, maps: slice) -> dict[str, np.ndarray]:
        """Maps ``maps`` of every field as float32 ``(n, npix, npix)``, smoothed if configured."""
        out = {}
        for f in self.fields:
            block = np.asarray(self._maps[f][maps], dtype=np.float32)
            if self.smoothing > 0:
                block = gaussian_filter(block, sigma=(0.0, self.smoothing, self.smoothing), mode="wrap")
            out[f] = block
        return out

    def simulate(self, params: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
        if not 0 <= seed < self.n_maps:
            raise IndexError(f"map index {seed} outside [0, {self.n_maps})")
        return {f: a[0] for f, a in self.read(slice(seed, seed + 1)).items()}

    def labels(self) -> pd.DataFrame:
        """One row of parameters per map (each simulation's row repeated 15 times)."""
        return self.table.loc[np.arange(self.n_maps) // MAPS_PER_SIMULATION].reset_index(drop=True)


def read_cmd(
    folder: str | Path,
    store: str | Path,
    fields: Sequence[str],
    suite: str,
    set_name: str = "LH",
    smoothing: float = 0.0,
    samples_per_chunk: int = MAPS_PER_SIMULATION,
    split: tuple[float, float, int] | None = (0.05, 0.05, 1),
    progress: bool = True,
) -> Path:
    """Write CMD maps of ``fields`` into a new popstore store; return its path.

    Parameters
    ----------
    folder
        Folder holding ``Maps_{field}_{suite}_{set}_z=0.00.npy`` and ``params_{set}_{suite}.txt``.
    store
        New store path (must not exist).
    fields
        CMD field names, each becoming one input variable (several = multifield).
    smoothing
        Standard deviation of a periodic Gaussian smoothing, pixels (0: none).
    samples_per_chunk
        Maps per Zarr chunk (default: one simulation's 15 maps, 3.9 MB per 256^2 field).
    split
        ``(test, valid, seed)`` of a split by simulation (test fraction of all
        simulations, valid fraction of the rest; CMD: 5 % + 5 %, seed 1), or
        ``None`` to leave the store unsplit.
    """
    sim = CMDMaps(folder, fields, suite, set_name, smoothing)
    path = Path(store)
    layout = choose_layout(sim, sim.n_maps, samples_per_chunk)
    create_store(path, sim, sim.labels(), np.arange(sim.n_maps, dtype=np.int64), layout)
    for block in tqdm(layout.blocks(), desc=f"CMD {suite}", unit="block", disable=not progress):
        maps = sim.read(block)
        xr.Dataset({f: (("sample", "y", "x"), a) for f, a in maps.items()}).to_zarr(
            path, region={"sample": block}, mode="r+", zarr_format=3, consolidated=False)
        done = np.ones(block.stop - block.start, dtype=bool)
        xr.Dataset({"done": ("sample", done)}).to_zarr(
            path, region={"sample": block}, mode="r+", zarr_format=3, consolidated=False)
    simulation = np.arange(sim.n_maps, dtype=np.int64) // MAPS_PER_SIMULATION
    write_variables(path, {"simulation": xr.DataArray(simulation, dims="sample",
                                                      attrs={"role": "diagnostic", "long_name": "CAMELS simulation index"})})
    if split is not None:
        test, valid, seed = split
        split_store(path, test=test, valid=valid, seed=seed, groups="simulation")
    return path
