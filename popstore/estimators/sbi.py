"""Neural posterior estimation (NPE) on stores, with the ``sbi`` package as the engine.

The density estimators (MAF, NSF, MDN, built by :func:`sbi.neural_nets.posterior_nn`), the
posterior (:class:`sbi.inference.DirectPosterior`), ensembles
(:class:`sbi.inference.EnsemblePosterior`) and the diagnostics (SBC, TARP, expected coverage,
:mod:`sbi.diagnostics`) are sbi's (Tejero-Cantero et al. 2020, JOSS 5, 2505; Boelts et al. 2025).
popstore adds what sbi does not have:

- :class:`ParameterSpace`: the prior of a store's labels (their recorded prior ranges; labels held
  fixed by ``[priors.fixed]`` left out; log-uniform labels inferred as log10);
- :func:`train_npe`: training that streams from the store through :class:`~popstore.MapDataset`
  (whole chunks, never the whole set in memory), through an embedding network over the chosen
  input variables, with the best-validation checkpoint, per-epoch losses and early stopping
  (sbi's own trainer needs every simulation in memory);
- :func:`load_posterior`: a checkpoint back into a :class:`~sbi.inference.DirectPosterior`.

The embedding networks are the research code's small CNN (Graber et al. 2024; two 3x3
convolutions of 32 and 64 channels with max-pooling, then a fully connected layer to a 32-d
summary), the trunk of the CMD ``o3_err`` network (:mod:`popstore.estimators.cnn`), and the
maps' azimuthally averaged log power spectrum followed by an MLP (:mod:`popstore.estimators.spectrum`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import xarray as xr
from sbi.inference import DirectPosterior
from sbi.neural_nets import posterior_nn
from sbi.utils import BoxUniform
from torch import nn
from tqdm.auto import tqdm

from popstore.checkpoints import load_checkpoint
from popstore.errors import UserError
from popstore.estimators.cnn import O3Err, O3ErrConfig
from popstore.estimators.preprocess import Preprocessor, fit_preprocessor
from popstore.estimators.spectrum import SpectrumEmbedding
from popstore.estimators.train import default_device
from popstore.store import label_names, open_store
from popstore.torchdata import MapDataset, make_loader

FORMAT_VERSION = 1
Embedding = Literal["cnn", "o3_err", "power_spectrum"]
DensityModel = Literal["maf", "nsf", "mdn", "zuko_maf", "zuko_nsf"]
ThetaScaling = Literal["independent", "transform_to_unconstrained"]


@dataclass(frozen=True)
class ParameterSpace:
    """The labels inferred and their prior: uniform on ``[low, high]``, or on ``[log10 low, log10 high]``
    where ``log`` (a log-uniform prior), in which space the posterior is learnt."""

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    log: tuple[bool, ...]

    @classmethod
    def from_store(cls, store: str | Path | xr.Dataset, labels: Sequence[str] | None = None) -> "ParameterSpace":
        """The prior of ``store``'s labels (default: every label that was not held fixed)."""
        ds = store if isinstance(store, xr.Dataset) else open_store(store)
        # stores from before the prior_fixed attr: a label with one value throughout was held fixed
        fixed = {n for n in label_names(ds) if ds[n].attrs.get("prior_fixed",
                                                                int(np.ptp(ds[n].values) == 0) if ds[n].size else 0)}
        names = [n for n in label_names(ds) if n not in fixed] if labels is None else list(labels)
        if not names:
            raise UserError("the store has no free labels to infer")
        for n in names:
            if n not in label_names(ds):
                raise UserError(f"{n!r} is not a label of the store; labels: {', '.join(label_names(ds))}")
            if n in fixed:
                raise UserError(f"label {n!r} was held fixed when the store was made: it has no prior to infer")
        attrs = [ds[n].attrs for n in names]
        return cls(tuple(names), tuple(float(a["prior_low"]) for a in attrs), tuple(float(a["prior_high"]) for a in attrs),
                   tuple(bool(a.get("prior_log", 0)) for a in attrs))

    def _bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi, log = (torch.as_tensor(v, dtype=torch.float64) for v in (self.low, self.high, self.log))
        return torch.where(log.bool(), lo.log10(), lo).float(), torch.where(log.bool(), hi.log10(), hi).float()

    def prior(self, device: str | torch.device = "cpu") -> BoxUniform:
        """sbi's :class:`~sbi.utils.BoxUniform` prior in the inference space."""
        lo, hi = self._bounds()
        return BoxUniform(lo.to(device), hi.to(device), device=str(device))

    def to_inference(self, theta: torch.Tensor) -> torch.Tensor:
        """Physical label values ``(..., n)`` -> inference space (log10 where ``log``)."""
        log = torch.as_tensor(self.log, device=theta.device)
        return torch.where(log, torch.log10(theta.clamp_min(torch.finfo(theta.dtype).tiny)), theta)

    def to_physical(self, theta: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_inference`."""
        log = torch.as_tensor(self.log, device=theta.device)
        return torch.where(log, 10.0**theta, theta)

    def table(self, theta: torch.Tensor, fixed: Mapping[str, float] | None = None) -> pd.DataFrame:
        """Parameter vectors ``theta`` ``(n, P)`` (inference space) as a table for :func:`popstore.generate`:
        physical units, the ``fixed`` labels as constant columns, and this prior in ``attrs["ranges"]``
        (a store of draws from a posterior or a truncated prior keeps the prior of the problem)."""
        fixed = dict(fixed or {})
        physical = self.to_physical(torch.as_tensor(theta, dtype=torch.float64)).cpu().numpy()
        table = pd.DataFrame(physical, columns=list(self.names)).assign(**fixed)
        table.attrs["ranges"] = dict(zip(self.names, zip(self.low, self.high)))
        table.attrs["fixed"] = sorted(fixed)
        return table


class SmallCNN(nn.Module):
    """The research code's embedding: conv3x3(32) -> ReLU -> maxpool2 -> conv3x3(64) -> ReLU -> maxpool2 ->
    fully connected to ``summary`` features (Graber et al. 2024; Pardo-Araujo et al. 2025)."""

    def __init__(self, n_channels: int, shape: tuple[int, int], summary: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(n_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.fc = nn.Linear(64 * (shape[0] // 4) * (shape[1] // 4), summary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def embedding_net(kind: Embedding, preprocessor: Preprocessor, sample: torch.Tensor, summary: int = 32,
                  hidden: int = 4) -> nn.Module:
    """Input preprocessing (log10 + standardisation with training statistics) followed by ``kind``'s trunk.

    ``sample``: a batch of raw input maps ``(B, C, H, W)``, which gives the shape and, for
    ``power_spectrum``, the statistics that standardise the spectrum (replaced by the saved ones on loading).
    """
    n_channels, shape = preprocessor.log10.numel(), tuple(sample.shape[2:])
    if kind == "cnn":
        trunk: nn.Module = SmallCNN(n_channels, shape, summary)
    elif kind == "o3_err":
        o3 = O3Err(O3ErrConfig(n_channels, 1, shape[0], hidden=hidden, npix_x=shape[1] if shape[1] != shape[0] else None))
        with torch.no_grad():  # in eval mode: batch norm cannot train on one map
            width = o3.features.eval()(torch.zeros(1, n_channels, *shape)).numel()
        o3.features.train()
        trunk = nn.Sequential(o3.features, nn.Flatten(), nn.Linear(width, summary))
    elif kind == "power_spectrum":
        with torch.no_grad():
            trunk = SpectrumEmbedding(preprocessor(sample), summary)
    else:
        raise UserError(f"unknown embedding {kind!r}; use 'cnn', 'o3_err' or 'power_spectrum'")
    return nn.Sequential(preprocessor, trunk)


@dataclass(frozen=True)
class NPEConfig:
    """Settings of one neural posterior estimator and its training.

    ``model``: sbi's density estimator (``maf``, ``nsf``, ``mdn`` of nflows; ``zuko_maf``, ``zuko_nsf`` of
    zuko); ``z_score_theta``: sbi's parameter scaling before the flow, ``independent`` (z-scored with the
    training labels' mean and standard deviation) or ``transform_to_unconstrained`` (the prior box mapped
    onto the real line by a logit-type bijection, so the flow has exactly the prior's support and need not
    learn its edges; zuko models only); ``embedding``: ``cnn``, ``o3_err`` or ``power_spectrum``;
    ``summary``: features the embedding hands to the estimator. Training: Adam at ``lr`` on batches of
    ``batch_size``, at most
    ``max_epochs``, stopping when the validation loss has not improved for ``patience`` epochs
    (sbi's default is 20); the best-validation weights are kept. ``lr_patience`` > 0 multiplies the
    learning rate by ``lr_factor`` whenever the validation loss has not improved for that many
    epochs (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau`); 0 keeps ``lr`` fixed, as sbi does.
    ``log10``: per-channel input log choice as in :func:`fit_preprocessor`.
    """

    inputs: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    model: DensityModel = "maf"
    z_score_theta: ThetaScaling = "independent"
    embedding: Embedding = "cnn"
    summary: int = 32
    hidden_features: int = 50
    num_transforms: int = 5
    lr: float = 5e-4
    lr_patience: int = 0
    lr_factor: float = 0.5
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 20
    log10: bool | str = "auto"
    seed: int = 0
    threads: int | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.z_score_theta == "transform_to_unconstrained" and not self.model.startswith("zuko_"):
            raise UserError(f"z_score_theta = 'transform_to_unconstrained' needs a zuko model (zuko_maf, zuko_nsf); "
                            f"got model {self.model!r}")


@dataclass
class NPEResult:
    """What :func:`train_npe` did: the checkpoint, the losses and learning rate per epoch and the best epoch."""

    checkpoint: Path
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    best_epoch: int = 0


def _build(cfg: NPEConfig, pre: Preprocessor, space: ParameterSpace, theta: torch.Tensor, x: torch.Tensor) -> nn.Module:
    """sbi's estimator, its theta scaling taken from ``theta`` (a batch in the inference space) or from the
    prior of ``space``, and the embedding's shape (and statistics, where it has any) from ``x`` (the matching maps)."""
    net = embedding_net(cfg.embedding, pre, x, cfg.summary)
    bounds = {"x_dist": space.prior()} if cfg.z_score_theta == "transform_to_unconstrained" else {}
    build = posterior_nn(model=cfg.model, embedding_net=net, z_score_theta=cfg.z_score_theta, z_score_x="none",
                         hidden_features=cfg.hidden_features, num_transforms=cfg.num_transforms, **bounds)
    net.eval()  # sbi probes the embedding with one map, which batch norm (o3_err) cannot train on
    return build(theta, x).train()


def _epoch_loss(estimator: nn.Module, loader, space: ParameterSpace, device: torch.device,
                optimizer: torch.optim.Optimizer | None = None) -> float:
    total, n = 0.0, 0
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        theta = space.to_inference(y.to(device, dtype=torch.float32))
        loss = estimator.loss(theta, condition=x).mean()
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(estimator.parameters(), 5.0)  # sbi's default clip_max_norm
            optimizer.step()
        total += loss.item() * len(x)
        n += len(x)
    return total / max(n, 1)


class _Interleaved:
    """Batches of several loaders in one epoch, in a random order of loaders (seeded per epoch): each
    store keeps its own chunk-aware batches, and the stores are mixed across the epoch."""

    def __init__(self, loaders: Sequence, seed: int) -> None:
        self.loaders, self.seed, self.epoch = list(loaders), seed, 0

    def __iter__(self):
        order = np.repeat(np.arange(len(self.loaders)), [len(lo) for lo in self.loaders])
        np.random.default_rng([self.seed, self.epoch]).shuffle(order)
        self.epoch += 1
        iterators = [iter(lo) for lo in self.loaders]
        for k in order:
            batch = next(iterators[k], None)
            if batch is not None:
                yield batch


def _stores(store: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [store] if isinstance(store, (str, os.PathLike)) else list(store)


def train_npe(store: str | Path | Sequence[str | Path], out: str | Path, config: NPEConfig = NPEConfig(),
              progress: bool = True) -> NPEResult:
    """Train one posterior estimator on the train split of ``store`` (validated on ``valid``), streaming
    batches from the store; the best-validation weights go to ``out`` (a ``.pt`` file).

    ``store`` may be several stores of one simulator and prior (e.g. the rounds of truncated sequential
    NPE, :mod:`popstore.estimators.tsnpe`): every store's train split is used, their batches interleaved.
    """
    cfg = config
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = default_device(cfg.device)
    stores = _stores(store)
    space = ParameterSpace.from_store(stores[0], cfg.labels)
    for s in stores[1:]:
        if ParameterSpace.from_store(s, cfg.labels) != space:
            raise UserError(f"{s} has other labels or another prior than {stores[0]}: they cannot be trained on together")
    inputs = list(cfg.inputs) if cfg.inputs else None
    trains = [MapDataset(s, "train", inputs, list(space.names), normalize="none") for s in stores]
    valids = [MapDataset(s, "valid", trains[0].inputs, trains[0].labels, normalize="none") for s in stores]
    if sum(map(len, valids)) == 0:
        raise UserError(f"{stores[0]}: the valid split is empty; split with valid > 0")
    pin = device.type == "cuda"
    train_loader = _Interleaved([make_loader(t, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                             drop_last=len(t) > cfg.batch_size, pin_memory=pin) for t in trains], cfg.seed)
    valid_loader = _Interleaved([make_loader(v, cfg.batch_size, shuffle=False, pin_memory=pin) for v in valids if len(v)],
                                cfg.seed)
    pre = fit_preprocessor((x for t in trains for x, _ in make_loader(t, 512, shuffle=False)), cfg.log10)
    first = [next(iter(make_loader(t, min(len(t), 2048), shuffle=True, seed=cfg.seed))) for t in trains]
    x0, y0 = torch.cat([x for x, _ in first]), torch.cat([y for _, y in first])
    shape = tuple(x0.shape[2:])
    if len(shape) != 2:
        raise UserError(f"NPE embeddings take 2D maps; the inputs {trains[0].inputs} give samples of shape "
                        f"{tuple(x0.shape[1:])}")
    estimator = _build(cfg, pre, space, space.to_inference(y0.float()), x0).to(device)
    optimizer = torch.optim.Adam(estimator.parameters(), lr=cfg.lr)
    scheduler = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience)
                 if cfg.lr_patience > 0 else None)
    result = NPEResult(Path(out))
    best, best_state, stale = math.inf, None, 0
    bar = tqdm(range(cfg.max_epochs), desc="NPE", unit="epoch", disable=not progress)
    for epoch in bar:
        estimator.train()
        result.learning_rate.append(optimizer.param_groups[0]["lr"])
        result.train_loss.append(_epoch_loss(estimator, train_loader, space, device, optimizer))
        estimator.eval()
        with torch.no_grad():
            result.valid_loss.append(_epoch_loss(estimator, valid_loader, space, device))
        bar.set_postfix(train=f"{result.train_loss[-1]:.3f}", valid=f"{result.valid_loss[-1]:.3f}")
        if result.valid_loss[-1] < best:
            best, result.best_epoch, stale = result.valid_loss[-1], epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in estimator.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
        if scheduler is not None:
            scheduler.step(result.valid_loss[-1])
    result.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    partial = result.checkpoint.with_name(f".{result.checkpoint.name}.partial")  # renamed when whole
    torch.save({
        "format_version": FORMAT_VERSION, "kind": "popstore.npe", "config": {**asdict(cfg)},
        "space": asdict(space), "inputs": list(trains[0].inputs), "shape": list(shape),
        "preprocessor": pre.to_dict(), "state_dict": best_state,
        "train_loss": result.train_loss, "valid_loss": result.valid_loss, "best_epoch": result.best_epoch,
        "learning_rate": result.learning_rate,
    }, partial)
    os.replace(partial, result.checkpoint)
    return result


def load_posterior(path: str | Path, device: str | None = None) -> tuple[DirectPosterior, ParameterSpace, list[str]]:
    """A checkpoint of :func:`train_npe` as an sbi posterior (in the inference space), its
    :class:`ParameterSpace` and the store variables it reads as channels. Loaded through
    :func:`popstore.checkpoints.load_checkpoint`: a checkpoint holds tensors, numbers and strings, never code."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no posterior checkpoint at {path}")
    blob = load_checkpoint(path)
    if blob.get("kind") != "popstore.npe" or blob.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} is not a popstore NPE checkpoint (format {FORMAT_VERSION})")
    cfg_dict = dict(blob["config"])
    for k in ("inputs", "labels"):
        cfg_dict[k] = tuple(cfg_dict[k]) if cfg_dict[k] is not None else None
    cfg = NPEConfig(**cfg_dict)
    space = ParameterSpace(**{k: tuple(v) for k, v in blob["space"].items()})
    pre = Preprocessor(**blob["preprocessor"])
    shape = tuple(blob["shape"])
    theta = space.prior().sample((2,))
    x = torch.zeros(2, pre.log10.numel(), *shape)  # one channel per map: a (survey, y, x) input gives several
    estimator = _build(cfg, pre, space, theta, x)
    estimator.load_state_dict(blob["state_dict"])
    dev = default_device(device)
    estimator.to(dev).eval()
    return DirectPosterior(estimator, space.prior(dev), device=str(dev)), space, list(blob["inputs"])


def posterior_draws(posterior, xs: torch.Tensor, n: int, seed: int = 0, progress: bool = False) -> np.ndarray:
    """``n`` posterior draws for each observation in ``xs`` ``(B, C, H, W)``: an array ``(n, B, P)`` (inference space)."""
    torch.manual_seed(seed)
    return posterior.sample_batched((n,), x=xs, show_progress_bars=progress).cpu().numpy()


def member_path(out_dir: str | Path, seed: int) -> Path:
    """Checkpoint of the ensemble member trained with ``seed``."""
    return Path(out_dir) / f"npe_seed{seed}.pt"


def train_ensemble(store: str | Path | Sequence[str | Path], out_dir: str | Path, config: NPEConfig, seeds: Sequence[int],
                   client=None, progress: bool = True, resources: dict[str, float] | None = None) -> list[Path]:
    """One estimator per seed (initial weights and batch order differ), each a Dask task on ``client``
    (in this process when None) needing the worker ``resources`` (e.g. ``{"GPU": 1}``). A member whose
    checkpoint exists is kept (checkpoints are written last), so a rerun after a kill trains only the
    members that did not finish."""
    from dataclasses import replace

    out_dir = Path(out_dir)
    todo = [s for s in seeds if not member_path(out_dir, s).exists()]
    if client is None:
        for s in tqdm(todo, desc="ensemble", unit="member", disable=not progress or len(todo) < 2):
            train_npe(store, member_path(out_dir, s), replace(config, seed=s), progress=progress)
    else:
        futures = [client.submit(train_npe, store, member_path(out_dir, s), replace(config, seed=s), False,
                                 key=f"npe-{out_dir.name}-seed{s}", pure=False, resources=resources) for s in todo]
        client.gather(futures)
    return [member_path(out_dir, s) for s in seeds]


def select_members(paths: Sequence[str | Path], worse_than: float | None) -> tuple[list[Path], list[Path]]:
    """``(kept, dropped)``: the members of one ensemble whose best validation loss is within ``worse_than``
    nats of the best member's, and the others (None keeps every member).

    The members were validated on the same split, so their losses compare: a member far above the best
    did not converge, and an equal-weight mixture with it is broader than the converged members agree on
    (over-conservative coverage).
    """
    paths = [Path(p) for p in paths]
    if worse_than is None:
        return paths, []
    if worse_than < 0:
        raise UserError(f"drop_members_worse_than must be >= 0 nats; got {worse_than}")
    best = np.array([min(load_checkpoint(p)["valid_loss"]) for p in paths])
    keep = best <= best.min() + worse_than
    return [p for p, k in zip(paths, keep) if k], [p for p, k in zip(paths, keep) if not k]


def load_ensemble(paths: Sequence[str | Path], device: str | None = None):
    """Checkpoints of one ensemble as sbi's :class:`~sbi.inference.EnsemblePosterior` (equal weights),
    with the members' common :class:`ParameterSpace` and inputs."""
    from sbi.inference import EnsemblePosterior

    members = [load_posterior(p, device) for p in paths]
    spaces = {m[1] for m in members}
    inputs = {tuple(m[2]) for m in members}
    if len(spaces) != 1 or len(inputs) != 1:
        raise UserError("ensemble members were trained on different labels, priors or inputs")
    if len(members) == 1:
        return members[0]
    return EnsemblePosterior([m[0] for m in members]), members[0][1], members[0][2]
