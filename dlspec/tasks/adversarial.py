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
from typing import Any

from .. import codes, dims
from ..algebra import same
from ..data.base import DataFacts
from ..data.common import Text
from ..diagnostics import Diagnostic, diag, did_you_mean
from ..registry import Arg, Choice, Int, Optional_
from . import TaskType, register
from .supervised import Supervised

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


def _d_loss(kind: str, real: Any, fake: Any) -> Any:
    import torch.nn.functional as F

    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _g_loss(kind: str, fake: Any) -> Any:
    import torch.nn.functional as F

    if kind == "hinge":
        return -fake.mean()
    if kind == "minimax":
        return -F.softplus(fake).mean()
    return F.softplus(-fake).mean()


def add_sums(meter: Any, n: int, d_loss: Any, g_loss: Any, real: Any, fake: Any) -> None:
    """A batch's d_loss, g_loss, d_real and d_fake into the run's sums (objectives.Sums of METRICS)."""
    import torch

    with torch.no_grad():
        meter.sums["d_loss"] += d_loss.detach().double() * n
        meter.sums["g_loss"] += g_loss.detach().double() * n
        meter.sums["d_real"] += torch.sigmoid(real.detach().double()).sum()
        meter.sums["d_fake"] += torch.sigmoid(fake.detach().double()).sum()
    meter.count += n


class Adversarial(Supervised):
    own_step = True  # the trainer hands it each batch (it has its own optimizers, meter and evaluation)
    graph_ok = False
    why_not_graph = "the adversarial task alternates two networks and two optimizers (eager steps)"

    def __init__(self, tr: Any, args: dict[str, Any]):
        from ..objectives import Sums

        super().__init__(tr, args)
        self.g_name, self.d_name = args["generator"], args["discriminator"]
        self.G, self.D = tr.model[self.g_name], tr.model[self.d_name]
        nets = tr.s.checked.networks
        self.nz = int(nets[self.g_name].spec.input.shape[0])
        self.loss = args["loss"]
        self.opts: dict[str, Any] = {}
        self.scheds: dict[str, Any] = {}
        self.per_batch: dict[str, bool] = {}
        self.meter = Sums(METRICS, tr.device)
        self.Gt, self.Dt = self.G, self.D  # the networks the steps train through (DDP replicas, several processes)

    # set-up -----------------------------------------------------------------------------------------------
    def setup(self, impl: dict[str, Any]) -> None:
        """The two optimizers (and schedulers), as the spec writes them; `impl` is the plan's (fused)."""
        from ..objectives import make_optimizer, make_scheduler, scheduler_per_batch

        tr = self.tr
        for role, net in (("generator", self.G), ("discriminator", self.D)):
            resolved = tr.s.resolved["task"][role]
            name = self.g_name if role == "generator" else self.d_name
            self.opts[name] = make_optimizer(resolved, net, **impl)
            self.scheds[name] = make_scheduler(resolved, self.opts[name], tr.s.cfg.epochs, max(1, tr.steps_per_epoch))
            self.per_batch[name] = scheduler_per_batch(resolved, tr.s.cfg)
        if tr.world.distributed:  # a replica of each: its backward averages its gradients over the processes
            from .. import distributed

            self.Gt, self.Dt = distributed.replica(self.G, tr.device), distributed.replica(self.D, tr.device)

    def describe(self) -> str:
        return (f"adversarial ({self.loss}): {self.g_name} {sum(p.numel() for p in self.G.parameters()):,} params, "
                f"{self.d_name} {sum(p.numel() for p in self.D.parameters()):,}")

    def lr(self) -> float:
        return float(self.opts[self.g_name].param_groups[0]["lr"])

    # a step -------------------------------------------------------------------------------------------------
    def noise(self, n: int, gen: Any = None) -> Any:
        import torch

        return torch.randn(n, self.nz, generator=gen, device=self.tr.device if gen is None else gen.device)

    def _clip(self, net: Any) -> None:
        from torch import nn

        if self.tr.s.cfg.clip_grad_norm:
            nn.utils.clip_grad_norm_(net.parameters(), self.tr.s.cfg.clip_grad_norm)

    def step(self, x: Any, y: Any, share: float = 1.0, where: tuple[int, int, int] | None = None) -> None:
        """One batch: d_steps discriminator steps, then one generator step.  Several processes: x is this
        process's part [start, stop) of a global batch of n (`where`), its noise that part of the n draws one
        process makes, its losses weighted by `share` (the part's size × processes / n)."""
        n = x.shape[0]
        opt_g, opt_d = self.opts[self.g_name], self.opts[self.d_name]

        def noise() -> Any:
            return self.noise(n) if where is None else self.noise(where[2])[where[0]:where[1]]

        with self.tr.autocast():
            for _ in range(int(self.args["d_steps"])):
                fake = self.Gt(noise())
                real_out, fake_out = self.Dt(x), self.Dt(fake.detach())
                d_loss = _d_loss(self.loss, real_out.float(), fake_out.float())
                opt_d.zero_grad(set_to_none=True)
                (d_loss * share if share != 1.0 else d_loss).backward()
                self._clip(self.D)
                opt_d.step()
            # (the discriminator itself, not its replica: its gradients here are dropped, not averaged)
            g_out = self.D(fake)
            g_loss = _g_loss(self.loss, g_out.float())
        opt_g.zero_grad(set_to_none=True)
        (g_loss * share if share != 1.0 else g_loss).backward()
        self._clip(self.G)
        opt_g.step()
        for name, sched in self.scheds.items():
            if sched is not None and self.per_batch[name]:
                sched.step()
        if share:  # (0: a stand-in sample of a process with none, not counted)
            add_sums(self.meter, n, d_loss, g_loss, real_out, fake_out)

    def end_epoch(self) -> None:
        for name, sched in self.scheds.items():
            if sched is not None and not self.per_batch[name]:
                sched.step()

    def evaluate(self, split: Any, batch_size: int) -> dict[str, float]:
        """The losses on the split's real samples against generated ones from a fixed draw of noise."""
        import torch

        from ..objectives import Sums

        gen = torch.Generator(device=self.tr.device).manual_seed(int(self.tr.s.cfg.seed) + EVAL_SEED)
        meter = Sums(METRICS, self.tr.device)
        self.tr.model.eval()
        with torch.no_grad(), self.tr.autocast():
            for i in range(0, len(split), batch_size):
                x = split.x[i:i + batch_size].to(self.tr.device)
                fake_out = self.D(self.G(self.noise(len(x), gen)))
                real_out = self.D(x)
                add_sums(meter, len(x), _d_loss(self.loss, real_out.float(), fake_out.float()),
                         _g_loss(self.loss, fake_out.float()), real_out, fake_out)
        return meter.result()

    # pictures ---------------------------------------------------------------------------------------------
    def span(self) -> tuple[float, float]:
        """The real samples' value range: generated ones are drawn on it (a Tanh's -1..1 for data scaled so)."""
        x = self.tr.s.bundle.train.x[:4096]
        return float(x.min()), float(x.max())

    def samples(self, n: int, seed: int) -> Any:
        """n generated samples from noise seeded `seed` (the generator in eval mode), on the CPU."""
        import torch

        gen = torch.Generator(device=self.tr.device).manual_seed(seed)
        was = self.G.training
        self.G.eval()
        with torch.no_grad():
            out = self.G(self.noise(n, gen)).float().cpu()
        self.G.train(was)
        return out

    def after_epoch(self, run_dir: str, epoch: int, last: bool) -> list[str]:
        n = int(self.args["samples"])
        if not n:
            return []
        try:
            write_grid(self.samples(n, int(self.tr.s.cfg.seed) + EVAL_SEED), os.path.join(run_dir, "samples.png"),
                       f"{self.tr.s.checked.spec.name} · epoch {epoch}", self.span())
        except ImportError:
            return ["samples.png not written: matplotlib is not installed (pip install 'dlspec[plot]')"] if last else []
        return []

    # checkpoint -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"optimizers": {k: o.state_dict() for k, o in self.opts.items()},
                "schedulers": {k: s.state_dict() for k, s in self.scheds.items() if s is not None}}

    def load(self, st: dict[str, Any] | None) -> None:
        if not st:
            return
        for k, o in self.opts.items():
            o.load_state_dict(st["optimizers"][k])
        for k, s in self.scheds.items():
            if s is not None and k in st.get("schedulers", {}):
                s.load_state_dict(st["schedulers"][k])


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
    metrics=(), row_metrics=METRICS, resolve=resolve_calls,
    networks=lambda args: (args["generator"], args["discriminator"])))
