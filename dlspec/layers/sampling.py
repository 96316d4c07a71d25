"""Sampling: Reparameterize, the reparameterisation trick of a variational autoencoder (Kingma & Welling 2014).

It reads two tensors of one shape, `from: [mu, logvar]`, the mean and the log-variance of a diagonal
Gaussian, and gives a sample mu + eps * exp(logvar / 2), eps ~ N(0, 1), while training, so that the gradient
flows to both; evaluating, it gives mu (deterministic, so that eval and predict give the same numbers on
every call).  eps is drawn from torch's global generator, which a run seeds and its checkpoint saves, so a
seeded run and its resume draw the same eps.  Its module is dlspec.modules.Reparameterize."""

from __future__ import annotations

from typing import Any

from .. import codes, dims
from ..dims import Dim
from ..infer import Ctx
from ..registry import TT, Example, LayerType, register
from .merge import _divisor_hint, _module, _show, two_inputs


def _reparameterize(c: Ctx, x: TT) -> TT:
    mu, logvar = two_inputs(c)
    for t, what in ((mu, "mu"), (logvar, "logvar")):
        if t.dtype != "float":
            raise c.fail(codes.DTYPE, f"Reparameterize reads float features, but its {what} is integer ids "
                         f"{dims.fmt_shape(t.shape)}", notes=[c.checker.origin(t)],
                         help="give it the outputs of two layers that compute the mean and the log-variance "
                              "(e.g. two `Linear` heads)")
    if len(mu.shape) != len(logvar.shape) or not all(
            a == dims.UNKNOWN or b == dims.UNKNOWN or c.same(a, b) for a, b in zip(mu.shape, logvar.shape, strict=False)):
        raise c.fail(codes.MERGE_SHAPE, f"Reparameterize reads mu and logvar of one shape, got {_show(mu)} and "
                     f"{_show(logvar)}", notes=[c.checker.origin(mu), c.checker.origin(logvar)],
                     help=(_divisor_hint(c, [mu, logvar], range(len(mu.shape)))
                           if len(mu.shape) == len(logvar.shape) else None)
                     or "give both the same shape: they are the mean and the log-variance of one Gaussian per "
                        "latent value (e.g. two `Linear` heads with the same out_features)", recover=mu)
    return mu.with_shape(tuple(b if a == dims.UNKNOWN else a for a, b in zip(mu.shape, logvar.shape, strict=True)))


def _saved(a: dict[str, Any], x: Any, y: Any) -> Dim:
    """Training keeps eps and exp(logvar / 2) for the backward pass, besides the output every layer keeps."""
    return dims.mul(dims.product(y), 3)


register(LayerType(
    name="Reparameterize", family="sampling", structural=True, arity=2, args={}, infer=_reparameterize,
    build=_module("Reparameterize"), keeps_channels=True, saved=_saved,
    doc="a sample mu + eps·exp(logvar/2), eps ~ N(0, 1), when training; mu when evaluating (a VAE's code); "
        "`from: [mu, logvar]`",
    examples=[Example({}, (6,)), Example({}, (4, 3, 3))],
))
