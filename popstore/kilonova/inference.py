"""The binary behind an observed kilonova: a photometric likelihood and an MCMC posterior.

Parameters are those of the DU17 model, ``(m1, m2, lambda1, lambda2)`` with the
ordering and the ranges of the training prior (:mod:`popstore.kilonova.params`:
masses uniform in ``m_range``, deformabilities log-uniform in ``lambda_range``,
``m1 >= m2``, ``lambda1 <= lambda2``). The walkers move in
``(m1, m2, log10 lambda1, log10 lambda2)``, where that prior is flat.

Two forward models map binaries to apparent magnitudes at the observed
(time, band) points, both vectorised over binaries:

- :class:`DU17Photometry`: the DU17 model itself (:func:`~popstore.kilonova.lightcurve.light_curves`);
- :class:`EmulatorPhotometry`: a :class:`~popstore.estimators.emulator.CurveEmulator`
  (its central curve, temperature 0, linearly interpolated in time).

Likelihood (:func:`log_likelihood`): independent Gaussians of width
``sqrt(err^2 + floor^2)`` for detections (``floor``: the model's systematic
error, in mag), and ``Phi((m_model - m_lim) / floor)`` for upper limits (the
probability that the model is fainter than the limit). DU17 defines no
magnitude outside its bolometric-correction range (early times, and late times
in u and g); such a point counts as a *miss* of ``miss_mag`` magnitudes, so a
model that predicts nothing cannot beat one that predicts the data.

Sampling: the affine-invariant ensemble sampler of Goodman & Weare 2010 as
implemented in emcee (Foreman-Mackey et al. 2013, PASP 125, 306).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.special import log_ndtr

from popstore.errors import UserError
from popstore.kilonova.ejecta import ejecta_from_binary
from popstore.kilonova.lightcurve import DU17Settings, bolometric_correction, light_curves
from popstore.kilonova.params import LABELS, binary_table
from popstore.kilonova.photometry import Observer

#: Derived quantities stored with every posterior.
DERIVED = ("chirp_mass", "mass_ratio", "lambda_tilde", "ejecta_mass", "ejecta_velocity")


@dataclass(frozen=True)
class LikelihoodSettings:
    """``floor`` [mag]: added in quadrature to every error (and the width of an upper limit);
    ``miss_mag`` [mag]: the residual charged where the model gives no magnitude."""

    floor: float = 0.5
    miss_mag: float = 2.0

    def __post_init__(self) -> None:
        if not (self.floor > 0 and self.miss_mag >= 0):
            raise UserError(f"need an error floor > 0 mag and miss_mag >= 0, got {self.floor}, {self.miss_mag}")


def log_likelihood(model: np.ndarray, data: xr.Dataset, settings: LikelihoodSettings = LikelihoodSettings()
                   ) -> np.ndarray:
    """ln L of ``model`` apparent magnitudes (n, n_obs) given the observations ``data``: shape (n,).

    Detections: ``-0.5 r^2 / s^2 - ln(sqrt(2 pi) s)`` with ``s^2 = err^2 + floor^2``;
    upper limits: ``ln Phi((model - limit) / floor)``; an undefined (NaN) model
    point: the detection term with ``r = miss_mag`` (and ``s = floor`` for a limit).
    """
    model = np.atleast_2d(np.asarray(model, dtype=float))
    mag = data["mag"].values
    limit = data["upper_limit"].values
    if model.shape[-1] != mag.size:
        raise ValueError(f"model has {model.shape[-1]} points, data {mag.size}")
    s = np.where(limit, settings.floor, np.sqrt(np.nan_to_num(data["mag_err"].values) ** 2 + settings.floor**2))
    missing = ~np.isfinite(model)
    r = np.where(missing, settings.miss_mag, model - mag)
    gauss = -0.5 * (r / s) ** 2 - np.log(np.sqrt(2 * np.pi) * s)
    with np.errstate(invalid="ignore"):
        upper = log_ndtr(np.where(missing, 0.0, model - mag) / settings.floor)
    return np.where(limit & ~missing, upper, gauss).sum(axis=-1)


class Prior:
    """The training prior of the DU17 stores, flat in ``(m1, m2, log10 lambda1, log10 lambda2)``."""

    def __init__(self, m_range: Sequence[float] = (1.0, 2.0), lambda_range: Sequence[float] = (50.0, 5000.0)):
        self.m_range = (float(m_range[0]), float(m_range[1]))
        self.lambda_range = (float(lambda_range[0]), float(lambda_range[1]))
        if not (0 < self.m_range[0] < self.m_range[1] and 0 < self.lambda_range[0] < self.lambda_range[1]):
            raise UserError(f"need increasing positive ranges, got m {self.m_range}, lambda {self.lambda_range}")
        lam = np.log10(self.lambda_range)
        self.lo = np.array([self.m_range[0], self.m_range[0], lam[0], lam[0]])
        self.hi = np.array([self.m_range[1], self.m_range[1], lam[1], lam[1]])

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """0 inside the box with ``m1 >= m2`` and ``lambda1 <= lambda2``, ``-inf`` outside; ``x`` (n, 4) sampled coords."""
        x = np.atleast_2d(x)
        ok = np.all((x >= self.lo) & (x <= self.hi), axis=1) & (x[:, 0] >= x[:, 1]) & (x[:, 2] <= x[:, 3])
        return np.where(ok, 0.0, -np.inf)

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` draws in sampled coordinates."""
        return to_sampled(binary_table(n, seed, self.m_range, self.lambda_range)[list(LABELS)].to_numpy())


def to_sampled(params: np.ndarray) -> np.ndarray:
    """``(m1, m2, lambda1, lambda2) -> (m1, m2, log10 lambda1, log10 lambda2)``."""
    p = np.array(params, dtype=float)
    p[..., 2:] = np.log10(p[..., 2:])
    return p


def from_sampled(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_sampled`."""
    p = np.array(x, dtype=float)
    p[..., 2:] = 10.0 ** p[..., 2:]
    return p


def _band_index(data: xr.Dataset) -> tuple[tuple[str, ...], np.ndarray]:
    bands = tuple(dict.fromkeys(str(b) for b in data["band"].values))
    return bands, np.array([bands.index(str(b)) for b in data["band"].values])


class DU17Photometry:
    """Apparent DU17 magnitudes of binaries at the observed points: ``model(params (n, 4)) -> (n, n_obs)``."""

    def __init__(self, data: xr.Dataset, observer: Observer = Observer(), settings: DU17Settings = DU17Settings()):
        self.bands, self.band_index = _band_index(data)
        self.time = data["time"].values
        self.offset = observer.offsets(self.bands)[self.band_index]
        self.settings = settings

    def __call__(self, params: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(params)
        mags = light_curves(*p.T, self.time, self.bands, self.settings)  # (n, band, obs)
        obs = np.arange(self.time.size)
        return mags[:, self.band_index, obs] + self.offset


class EmulatorPhotometry:
    """Apparent magnitudes from a curve emulator, masked where DU17 defines none.

    The emulator's central curve (temperature 0) on its time grid is
    interpolated linearly to the observed times; binaries are turned into the
    emulator's labels first when it is conditioned on ejecta quantities
    (``ejecta_mass``, ``ejecta_velocity``, ``theta_ej``: the cheap DU17 ejecta
    fits). Where DU17's bolometric correction is undefined (it depends only on
    ``t / Mej^(1/3.2)``, from the same fits) or outside the emulated times, the
    magnitude is NaN, exactly as for :class:`DU17Photometry`; the curve itself
    comes from the emulator.
    """

    _EJECTA = {"ejecta_mass": "mass", "ejecta_velocity": "velocity", "theta_ej": "theta", "phi_ej": "phi"}

    def __init__(self, data: xr.Dataset, emulator, observer: Observer = Observer()):
        self.emulator = emulator
        self.bands, self.band_index = _band_index(data)
        emu_bands = [str(b) for b in emulator.coords["band"]]
        missing = [b for b in self.bands if b not in emu_bands]
        if missing:
            raise UserError(f"the emulator has no band {missing}; it emulates {emu_bands}")
        unknown = [n for n in emulator.label_names if n not in (*LABELS, *self._EJECTA)]
        if unknown:
            raise UserError(f"cannot compute emulator labels {unknown} from a binary")
        self.emu_band = np.array([emu_bands.index(b) for b in self.bands])[self.band_index]
        grid = np.asarray(emulator.coords["time"], dtype=float)
        self.time = data["time"].values
        self.inside = (self.time >= grid[0]) & (self.time <= grid[-1])
        k = np.clip(np.searchsorted(grid, self.time) - 1, 0, grid.size - 2)
        self.k = k
        self.w = np.clip((self.time - grid[k]) / (grid[k + 1] - grid[k]), 0.0, 1.0)
        self.offset = observer.offsets(self.bands)[self.band_index]

    @classmethod
    def labels_of(cls, emulator, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``emulator``'s labels (n, n_label) and the ejecta masses (n,) of binaries ``params`` (n, 4)."""
        p = np.atleast_2d(params)
        ej = ejecta_from_binary(*p.T)
        cols = {**dict(zip(LABELS, p.T)), **{k: getattr(ej, v) for k, v in cls._EJECTA.items()}}
        return np.stack([cols[n] for n in emulator.label_names], axis=1), ej.mass

    def __call__(self, params: np.ndarray) -> np.ndarray:
        labels, mass = self.labels_of(self.emulator, params)
        out = np.full((len(labels), self.time.size), np.nan)
        ok = mass > 0  # no ejecta: no light curve, as in DU17
        if ok.any():
            curves = self.emulator.sample(labels[ok], n_draws=1, temperature=0.0)[:, 0]  # (n, band, time)
            b = self.emu_band
            out[ok] = (1 - self.w) * curves[:, b, self.k] + self.w * curves[:, b, self.k + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            tt = self.time / (100.0 * mass[:, None]) ** (1 / 3.2)
        defined = np.zeros(out.shape, bool)
        for j, band in enumerate(self.bands):  # a handful of bands
            cols = self.band_index == j
            defined[:, cols] = np.isfinite(bolometric_correction(band, tt[:, cols]))
        return np.where(defined & self.inside, out + self.offset, np.nan)


def log_posterior_fn(model: Callable[[np.ndarray], np.ndarray], data: xr.Dataset, prior: Prior,
                     settings: LikelihoodSettings = LikelihoodSettings()) -> Callable[[np.ndarray], np.ndarray]:
    """A vectorised ``ln p(x | data)`` (up to a constant) of sampled coordinates ``x`` (n, 4)."""

    def log_post(x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        lp = prior.log_prob(x)
        ok = np.isfinite(lp)
        if ok.any():
            lp[ok] += log_likelihood(model(from_sampled(x[ok])), data, settings)
        return lp

    return log_post


@dataclass(frozen=True)
class SamplerSettings:
    """emcee settings: walkers, steps, burn-in steps dropped, thinning, seed."""

    n_walkers: int = 32
    n_steps: int = 3000
    burn: int = 1000
    thin: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.n_walkers >= 8 and self.n_steps > self.burn >= 0 and self.thin >= 1):
            raise UserError(f"need >= 8 walkers (twice the 4 parameters), steps > burn >= 0 and thin >= 1, got "
                            f"{self.n_walkers}, {self.n_steps}, {self.burn}, {self.thin}")


def run_mcmc(log_post: Callable[[np.ndarray], np.ndarray], prior: Prior, cfg: SamplerSettings = SamplerSettings()
             ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Sample ``log_post`` with emcee; walkers start at the best of 2000 prior draws, spread a little.

    Returns ``(x, log_post_values, info)``: post-burn-in, thinned samples in
    sampled coordinates (n, 4), their ``ln p`` and the sampler's acceptance
    fraction and integrated autocorrelation time (steps, the longest over parameters).
    """
    import emcee

    rng = np.random.default_rng(cfg.seed)
    trial = prior.sample(2000, cfg.seed)
    lp = log_post(trial)
    best = trial[np.argsort(lp)[::-1][: cfg.n_walkers]]  # the highest-posterior prior draws
    sampler = emcee.EnsembleSampler(cfg.n_walkers, best.shape[1], log_post, vectorize=True)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()  # emcee's own generator
    sampler.run_mcmc(best, cfg.n_steps, progress=False)
    x = sampler.get_chain(discard=cfg.burn, thin=cfg.thin, flat=True)
    lpx = sampler.get_log_prob(discard=cfg.burn, thin=cfg.thin, flat=True)
    tau = sampler.get_autocorr_time(discard=cfg.burn, quiet=True)
    return x, lpx, {"acceptance": float(np.mean(sampler.acceptance_fraction)), "autocorr_steps": float(np.max(tau))}


def derived(params: np.ndarray) -> dict[str, np.ndarray]:
    """Chirp mass [Msun], mass ratio m2/m1, Lambda-tilde and the DU17 ejecta mass [Msun] and velocity [c].

    ``Lambda~ = 16/13 [(m1 + 12 m2) m1^4 L1 + (m2 + 12 m1) m2^4 L2] / (m1 + m2)^5``
    (Flanagan & Hinderer 2008; Favata 2014, PRL 112, 101101, eq. 5), the
    combination a gravitational-wave signal measures.
    """
    m1, m2, l1, l2 = np.atleast_2d(params).T
    mt = m1 + m2
    ej = ejecta_from_binary(m1, m2, l1, l2)
    return {
        "chirp_mass": (m1 * m2) ** 0.6 / mt**0.2,
        "mass_ratio": m2 / m1,
        "lambda_tilde": 16 / 13 * ((m1 + 12 * m2) * m1**4 * l1 + (m2 + 12 * m1) * m2**4 * l2) / mt**5,
        "ejecta_mass": ej.mass,
        "ejecta_velocity": ej.velocity,
    }


_UNITS = {"m1": "Msun", "m2": "Msun", "lambda1": "1", "lambda2": "1", "chirp_mass": "Msun", "mass_ratio": "1",
          "lambda_tilde": "1", "ejecta_mass": "Msun", "ejecta_velocity": "c", "log_posterior": "1"}


def posterior_dataset(x: np.ndarray, log_post: np.ndarray, attrs: dict) -> xr.Dataset:
    """Posterior samples (sampled coordinates ``x``) with the derived quantities, as an xarray dataset on ``draw``."""
    params = from_sampled(x)
    cols = {**dict(zip(LABELS, params.T)), **derived(params), "log_posterior": log_post}
    return xr.Dataset({k: ("draw", np.asarray(v, float), {"units": _UNITS[k]}) for k, v in cols.items()},
                      attrs={k: (str(v) if isinstance(v, (bool, type(None))) else v) for k, v in attrs.items()})


def median_shift(a: xr.Dataset, b: xr.Dataset, names: Sequence[str]) -> dict[str, float]:
    """``(median_b - median_a) / width_a`` per quantity; width = half the 16-84% interval of ``a``."""
    out = {}
    for n in names:
        lo, med, hi = np.percentile(a[n].values, [16, 50, 84])
        out[n] = float((np.median(b[n].values) - med) / (0.5 * (hi - lo)))
    return out


def fit(model: Callable[[np.ndarray], np.ndarray], data: xr.Dataset, prior: Prior = Prior(),
        likelihood: LikelihoodSettings = LikelihoodSettings(), sampler: SamplerSettings = SamplerSettings(),
        attrs: dict | None = None) -> xr.Dataset:
    """Posterior samples of a binary given photometry ``data`` and a forward ``model`` (see :func:`run_mcmc`).

    The dataset's attributes record the likelihood and sampler settings, the
    data source, the wall time and the sampler diagnostics.
    """
    import time

    t0 = time.perf_counter()
    x, lp, info = run_mcmc(log_posterior_fn(model, data, prior, likelihood), prior, sampler)
    meta = {**(attrs or {}), "data": data.attrs.get("source", ""), "n_obs": int(data.sizes["obs"]),
            "floor_mag": likelihood.floor, "miss_mag": likelihood.miss_mag, "m_range": list(prior.m_range),
            "lambda_range": list(prior.lambda_range), **{f"sampler_{k}": v for k, v in vars(sampler).items()},
            **info, "wall_s": time.perf_counter() - t0}
    return posterior_dataset(x, lp, meta)
