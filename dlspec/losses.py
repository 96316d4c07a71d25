"""Losses dlspec adds to torch's, for terms torch.nn has no class for.  Imported only when training (torch).

GaussianKLLoss is the KL term of a variational autoencoder: how far the encoder's diagonal Gaussian
q(z|x) = N(mu, exp(logvar)) is from the prior N(0, I), in closed form (Kingma & Welling 2014, appendix B):

    KL = -0.5 * sum(1 + logvar - mu^2 - exp(logvar))

summed over the code's values of a sample.  Its `reduction` is torch's KLDivLoss's: 'batchmean' (the
default: the sum over a sample's values, averaged over the batch), 'sum', 'mean' (over every value of the
batch) or 'none' (each value's term, the shape of mu).  'batchmean' is the KL of the ELBO per sample: a
code of 20 values costs 20 terms, as the reconstruction costs one term per pixel, so the two keep their
balance whatever the batch size or the code's size ('mean' would divide the KL by the code's size and
weaken it against a reconstruction summed over the pixels).

LOSSES names them for the `train:` section, beside torch.nn's *Loss classes: a loss term says
`GaussianKLLoss` and reads two outputs, (mu, logvar).
"""

from __future__ import annotations

import torch
from torch import nn

REDUCTIONS = ("batchmean", "sum", "mean", "none")


class GaussianKLLoss(nn.Module):
    """KL(N(mu, exp(logvar)) || N(0, I)) of each sample's diagonal Gaussian, reduced as `reduction` says."""

    def __init__(self, reduction: str = "batchmean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"GaussianKLLoss reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:  # (N, *S), (N, *S)
        if mu.shape != logvar.shape or mu.dim() < 1:
            raise ValueError(f"GaussianKLLoss reads a batch of mu and logvar of one shape (N, ...), got "
                             f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (N, *S): each value's term
        if self.reduction == "none":
            return kl
        if self.reduction == "sum":
            return kl.sum()
        if self.reduction == "mean":
            return kl.mean()
        return kl.sum() / mu.shape[0]  # batchmean: per sample, over the batch

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


LOSSES: dict[str, type[nn.Module]] = {"GaussianKLLoss": GaussianKLLoss}
