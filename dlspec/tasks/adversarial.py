"""Adversarial training (a GAN): a generator and a discriminator, two networks of one spec (`networks:`),
each with its own optimizer (and schedule), trained in alternating steps (Goodfellow et al., 2014).

    networks: {generator: {input: [100], layers: [...]}, discriminator: {input: [1, 28, 28], layers: [...]}}
    train:
      task: adversarial            # or {adversarial: {loss: hinge, d_steps: 2, discriminator_optimizer: {SGD: ...}}}
      data: {name: mnist, normalize: [[0.5], [0.5]]}

Each batch of real samples x (the data's labels are not used):

    z ~ N(0, 1) of the generator's input size; fake = G(z)
    discriminator step:  d_loss = L_D(D(x), D(fake.detach()))      (d_steps times, a fresh z each)
    generator step:      g_loss = L_G(D(G(z)))

with the discriminator's output read as a logit and (`loss:`)

    non_saturating  L_D = softplus(-D(x)) + softplus(D(fake))  L_G = softplus(-D(fake))    (Goodfellow's -log D trick)
    minimax         L_D as above                               L_G = -softplus(D(fake))   (log(1 - D), saturates)
    hinge           L_D = relu(1 - D(x)) + relu(1 + D(fake))   L_G = -D(fake)             (Miyato et al., 2018)

each a mean over the batch.  The metrics are d_loss, g_loss, d_real and d_fake (the mean probability the
discriminator gives real and generated samples).  The test numbers use the test images and a fixed draw of
noise (the same every epoch, so epochs compare); samples.png shows the generator's images for a fixed
noise after each epoch.  The noise of training comes from torch's global generator, which the checkpoint
keeps: a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import codes, dims
from ..algebra import same
from ..data.base import DataFacts
from ..data.common import Text
from ..diagnostics import Diagnostic, diag, did_you_mean
from ..registry import Arg, Choice, Int, Optional_
from . import TaskType, register
from .supervised import Supervised

if TYPE_CHECKING:
    from .adversarial_step import AdversarialStep

GRID_MAX = 256  # samples in samples.png / `dlspec generate` for a generator
METRICS = ("d_loss", "g_loss", "d_real", "d_fake")
EVAL_SEED = 7919  # the evaluation's fixed noise: torch.Generator().manual_seed(train.seed + EVAL_SEED)


def _torch_call() -> Any:
    from ..trainspec import TorchCall

    return TorchCall()


def _facts(facts: DataFacts, args: dict[str, Any]) -> DataFacts:
    return replace(facts, target_shape=None, target_dtype=None, num_classes=None)


def _shape_equal(a: tuple[Any, ...], b: tuple[Any, ...], divisible: dict[str, int]) -> bool:
    return len(a) == len(b) and all(x == y or same(x, y, divisible) for x, y in zip(a, b, strict=True))


def _last(net: Any) -> Any:
    rows = [r for r in net.rows if not r.entry.passthrough] or net.rows
    while len(rows) > 1 and rows[-1].entry.family == "activation":
        rows = rows[:-1]
    return rows[-1]


def _contract(checked: Any, facts: DataFacts, args: dict[str, Any], path: tuple[Any, ...]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    where = path or ("train",)
    nets = getattr(checked, "networks", {}) or {}
    if not nets:
        out.append(diag("error", codes.TRAIN, "adversarial training needs a generator and a discriminator: a spec "
                        "with `networks:`", where, key=not path,
                        help="write networks: {generator: {input: [100], layers: [...]}, discriminator: {input: "
                             "[...], layers: [...]}} (see specs/dcgan.yaml)"))
        return out
    picked = {}
    for role in ("generator", "discriminator"):
        name = args[role]
        if name not in nets:
            hint = did_you_mean(name, list(nets))
            out.append(diag("error", codes.TRAIN, f"the spec has no network '{name}' for the {role}",
                            where, key=not path, help=f"did you mean '{hint}'?" if hint else
                            f"its networks: {', '.join(nets)}; name them with {role}: NAME under task.adversarial"))
        else:
            picked[role] = nets[name]
    if len(picked) < 2 or any(not n.ok or n.output is None or not n.rows for n in picked.values()):
        return out
    g, d = picked["generator"], picked["discriminator"]
    gin, din = g.spec.input, d.spec.input
    if gin is None or din is None:
        return out
    if len(gin.shape) != 1 or gin.dtype != "float":
        out.append(diag("error", codes.TRAIN, f"the generator reads noise vectors: its input must be [size] floats, "
                        f"not {dims.fmt_shape(tuple(gin.shape))}", g.spec.base + ("input",),
                        help="write input: [100] (the noise size)"))
    divisible = {**(g.spec.symbols or {}), **(d.spec.symbols or {})}
    gout = tuple(g.output.shape)
    if not _shape_equal(gout, tuple(din.shape), divisible):
        last = _last(g)
        out.append(diag("error", codes.SHAPE_MISMATCH, f"the generator gives {dims.fmt_shape(gout)} but the "
                        f"discriminator reads {dims.fmt_shape(tuple(din.shape))}", last.item.args_path, key=True,
                        layer=last.item.index, help=f"make the generator end with {dims.fmt_shape(tuple(din.shape))}"
                        f" (its samples are what the discriminator judges)"))
    if facts.sample_shape is not None and not _shape_equal(tuple(din.shape), tuple(facts.sample_shape), divisible) \
            and None not in facts.sample_shape:
        out.append(diag("error", codes.DATA_SHAPE, f"{facts.name} gives samples of shape {list(facts.sample_shape)} but "
                        f"the discriminator reads {list(din.shape)}", d.spec.base + ("input",),
                        help=f"write input: {list(facts.sample_shape)} for the discriminator (and make the generator "
                             "give that shape)"))
    if facts.x_dtype == "long":
        out.append(diag("error", codes.DTYPE, f"adversarial training here generates float samples, but {facts.name} "
                        "gives integer ids", where, key=not path, help="use image or feature data"))
    dout = tuple(d.output.shape)
    if dout not in ((1,), ()):
        last = _last(d)
        out.append(diag("error", codes.LOSS, f"the discriminator must give one logit per sample, not "
                        f"{dims.fmt_shape(dout)}", last.item.args_path, key=True, layer=last.item.index,
                        help="end it with `- Linear: 1` (no Sigmoid: the loss reads logits)"))
    elif d.rows and d.rows[-1].entry.name == "Sigmoid":
        out.append(diag("warning", codes.BCE_WITHOUT_SIGMOID, "the discriminator ends with Sigmoid, but the "
                        "adversarial losses read its output as a logit", d.rows[-1].item.args_path, key=True,
                        layer=d.rows[-1].item.index, help="remove the Sigmoid (the loss applies it, stably)"))
    return out


def _check_calls(checked: Any, facts: DataFacts, args: dict[str, Any], path: tuple[Any, ...]) -> list[Diagnostic]:
    """The per-network optimizers and schedulers against torch's table (as train.optimizer is checked)."""
    from ..traincheck import check_call

    out: list[Diagnostic] = []
    for role in ("generator", "discriminator"):
        for kind in ("optimizer", "scheduler"):
            written = args.get(f"{role}_{kind}")
            if written is not None:
                out += check_call(kind, written, ("train", "task", "adversarial", f"{role}_{kind}"))[1]
    return out


def contract(checked: Any, facts: DataFacts, args: dict[str, Any], path: tuple[Any, ...]) -> list[Diagnostic]:
    return _contract(checked, facts, args, path) + _check_calls(checked, facts, args, path)


class Adversarial(Supervised):
    """The GAN's runtime: its `model` line and samples.png; its step (AdversarialStep, the entry's `step`)
    trains the two networks."""

    step: AdversarialStep

    def describe(self) -> str:
        st = self.step
        return (f"adversarial ({st.loss}): {st.g_name} {sum(p.numel() for p in st.G.parameters()):,} params, "
                f"{st.d_name} {sum(p.numel() for p in st.D.parameters()):,}")

    def span(self) -> tuple[float, float]:
        """The real samples' value range: generated ones are drawn on it (a Tanh's -1..1 for data scaled so)."""
        x = self.ctx.bundle.train.x[:4096]
        return float(x.min()), float(x.max())

    def after_epoch(self, run_dir: str, epoch: int, last: bool) -> list[str]:
        n = int(self.args["samples"])
        if not n:
            return []
        try:
            write_grid(self.step.samples(n, int(self.ctx.cfg.seed) + EVAL_SEED), os.path.join(run_dir, "samples.png"),
                       f"{self.ctx.checked.spec.name} · epoch {epoch}", self.span())
        except ImportError:
            return ["samples.png not written: matplotlib is not installed (pip install 'dlspec[plot]')"] if last else []
        return []


def write_grid(batch: Any, path: str, title: str = "", span: tuple[float, float] | None = None) -> None:
    from ..pictures import image_grid, save_figure

    columns = 8 if len(batch) >= 8 else len(batch)
    save_figure(image_grid(batch, columns=max(1, columns), title=title, span=span), path)


def resolve_calls(cfg: Any, args: dict[str, Any]) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Each network's optimizer and scheduler, looked up in the torch that runs: the task's own option, else
    train.optimizer / train.scheduler."""
    from ..objectives import resolve

    out: dict[str, Any] = {}
    diags: list[Diagnostic] = []
    for role in ("generator", "discriminator"):
        own = replace(cfg, loss=None, optimizer=args.get(f"{role}_optimizer") or cfg.optimizer,
                      scheduler=args.get(f"{role}_scheduler") or cfg.scheduler)
        resolved, d = resolve(own, "regression")
        resolved.pop("loss", None)
        out[role] = resolved
        diags += d
    return out, diags


register(TaskType(
    "adversarial", "a GAN: a generator and a discriminator (networks:), alternating steps", "adversarial",
    "dlspec.tasks.adversarial:Adversarial",
    args={"generator": Arg(Text(), "generator", doc="the network that generates (its input: the noise)"),
          "discriminator": Arg(Text(), "discriminator", doc="the network that tells real from generated"),
          "loss": Arg(Choice("non_saturating", "minimax", "hinge"), "non_saturating", doc="the adversarial losses"),
          "d_steps": Arg(Int(1, 100), 1, doc="discriminator steps per generator step"),
          "generator_optimizer": Arg(Optional_(_torch_call()), None, doc="default: train.optimizer"),
          "discriminator_optimizer": Arg(Optional_(_torch_call()), None, doc="default: train.optimizer"),
          "generator_scheduler": Arg(Optional_(_torch_call()), None, doc="default: train.scheduler"),
          "discriminator_scheduler": Arg(Optional_(_torch_call()), None, doc="default: train.scheduler"),
          "samples": Arg(Int(0, GRID_MAX), 64, doc="generated samples in samples.png after each epoch (0: none)")},
    facts=_facts, contract=contract, default_metrics=METRICS, replaces_output_check=True, trial=False,
    metrics=(), row_metrics=METRICS, resolve=resolve_calls, step="dlspec.tasks.adversarial_step:AdversarialStep",
    networks=lambda args: (args["generator"], args["discriminator"]), predict=None, generate="samples"))
