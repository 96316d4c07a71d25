"""Reconstruction: the target is the input itself (an autoencoder); with `noise` or `mask` the model reads a
corrupted input and is judged against the clean one (a denoising autoencoder, Vincent et al. 2008).

    train:
      task: {reconstruction: {noise: 0.5}}   # Gaussian noise of std 0.5 on the input; mask: 0.3 zeroes 30 %

The test numbers are the reconstruction of the clean test images (from a fixed draw of noise, the same
every epoch), next to the baseline of always answering the training set's mean image.  After each epoch
reconstructions.png shows test inputs above their reconstructions (with noise: the noised input between).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import codes, dims
from ..algebra import same
from ..data.base import DataFacts
from ..diagnostics import Diagnostic, diag
from ..registry import Arg, Float, Int
from . import TaskType, register
from .supervised import Supervised

if TYPE_CHECKING:
    from ..batch import Batch
    from ..step import Context, OptimizerStep

PICTURES_MAX = 32


def _facts(facts: DataFacts, args: dict[str, Any]) -> DataFacts:
    return replace(facts, target_shape=facts.sample_shape, target_dtype="float", task="regression", num_classes=None)


def _contract(checked: Any, facts: DataFacts, args: dict[str, Any], path: tuple[Any, ...]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    if facts.x_dtype == "long":
        out.append(diag("error", codes.TRAIN, f"reconstruction needs float inputs, but {facts.name} gives integer ids",
                        path or ("train",), key=not path,
                        help="reconstruct images or features (an MSE over ids means nothing); for text, "
                             "use task: language_model"))
        return out
    spec_in = checked.spec.input
    if spec_in is None or checked.output is None or not checked.rows:
        return out
    want, got = tuple(spec_in.shape), tuple(checked.output.shape)
    divisible = checked.spec.symbols or {}
    equal = len(want) == len(got) and all(w == g or same(w, g, divisible) for w, g in zip(want, got, strict=True))
    if not equal:
        rows = [r for r in checked.rows if not r.entry.passthrough] or checked.rows
        while len(rows) > 1 and rows[-1].entry.family == "activation":  # a final Sigmoid keeps the wrong shape:
            rows = rows[:-1]  # the layer to change is the one before it
        last = rows[-1]
        count = dims.product(want)
        hint = f"end with layers that give {dims.fmt_shape(want)}"
        if len(want) > 1 and len(got) == 1:
            hint += f" (e.g. a Linear of {count} outputs, then `- Unflatten: {{dim: 1, unflattened_size: {list(want)}}}`)"
        out.append(diag("error", codes.LOSS, f"a reconstruction must give back the input's shape: the model gives "
                        f"{dims.fmt_shape(got)} for inputs {dims.fmt_shape(want)}", last.item.args_path,
                        key=True, layer=last.item.index, help=hint))
    return out


class Reconstruction(Supervised):
    step: OptimizerStep

    def __init__(self, ctx: Context, args: dict[str, Any]):
        super().__init__(ctx, args)
        self.noise, self.mask = float(args["noise"]), float(args["mask"])
        self.corrupts = self.noise > 0 or self.mask > 0
        if self.corrupts:  # a host-side generator for the evaluation's fixed noise: not capturable
            self.why_not_graph = "the denoising task draws noise for each batch"
        self._eval_gen: Any = None

    def describe(self) -> str:
        parts = [f"noise {self.noise:g}" if self.noise else "", f"mask {self.mask:g}" if self.mask else ""]
        return "reconstruction" + (" of corrupted inputs (" + ", ".join(p for p in parts if p) + ")"
                                   if self.corrupts else "")

    def start_eval(self) -> None:
        import torch

        self._eval_gen = torch.Generator(device=self.ctx.device).manual_seed(int(self.ctx.cfg.seed) + 7919)

    def corrupt(self, x: Any, gen: Any = None) -> Any:
        import torch

        if not self.corrupts:
            return x
        out = x
        if self.noise:
            out = out + self.noise * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        if self.mask:
            keep = torch.rand(x.shape, generator=gen, device=x.device) >= self.mask
            out = out * keep.to(x.dtype)
        return out

    def prepare(self, batch: Batch, training: bool) -> Batch:
        """The input (corrupted) to read, the clean input as the target.  Training draws from the global
        generator (in the checkpoint: a resumed run draws the same noise); evaluation from the private one,
        reset before each pass (every epoch scores the same noised inputs)."""
        from ..batch import TARGET, Batch

        (name, x), *rest = batch.inputs.items()
        xin = self.corrupt(x, None if training else self._eval_gen)
        return Batch({name: xin, **dict(rest)}, {TARGET: x}, batch.share, batch.part)

    def baseline(self) -> dict[str, float]:
        """The test MSE of always answering the training set's mean image (what a model must beat)."""
        import torch

        b = self.ctx.bundle
        with torch.no_grad():
            mean = b.train.x.double().mean(0, keepdim=True)
            mse = float(((b.test.x.double() - mean) ** 2).mean())
        return {"test_mse_mean_image": mse}

    def after_epoch(self, run_dir: str, epoch: int, last: bool) -> list[str]:
        n = int(self.args["pictures"])
        if not n:
            return []
        try:
            write_reconstructions(self, os.path.join(run_dir, "reconstructions.png"), n,
                                  title=f"{self.ctx.checked.spec.name} · epoch {epoch}")
        except ImportError:
            return ["reconstructions.png not written: matplotlib is not installed (pip install 'dlspec[plot]')"] \
                if last else []
        return []


def reconstruct(task: Reconstruction, n: int) -> tuple[Any, Any, Any]:
    """(clean, corrupted, reconstructed) for the first n test samples, on the CPU: the evaluation's corruption,
    the step's plain forward pass."""
    from ..batch import Feed

    step = task.step
    batch = Feed(step.data_inputs).rows(task.ctx.bundle.test, 0, n).to(task.ctx.device)
    task.start_eval()
    seen = task.prepare(batch, False)
    out = step.predict(seen)[step.outputs[0]].float()
    x, xin = batch.inputs[step.data_inputs[0]], seen.inputs[step.data_inputs[0]]
    return x.float().cpu(), xin.float().cpu(), out.cpu()


def write_reconstructions(task: Reconstruction, path: str, n: int, title: str = "") -> None:
    from ..pictures import image_rows, save_figure

    clean, noised, out = reconstruct(task, n)
    rows = [("input", clean)] + ([("corrupted", noised)] if task.corrupts else []) + [("output", out)]
    save_figure(image_rows(rows, title, shared=True), path)


register(TaskType(
    "reconstruction", "the target is the input: an autoencoder (noise/mask: a denoising one)", "regression",
    "dlspec.tasks.reconstruction:Reconstruction",
    args={"noise": Arg(Float(0.0, 100.0), 0.0, doc="std of the Gaussian noise added to the input (denoising)"),
          "mask": Arg(Float(0.0, 1.0), 0.0, doc="fraction of the input's values set to 0 (masking noise)"),
          "pictures": Arg(Int(0, PICTURES_MAX), 8, doc="test samples in reconstructions.png (0: none)")},
    facts=_facts, contract=_contract, default_loss="MSELoss", default_metrics=("mse",), replaces_output_check=True,
    predict="reconstructions"))
