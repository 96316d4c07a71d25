"""The `train:` section: its schema, checked with the same Arg kinds and diagnostics as the layers.

`dlspec check` validates the structure here without torch.  Names of torch losses, optimizers and
schedulers and their keyword arguments are checked against torch itself when `dlspec run` starts
(`resolve_torch`), still as diagnostics at the right line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from . import codes
from .codes import ErrorCode
from .data.base import SEED_MAX
from .diagnostics import Diagnostic, diag, did_you_mean
from .registry import REQUIRED, Arg, Bool, Choice, Float, Int, Kind, OneOf, Optional_
from .schema import yaml_text
from .source import Document, Path

INITS = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "trunc_normal",
         "normal", "uniform", "default")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
METRICS = ("accuracy", "top5_accuracy", "mse", "mae", "rmse", "perplexity")
# the bounds of the counts (docs/training.md, Limits): far beyond any real run, and where a typo stops
MAX_EPOCHS = 1_000_000  # epochs, and every "every k epochs" and early stopping's patience
MAX_BATCH = 1_000_000_000  # batch_size, eval_batch_size (the memory a batch needs is checked when the run starts)
MAX_THREADS_PER_CPU = 4  # --threads (Options.threads): more per CPU only makes torch stall (2,000) or crash (100,000)


class F32Positive(Float):
    """A number > 0 that float32 holds (at least 2**-126, its smallest normal number): a smaller one is 0 in
    float32, or flushed to 0, where torch computes with it (a clip_grad_norm of 1e-300 zeroes every gradient)."""

    def __init__(self) -> None:
        super().__init__(2.0 ** -126, wide=True)  # (a huge one is no clip at all: torch divides by it)
        self.text = "a number ≥ 1.18e-38 (2**-126: a smaller one is 0 in float32)"


class OpenFraction(Float):
    """A fraction strictly between 0 and 1 (val_split: 1 would hold out every training sample)."""

    def __init__(self) -> None:
        super().__init__(0.0, 1.0, open_min=True)
        self.open_max = True
        self.text = "a number between 0 and 1 (both left out)"

    def check(self, v: Any) -> str | None:
        return super().check(v) or (f"must be {self.text}" if v == 1 else None)


class TorchCall(Kind):
    """`Name` or `{Name: {kwarg: value}}` (a torch class and its keyword arguments)."""

    text = "a torch class name, or {Name: {argument: value, ...}}"

    def check(self, v: Any) -> str | None:
        if isinstance(v, str) and v:
            return None
        if isinstance(v, dict) and len(v) == 1:
            (name, kw), = v.items()
            if isinstance(name, str) and (kw is None or isinstance(kw, dict)):
                return None
        return f"must be {self.text}"

    def normalize(self, v: Any) -> Any:
        from .overrides import numbers

        if isinstance(v, str):
            return (v, {})
        (name, kw), = v.items()
        return (name, numbers(dict(kw or {})))  # lr: 1e-3 is a number (PyYAML would keep it a string)


class Device(Kind):
    text = "auto, cpu, cuda, cuda:N or mps"

    def check(self, v: Any) -> str | None:
        import re

        if isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            return None
        return f"must be {self.text}"


class Metrics(Kind):
    text = "a list of " + ", ".join(METRICS)

    def check(self, v: Any) -> str | None:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(m, str) for m in v):
            return f"must be {self.text}"
        for m in v:
            if m not in METRICS:
                hint = did_you_mean(m, METRICS)
                return f"has unknown metric '{m}'" + (f" (did you mean '{hint}'?)" if hint else f"; use {self.text}")
        return None

    def normalize(self, v: Any) -> Any:
        return [v] if isinstance(v, str) else list(v)


class EarlyStopping(Kind):
    text = "{metric: NAME, patience: N, mode: min|max, min_delta: X}"
    keys = {"metric": str, "patience": int, "mode": str, "min_delta": (int, float)}

    def check(self, v: Any) -> str | None:
        if not isinstance(v, dict) or "metric" not in v:
            return f"must be {self.text}"
        for k, val in v.items():
            if k not in self.keys:
                hint = did_you_mean(str(k), list(self.keys))
                return f"has no key '{k}'" + (f" (did you mean '{hint}'?)" if hint else "")
            if isinstance(val, bool) or not isinstance(val, self.keys[k]):  # type: ignore[arg-type]
                return f"{k} must be {'a number' if k == 'min_delta' else 'an integer' if k == 'patience' else 'text'}"
        if v.get("mode", "min") not in ("min", "max"):
            return "mode must be min or max"
        if not 1 <= v.get("patience", 1) <= MAX_EPOCHS:
            return f"patience must be from 1 to {MAX_EPOCHS:,}"
        if not math.isfinite(v.get("min_delta", 0.0)) or v.get("min_delta", 0.0) < 0:
            return "min_delta must be a finite number ≥ 0 (a negative one counts a worse value as an improvement)"
        return None


class DataRef(Kind):
    """`name` or `{name: NAME, arg: value, ...}`: checked against the dataset registry by validate_train."""

    text = "a dataset name, or {name: NAME, ...arguments}"

    def check(self, v: Any) -> str | None:
        if isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("name"), str)):
            return None
        if isinstance(v, dict):
            return "needs `name:` (the dataset), e.g. {name: mnist}"
        return f"must be {self.text}"


class TaskRef(Kind):
    """`name` or `{name: {option: value}}`: checked against the task registry (dlspec.tasks) by validate_train."""

    text = "a task name, or {name: {options}}"

    def check(self, v: Any) -> str | None:
        if isinstance(v, str) or (isinstance(v, dict) and len(v) == 1 and isinstance(next(iter(v)), str)
                                  and isinstance(next(iter(v.values())), (dict, type(None)))):
            return None
        return f"must be {self.text}, e.g. task: {{reconstruction: {{noise: 0.3}}}}"

    def normalize(self, v: Any) -> Any:
        if isinstance(v, str):
            return (v, {})
        name, opts = next(iter(v.items()))
        return (name, dict(opts or {}))


TRAIN_ARGS: dict[str, Arg] = {
    "data": Arg(DataRef(), doc="the dataset and its options"),
    "task": Arg(Optional_(TaskRef()), None, doc="what is learned: classification, regression, reconstruction, adversarial, "
                "language_model (default: the data's own; char_text: language_model)"),
    "batch_size": Arg(Int(1, MAX_BATCH), 64, doc="samples per training step (the last batch of an epoch may be smaller)"),
    "epochs": Arg(Int(1, MAX_EPOCHS), 10, doc="passes over the training data"),
    "loss": Arg(Optional_(TorchCall()), None, doc="default: CrossEntropyLoss (classification), MSELoss (regression)"),
    "optimizer": Arg(TorchCall(), "Adam", doc="any torch.optim optimizer with its keyword arguments"),
    "scheduler": Arg(Optional_(TorchCall()), None, doc="any torch.optim.lr_scheduler"),
    "scheduler_step": Arg(Choice("auto", "batch", "epoch"), "auto",
                          doc="auto: per batch for OneCycleLR/CyclicLR, per epoch otherwise"),
    "init": Arg(Optional_(Choice(*INITS)), None, doc="weight init for Linear/Conv layers (biases keep torch's)"),
    "metrics": Arg(Optional_(Metrics()), None, doc="default: accuracy (classification), mse (regression)"),
    "seed": Arg(Int(0, SEED_MAX), 0, doc="seeds the weights, dropout and the batch order"),
    "device": Arg(Device(), "auto", doc="auto: cuda when available, else cpu"),
    "precision": Arg(Choice("fp32", "bf16", "fp16", "auto"), "fp32",
                     doc="bf16: autocast; fp16: autocast + grad scaler (CUDA only); auto: bf16 on a CPU with native bf16"),
    "channels_last": Arg(OneOf(Choice("auto"), Bool()), "auto",
                         doc="channels-last memory format for 2-d conv nets; auto: on a CPU, and on CUDA in bf16/fp16"),
    "compile": Arg(OneOf(Bool(), Choice(*COMPILE_MODES)), False,
                   doc="torch.compile the model: true (mode default) or a mode name"),
    "cuda_graph": Arg(OneOf(Choice("auto"), Bool()), "auto",
                      doc="capture the training step in a CUDA graph; auto: when the run allows it"),
    "fused": Arg(OneOf(Choice("auto"), Bool()), "auto",
                 doc="the optimizer's fused step (torch's fused=True); auto: for Adam/AdamW on a CPU"),
    "clip_grad_norm": Arg(Optional_(F32Positive()), None, doc="clip the gradients' total norm to this"),
    "val_split": Arg(Optional_(OpenFraction()), None,
                     doc="hold out this fraction of the training data for validation"),
    "eval_every": Arg(Int(1, MAX_EPOCHS), 1, doc="evaluate every k epochs (and after the last); test_every says when the test set"),
    "early_stopping": Arg(Optional_(EarlyStopping()), None, doc="stop when a metrics.csv column stops improving"),
    "restore_best": Arg(Bool(), True, doc="with early_stopping: end with the best epoch's weights (best.pt) and test those"),
    "test_every": Arg(Optional_(Int(1, MAX_EPOCHS)), None,
                      doc="evaluate the test set every k epochs; null: as eval_every without val_split, else only at the end"),
    "shuffle": Arg(Bool(), True, doc="a new batch order every epoch"),
    "drop_last": Arg(Bool(), False, doc="skip the last, smaller batch of each epoch"),
    "sync_batchnorm": Arg(Bool(), True, doc="several processes on CUDA: BatchNorm over the whole batch "
                          "(SyncBatchNorm); false, or on the CPU (torch has it for CUDA only): each process's part"),
    "eval_batch_size": Arg(Optional_(Int(1, MAX_BATCH)), None, doc="default: 4 × batch_size, at least 256"),
    "checkpoint_every": Arg(Int(1, MAX_EPOCHS), 1, doc="write checkpoint.pt every k epochs (and at the end)"),
}


@dataclass
class TrainConfig:
    data_name: str
    data_args: dict[str, Any]
    task: tuple[str, dict[str, Any]] | None = None  # (task name, its written options)
    batch_size: int = 64
    epochs: int = 10
    loss: tuple[str, dict[str, Any]] | None = None
    optimizer: tuple[str, dict[str, Any]] = ("Adam", {})
    scheduler: tuple[str, dict[str, Any]] | None = None
    scheduler_step: str = "auto"
    init: str | None = None
    metrics: list[str] | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: Any = "auto"
    compile: Any = False
    cuda_graph: Any = "auto"
    fused: Any = "auto"
    clip_grad_norm: float | None = None
    val_split: float | None = None
    eval_every: int = 1
    early_stopping: dict[str, Any] | None = None
    restore_best: bool = True
    test_every: int | None = None
    shuffle: bool = True
    drop_last: bool = False
    sync_batchnorm: bool = True
    eval_batch_size: int | None = None
    checkpoint_every: int = 1
    written: set[str] = field(default_factory=set)


def validate_train(doc: Document, train: Any) -> tuple[TrainConfig | None, list[Diagnostic]]:
    from .data import DATASETS

    diags: list[Diagnostic] = []
    base: Path = ("train",)

    def err(code: ErrorCode, msg: str, path: Path, key: bool = False, help: str | None = None) -> None:
        diags.append(diag("error", code, msg, path, key=key, help=help))

    if not isinstance(train, dict):
        err(codes.TRAIN, "`train:` must be a mapping of training options", base)
        return None, diags
    def options(given: dict[Any, Any], table: dict[str, Arg], path: Path, unknown: str, what: str, prefix: str,
                skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """Check each given option against its Arg: did-you-mean for unknown names, the kind's phrase for bad values."""
        out: dict[str, Any] = {}
        for k, v in given.items():
            if k in skip:
                continue
            spec = table.get(k) if isinstance(k, str) else None
            if spec is None:
                hint = did_you_mean(str(k), list(table))
                err(codes.TRAIN, f"{unknown} '{k}'", path + (k,), key=True,
                    help=f"did you mean '{hint}'?" if hint else f"{what} takes " + (", ".join(table) or "no options"))
                continue
            problem = spec.kind.check(v)
            if problem:
                default = spec.default not in (REQUIRED, None) and spec.kind.check(spec.default) is None
                err(codes.TRAIN, f"{prefix}{k} {problem}, got {yaml_text(v)}", path + (k,),
                    help=f"write {k}: {yaml_text(spec.default)} (the default), or {spec.kind.text}" if default
                    else f"{k} takes {spec.kind.text}")
                continue
            out[k] = spec.kind.normalize(v)
        return out

    values = options(train, TRAIN_ARGS, base, "unknown training option", "train", "train.")
    if "data" not in train:
        err(codes.TRAIN, "`train:` needs `data:` (the dataset to train on)", base, key=True,
            help="e.g. `data: {name: mnist}`; `dlspec datasets` lists them")
        return None, diags
    if "data" not in values:
        return None, diags
    raw = train["data"]
    dpath = base + ("data",)
    name = raw if isinstance(raw, str) else raw["name"]
    entry = DATASETS.get(name)
    if entry is None:
        hint = did_you_mean(name, list(DATASETS))
        err(codes.UNKNOWN_DATASET, f"unknown dataset '{name}'", dpath + ("name",) if isinstance(raw, dict) else dpath,
            help=f"did you mean '{hint}'?" if hint else "datasets: " + ", ".join(sorted(DATASETS)))
        if hint is None:
            return None, diags
        name, entry = hint, DATASETS[hint]  # carry on as the data set it was probably meant to be
    dargs = options(raw if isinstance(raw, dict) else {}, entry.args, dpath, f"dataset {name} has no option", name,
                    f"{name} ", skip=("name",))
    for k, spec in entry.args.items():
        if k not in dargs and spec.default is not REQUIRED:
            dargs[k] = spec.default
        elif k not in dargs and not (isinstance(raw, dict) and k in raw):
            err(codes.TRAIN, f"dataset {name} needs `{k}` ({spec.kind.text})", dpath, help=f"add {k}: ... under data")
    cfg = TrainConfig(data_name=name, data_args=dargs, written=set(values))
    for k, v in values.items():
        if k not in ("data", "task"):
            setattr(cfg, k, v)
    if "task" in values and values["task"] is not None:
        cfg.task = _validate_task(values["task"], train["task"], options, err)
    return cfg, diags  # with the valid options only, when diags has errors: the checks after it carry on


def _validate_task(value: tuple[str, dict[str, Any]], raw: Any, options: Any, err: Any) -> tuple[str, dict[str, Any]] | None:
    """train.task against the task registry: the name (did-you-mean) and its options."""
    from .tasks import TASKS

    name, given = value
    path: Path = ("train", "task")
    if name not in TASKS:
        hint = did_you_mean(name, list(TASKS))
        err(codes.TRAIN, f"unknown task '{name}'", path + ((name,) if isinstance(raw, dict) else ()),
            key=isinstance(raw, dict), help=f"did you mean '{hint}'?" if hint else "tasks: " + ", ".join(TASKS))
        if hint is None:
            return None
        name = hint
    entry = TASKS[name]
    opts = options(given, entry.args, path + (value[0],), f"task {name} has no option", f"task {name}", f"{name} ")
    return name, opts
