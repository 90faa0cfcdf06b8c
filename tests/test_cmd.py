"""CMD map files -> popstore store: round trip, labels, split by simulation, smoothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import popstore
from popstore.camels.importer import (
    FIELDS,
    MAPS_PER_SIMULATION,
    PARAMETERS,
    TRANSFORMS,
    CMDMaps,
    maps_file,
    params_file,
    read_cmd,
)
from popstore.store import input_names, label_names

N_SIMS, NPIX = 20, 16


def write_cmd_files(folder: Path, suite: str = "IllustrisTNG", n_sims: int = N_SIMS, seed: int = 0) -> dict:
    """Small files in CMD's layout: log-normal 'Mgas' and 'T' maps, a 6-column parameter table."""
    rng = np.random.default_rng(seed)
    lo = np.array([p.low for p in PARAMETERS])
    hi = np.array([p.high for p in PARAMETERS])
    params = lo + rng.random((n_sims, 6)) * (hi - lo)
    np.savetxt(params_file(folder, suite), params)
    maps = {}
    for field in ("Mgas", "T"):
        maps[field] = rng.lognormal(10.0, 1.0, size=(n_sims * MAPS_PER_SIMULATION, NPIX, NPIX)).astype(np.float32)
        np.save(maps_file(folder, field, suite), maps[field])
    return {"params": params, **maps}


@pytest.fixture(scope="module")
def cmd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cmd")
    files = write_cmd_files(folder)
    store = read_cmd(folder, folder / "tng.zarr", ["Mgas", "T"], "IllustrisTNG", split=(0.1, 0.1, 1), progress=False)
    return folder, files, store


def test_store_round_trip_and_schema(cmd) -> None:
    _, files, store = cmd
    ds = popstore.open_store(store)
    assert input_names(ds) == ["Mgas", "T"]
    assert label_names(ds) == [p.name for p in PARAMETERS]
    assert ds.sizes["sample"] == N_SIMS * MAPS_PER_SIMULATION
    assert bool(ds["done"].all())
    np.testing.assert_array_equal(ds["Mgas"].values, files["Mgas"])
    np.testing.assert_array_equal(ds["T"].values, files["T"])
    np.testing.assert_array_equal(ds["seed"].values, np.arange(N_SIMS * MAPS_PER_SIMULATION))
    i = np.arange(N_SIMS * MAPS_PER_SIMULATION)
    np.testing.assert_array_equal(ds["Omega_m"].values, files["params"][i // 15, 0])
    np.testing.assert_array_equal(ds["A_AGN2"].values, files["params"][i // 15, 5])
    assert ds["x"].attrs["units"] == "1.490091 megaparsec" and ds["x_bnds"].values[-1, 1] == pytest.approx(25.0)
    import astropy.units as u  # (Msun/h)/(Mpc/h)^2 with h = 0.6711
    assert u.Unit(ds["Mgas"].attrs["units"]).to(u.Msun / u.Mpc**2) == pytest.approx(0.6711, rel=1e-6)
    assert ds["Mgas"].attrs["role"] == "input"


def test_split_never_separates_the_maps_of_a_simulation(cmd) -> None:
    _, _, store = cmd
    ds = popstore.open_store(store)
    per_sim = ds["split"].values.reshape(N_SIMS, MAPS_PER_SIMULATION)
    assert np.all(per_sim == per_sim[:, :1])
    counts = {s: int((per_sim[:, 0] == s).sum()) for s in ("train", "valid", "test")}
    assert counts == {"test": 2, "valid": 2, "train": 16}  # 10 % of 20, then 10 % of the 18 left
    assert ds["split"].attrs["groups"] == "simulation"


def test_map_dataset_reads_multifield_channels(cmd) -> None:
    _, files, store = cmd
    data = popstore.MapDataset(store, "train", ["T", "Mgas"], ["Omega_m", "sigma_8"])
    x, y = data.batch([0, 1])
    assert x.shape == (2, 2, NPIX, NPIX)
    np.testing.assert_array_equal(x[:, 0].numpy(), files["T"][data.indices[:2]])
    np.testing.assert_array_equal(x[:, 1].numpy(), files["Mgas"][data.indices[:2]])
    assert y.min() >= 0.0 and y.max() <= 1.0  # min-max normalised with the training statistics


def test_smoothing_is_periodic_gaussian_and_conserves_mass(tmp_path) -> None:
    files = write_cmd_files(tmp_path, n_sims=2)
    store = read_cmd(tmp_path, tmp_path / "s.zarr", ["Mgas"], "IllustrisTNG", smoothing=1.5, split=None, progress=False)
    smoothed = popstore.open_store(store)["Mgas"].values
    raw = files["Mgas"]
    np.testing.assert_allclose(smoothed[7], gaussian_filter(raw[7], 1.5, mode="wrap"), rtol=1e-5)
    np.testing.assert_allclose(smoothed.sum(axis=(1, 2)), raw.sum(axis=(1, 2)), rtol=1e-5)  # wrap: no mass lost
    assert smoothed.std() < 0.6 * raw.std()
    sim = CMDMaps(tmp_path, ["Mgas"], "IllustrisTNG", smoothing=1.5)
    np.testing.assert_allclose(sim.simulate({}, 29)["Mgas"], smoothed[29], rtol=1e-6)


def test_cmd_fields_default_to_cmd_transforms(tmp_path) -> None:
    """CMD's preprocessing: log10 of every field, log10(x + 1) for Mstar (empty pixels are 0), unless overridden."""
    from popstore.estimators.data import DataConfig, prepare

    files = write_cmd_files(tmp_path)
    rng = np.random.default_rng(1)
    mstar = files["Mgas"] * 1e-3 * (rng.random(files["Mgas"].shape) < 0.3)
    np.save(maps_file(tmp_path, "Mstar", "IllustrisTNG"), mstar.astype(np.float32))
    store = read_cmd(tmp_path, tmp_path / "s.zarr", ["Mgas", "Mstar"], "IllustrisTNG", split=(0.1, 0.1, 1), progress=False)
    ds = popstore.open_store(store)
    assert ds["Mstar"].attrs["transform"] == TRANSFORMS["Mstar"] == "log10(x + 1)"
    assert ds["Mgas"].attrs["transform"] == "log10" and set(TRANSFORMS) == set(FIELDS)
    pre = prepare(store, DataConfig(labels=["Omega_m"], batch_size=32)).preprocessor
    assert pre.log10.tolist() == [True, True] and pre.offset.tolist() == [0.0, 1.0]
    train = ds["split"].values == "train"
    logged = np.log10(ds["Mstar"].values[train].astype(np.float64) + 1)
    assert pre.mean[1].item() == pytest.approx(logged.mean(), rel=1e-5)
    assert pre.std[1].item() == pytest.approx(logged.std(), rel=1e-5)
    pre = prepare(store, DataConfig(labels=["Omega_m"], transforms={"Mstar": "standardise"}, transform="none")).preprocessor
    assert pre.log10.tolist() == [True, False]  # Mgas keeps its stored CMD default; Mstar as asked


def test_bad_files_give_clear_errors(tmp_path) -> None:
    write_cmd_files(tmp_path, n_sims=2)
    with pytest.raises(FileNotFoundError, match="Maps_Mgas_SIMBA"):
        CMDMaps(tmp_path, ["Mgas"], "SIMBA")
    with pytest.raises(ValueError, match="unknown CMD fields"):
        CMDMaps(tmp_path, ["density"], "IllustrisTNG")
    np.save(maps_file(tmp_path, "Mgas", "IllustrisTNG"), np.ones((29, NPIX, NPIX), dtype=np.float32))
    with pytest.raises(ValueError, match="15 maps per simulation"):
        CMDMaps(tmp_path, ["Mgas"], "IllustrisTNG")
