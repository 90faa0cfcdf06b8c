"""The moment-network loss (Jeffrey & Wandelt 2020, arXiv:2011.05991; CMD ``o3_err``).

For each label j, with posterior mean mu, standard deviation sigma and truth y,

    L_j = log < (mu - y)^2 >_batch + log < ((mu - y)^2 - sigma^2)^2 >_batch

and the loss is the average of L_j over labels. Minimising the first term makes
mu the posterior mean; the second makes sigma^2 the posterior variance
E[(mu - y)^2 | x]. Taking logs balances labels (and the two moments) of very
different size.
"""

from __future__ import annotations

import torch


def moment_loss(mean: torch.Tensor, sigma: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Moment-network loss of a batch; inputs are ``[B, P]``, computed in float32."""
    if not (mean.shape == sigma.shape == truth.shape) or mean.ndim != 2:
        raise ValueError(f"mean, sigma, truth must share a [B, P] shape, got {mean.shape}, {sigma.shape}, {truth.shape}")
    mean, sigma, truth = mean.float(), sigma.float(), truth.float()
    sq = torch.square(mean - truth)
    loss1 = sq.mean(dim=0)
    loss2 = torch.square(sq - torch.square(sigma)).mean(dim=0)
    return (torch.log(loss1) + torch.log(loss2)).mean()
