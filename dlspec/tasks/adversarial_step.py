"""The adversarial task's step (dlspec.tasks.adversarial has the losses' definitions): manual optimisation of
two networks, each with its own optimizer and scheduler, in alternating steps.  Imported by `dlspec run` only
(the task's entry names it), so `dlspec check` stays without torch."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import distributed
from ..batch import Batch
from ..objectives import Sums, make_optimizer, make_scheduler, scheduler_per_batch
from ..plan import Capabilities, Plan
from ..step import Context, Step
from .adversarial import EVAL_SEED, METRICS

ROLES = ("generator", "discriminator")  # the order of the optimizers (Capabilities.optimizers, Plan.fused_each)


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on its logits for real and generated samples (see dlspec.tasks.adversarial)."""
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss on the discriminator's logits for its samples."""
    if kind == "hinge":
        return -fake.mean()
    if kind == "minimax":
        return -F.softplus(fake).mean()
    return F.softplus(-fake).mean()


@torch.no_grad()
def add_sums(meter: Sums, n: int, d: torch.Tensor, g: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> int:
    """A batch's d_loss, g_loss, d_real and d_fake into the sums of METRICS; the count to add (n)."""
    meter.sums["d_loss"] += d.detach().double() * n
    meter.sums["g_loss"] += g.detach().double() * n
    meter.sums["d_real"] += torch.sigmoid(real.detach().double()).sum()
    meter.sums["d_fake"] += torch.sigmoid(fake.detach().double()).sum()
    return n


class AdversarialStep(Step):
    """Each batch of real samples x: `d_steps` discriminator steps, then one generator step (the losses of
    `loss:`), then the per-batch schedulers.  The generator's noise is drawn from torch's global generator
    (kept in the checkpoint: a resumed run draws the same noise); an evaluation's from a generator seeded
    train.seed + EVAL_SEED at its start (every epoch judges the same noise)."""

    def __init__(self, ctx: Context, task: Any):
        super().__init__(ctx, task)
        args = task.args
        self.g_name, self.d_name = args["generator"], args["discriminator"]
        self.G, self.D = self._networks()
        noise = ctx.checked.networks[self.g_name].spec.input
        assert noise is not None  # (the task's contract: the generator reads [size] floats)
        self.nz = int(noise.shape[0])
        self.loss, self.d_steps = args["loss"], int(args["d_steps"])
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.scheds: dict[str, Any] = {}
        self.per_batch: dict[str, bool] = {}
        self.meter = self.new_meter()
        self.Gt, self.Dt = self.G, self.D  # the networks the steps train through (DDP replicas, several processes)
        self._eval_gen: torch.Generator | None = None

    def _networks(self) -> tuple[nn.Module, nn.Module]:
        model: Any = self.model
        return model[self.g_name], model[self.d_name]

    @property
    def data_inputs(self) -> list[str]:
        return list(self.ctx.checked.networks[self.d_name].spec.inputs) or ["input"]

    def capabilities(self, training: bool) -> Capabilities:
        task, each = self.ctx.task.name, self.ctx.resolved.get("task", {})
        return Capabilities(
            model=self.model, input_rank=len(self.ctx.bundle.sample_shape),
            optimizers=tuple((each[r]["optimizer"][0], each[r]["optimizer"][2]) for r in ROLES) if training else (),
            graph=f"the {task} task alternates two networks and two optimizers (eager steps)",
            compile=f"the {task} task runs its networks itself", channels_last=f"the {task} task runs its networks itself")

    def _setup(self, plan: Plan, training: bool) -> None:
        """The two optimizers (and schedulers), as the spec writes them, fused where the plan says."""
        self.G, self.D = self._networks()  # (after SyncBatchNorm)
        if not training:
            return
        cfg = self.ctx.cfg
        for i, (role, net) in enumerate(zip(ROLES, (self.G, self.D), strict=True)):
            resolved = self.ctx.resolved["task"][role]
            name = self.g_name if role == "generator" else self.d_name
            self.opts[name] = make_optimizer(resolved, net, **({"fused": True} if plan.fused_each[i] else {}))
            self.scheds[name] = make_scheduler(resolved, self.opts[name], cfg.epochs, self.ctx.steps_per_epoch)
            self.per_batch[name] = scheduler_per_batch(resolved, cfg)
        if self.ctx.world.distributed:  # a replica of each: its backward averages its gradients over the processes
            self.Gt, self.Dt = distributed.replica(self.G, self.device), distributed.replica(self.D, self.device)

    # a step -------------------------------------------------------------------------------------------------
    def noise(self, n: int, gen: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.nz, generator=gen, device=self.device if gen is None else gen.device)

    def _noise(self, batch: Batch, gen: torch.Generator | None = None) -> torch.Tensor:
        """The batch's noise: with several processes, this process's part of the draws one process makes."""
        if batch.part is None:
            return self.noise(batch.size, gen)
        start, stop, n = batch.part
        return self.noise(n, gen)[start:stop]

    def _real(self, batch: Batch) -> torch.Tensor:
        return batch.inputs[self.data_inputs[0]]

    def _clip(self, net: nn.Module) -> None:
        if self.ctx.cfg.clip_grad_norm:
            nn.utils.clip_grad_norm_(net.parameters(), self.ctx.cfg.clip_grad_norm)

    def train(self, batch: Batch) -> None:
        """d_steps discriminator steps, then one generator step; the losses weighted by batch.share."""
        x, share = self._real(batch), batch.share
        opt_g, opt_d = self.opts[self.g_name], self.opts[self.d_name]
        with self.autocast():
            for _ in range(self.d_steps):
                fake = self.Gt(self._noise(batch))
                real_out, fake_out = self.Dt(x), self.Dt(fake.detach())
                d = d_loss(self.loss, real_out.float(), fake_out.float())
                opt_d.zero_grad(set_to_none=True)
                (d * share if share != 1.0 else d).backward()
                self._clip(self.D)
                opt_d.step()
            # (the discriminator itself, not its replica: its gradients here are dropped, not averaged)
            g = g_loss(self.loss, self.D(fake).float())
        opt_g.zero_grad(set_to_none=True)
        (g * share if share != 1.0 else g).backward()
        self._clip(self.G)
        opt_g.step()
        for name, sched in self.scheds.items():
            if sched is not None and self.per_batch[name]:
                sched.step()
        if share:  # (0: a stand-in sample of a process with none, not counted)
            self.meter.count += add_sums(self.meter, len(x), d, g, real_out, fake_out)

    # evaluation ------------------------------------------------------------------------------------------
    def start_eval(self) -> None:
        self._eval_gen = torch.Generator(device=self.device).manual_seed(int(self.ctx.cfg.seed) + EVAL_SEED)

    @torch.no_grad()
    def evaluate(self, batch: Batch, meter: Sums) -> int:
        """The losses on the batch's real samples against generated ones from the evaluation's noise."""
        x = self._real(batch)
        with self.autocast():
            fake_out = self.D(self.G(self._noise(batch, self._eval_gen)))
            real_out = self.D(x)
            return add_sums(meter, len(x), d_loss(self.loss, real_out.float(), fake_out.float()),
                            g_loss(self.loss, fake_out.float()), real_out, fake_out)

    def new_meter(self) -> Sums:
        return Sums(METRICS, self.device)

    @torch.no_grad()
    def samples(self, n: int, seed: int) -> torch.Tensor:
        """n generated samples from noise seeded `seed` (the generator in eval mode), on the CPU."""
        gen = torch.Generator(device=self.device).manual_seed(seed)
        was = self.G.training
        self.G.eval()
        out = self.G(self.noise(n, gen)).float().cpu()
        self.G.train(was)
        return out

    # the epoch and the checkpoint --------------------------------------------------------------------------
    def end_epoch(self, row: dict[str, Any]) -> None:
        for name, sched in self.scheds.items():
            if sched is not None and not self.per_batch[name]:
                sched.step()

    def lr(self) -> float:
        return float(self.opts[self.g_name].param_groups[0]["lr"])

    def describe(self) -> str:
        return " · ".join(f"{role} {r['optimizer'][0]}" + (f" + {r['scheduler'][0]}" if "scheduler" in r else "")
                          for role, r in self.ctx.resolved.get("task", {}).items())

    def state(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        return {"optimizer": None, "scheduler": None,
                "task": {"optimizers": {k: o.state_dict() for k, o in self.opts.items()},
                         "schedulers": {k: s.state_dict() for k, s in self.scheds.items() if s is not None}}}

    def load(self, st: dict[str, Any]) -> None:
        own = st.get("task")
        if not own:
            return
        for k, o in self.opts.items():
            o.load_state_dict(own["optimizers"][k])
        for k, s in self.scheds.items():
            if s is not None and k in own.get("schedulers", {}):
                s.load_state_dict(own["schedulers"][k])
