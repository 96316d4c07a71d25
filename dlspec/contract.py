"""The data ↔ model ↔ loss contract, checked before training starts.  Pure Python (no torch).

The checked spec says what the model takes and gives per sample; the loaded dataset says what it
feeds and what the targets are; the loss says how output and target meet.  A mismatch becomes a
diagnostic at the line that has to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import dims
from .diagnostics import Diagnostic
from .dims import Shape
from .infer import Checked, Row

CLASS_LOSSES = ("CrossEntropyLoss", "NLLLoss", "MultiMarginLoss")
ELEMENTWISE_LOSSES = ("MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss",
                      "SoftMarginLoss", "MultiLabelSoftMarginLoss", "PoissonNLLLoss", "KLDivLoss")
SUPPORTED_LOSSES = CLASS_LOSSES + ELEMENTWISE_LOSSES


@dataclass
class DataFacts:
    """What the trainer needs to know about a dataset to check the contract (no tensors)."""

    name: str
    sample_shape: tuple[int, ...]
    x_dtype: str  # "float" | "long"
    target_shape: tuple[int, ...]  # per sample: () for class ids
    target_dtype: str  # "long" | "float"
    task: str  # "classification" | "regression"
    num_classes: int | None
    can_reshape: bool = True  # the dataset has a `shape:` option that reshapes its samples


def default_loss(task: str) -> str:
    return "CrossEntropyLoss" if task == "classification" else "MSELoss"


def bind_symbols(spec_shape: Shape, data_shape: tuple[int, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s, d in zip(spec_shape, data_shape, strict=False):
        if isinstance(s, str) and dims.SYMBOL.match(s):
            out.setdefault(s, d)
    return out


def _last_rows(rows: list[Row]) -> list[Row]:
    """Top-level rows that actually compute (skip trailing Identity/Dropout)."""
    return [r for r in rows if r.entry.name not in ("Identity",) and r.entry.family != "dropout"]


def check_contract(checked: Checked, facts: DataFacts, loss: str | None, loss_path: tuple[Any, ...] | None,
                   data_path: tuple[Any, ...]) -> tuple[list[Diagnostic], dict[str, int]]:
    """Diagnostics for the contract, and the symbol values the data binds (e.g. T=64)."""
    doc = checked.spec.doc
    diags: list[Diagnostic] = []
    spec_in = checked.spec.input
    if spec_in is None or checked.output is None:
        return diags, {}
    loss_name = loss or default_loss(facts.task)
    where_loss = loss_path if loss_path else None

    def err(code: str, msg: str, path: tuple[Any, ...], help: str | None = None, notes: list[str] | None = None,
            severity: str = "error", layer: int | None = None, key: bool = False) -> None:
        diags.append(doc.diag(severity, code, msg, path, key=key, layer=layer, help=help, notes=notes))

    # 1. the samples the data gives vs the spec's input
    ds = list(facts.sample_shape)
    ss = list(spec_in.shape)
    ok = len(ds) == len(ss) and all(not isinstance(s, int) or s == d for s, d in zip(ss, ds, strict=True))
    if not ok:
        same_count = isinstance(dims.product(tuple(ss)), int) and dims.product(tuple(ss)) == dims.product(tuple(ds))
        help = (f"write input: {ds}" + (f", or reshape the samples with `shape: {ss}` under train.data"
                                        if same_count and facts.can_reshape else ""))
        err("data-shape", f"{facts.name} gives samples of shape {ds} but the spec's input is {ss}", ("input",),
            help=help, notes=[f"data: {data_summary(facts)}"])
        return diags, {}
    symbols = bind_symbols(spec_in.shape, facts.sample_shape)
    if facts.x_dtype != spec_in.dtype:
        if facts.x_dtype == "long":
            err("dtype", f"{facts.name} gives integer ids but the spec's input is float features", ("input",),
                help=f"write input: {{shape: {ss}, dtype: long}} and start with an Embedding, or use one_hot encoding")
        else:
            err("dtype", f"{facts.name} gives float features but the spec's input is integer ids", ("input",),
                help=f"write input: {ss} (float), or use ids encoding in train.data")
        return diags, symbols

    out = tuple(_bind(d, symbols) for d in checked.output.shape)
    last = _last_rows(checked.rows)
    last_row = last[-1] if last else checked.rows[-1]
    last_path = last_row.item.args_path
    out_txt = dims.fmt_shape(out)
    tgt_txt = dims.fmt_shape(facts.target_shape)
    supported = loss_name in SUPPORTED_LOSSES
    if not supported:
        err("loss", f"dlspec run does not support {loss_name} (it needs inputs other than (output, target))",
            where_loss or ("train",), key=where_loss is None,
            help="supported losses: " + ", ".join(SUPPORTED_LOSSES))
        return diags, symbols

    # 2. loss vs output and targets
    if loss_name in CLASS_LOSSES:
        if facts.target_dtype != "long":
            err("loss", f"{loss_name} needs class ids as targets but {facts.name} gives float targets {tgt_txt}",
                where_loss or ("train",), key=where_loss is None,
                help="use MSELoss (or another regression loss) for real-valued targets")
            return diags, symbols
        want_out = facts.target_shape + ((facts.num_classes,) if facts.num_classes else (dims.UNKNOWN,))
        if len(out) != len(want_out) or out[:-1] != facts.target_shape:
            hint = ""
            if len(out) == len(facts.target_shape) + 2 and out[0] not in facts.target_shape:
                hint = "take the last step with `- Last` before the classifier"
            elif len(out) > len(want_out):
                hint = "add `- Flatten` (or `- Last` for sequences) before the last Linear"
            err("loss", f"{loss_name} compares the output {out_txt} with class-id targets {tgt_txt}: it needs "
                f"(N, {', '.join(map(str, facts.target_shape + ('classes',)))})", last_path,
                layer=last_row.item.index, key=True, help=hint or None,
                notes=[f"data: {data_summary(facts)}"])
            return diags, symbols
        classes = out[-1]
        if facts.num_classes and isinstance(classes, int) and classes != facts.num_classes:
            sev = "error" if classes < facts.num_classes else "warning"
            err("classes", f"the model gives {classes} class scores but {facts.name} has {facts.num_classes} classes",
                last_path, severity=sev, layer=last_row.item.index, key=True,
                help=f"make the last layer give {facts.num_classes} outputs (e.g. out_features: {facts.num_classes})")
    else:
        want = facts.target_shape
        if loss_name in ("BCELoss", "BCEWithLogitsLoss") and facts.target_dtype == "long" and want == ():
            want = (1,)  # binary class ids are compared with one logit per sample
        if out != want:
            notes = [f"data: {data_summary(facts)}"]
            hint = None
            if len(out) == len(want) + 1 and out[1:] == want:
                hint = "the model gives one output per time step: take the last step with `- Last` " \
                       "(after the recurrent layer), or predict a target per step"
            elif dims.product(out) == dims.product(want):
                hint = f"reshape the output to {list(want)} (e.g. `- Flatten`)"
            err("loss", f"{loss_name} compares the output {out_txt} with targets {tgt_txt}: the shapes differ "
                "(torch would broadcast them, or fail)", where_loss or last_path, key=where_loss is None,
                layer=None if where_loss else last_row.item.index, help=hint, notes=notes)
            return diags, symbols

    # 3. the last layers vs the loss: double softmax, missing log-softmax / sigmoid
    tail = last_row.entry.name
    if loss_name == "CrossEntropyLoss" and tail == "Softmax":
        err("double-softmax", "Softmax before CrossEntropyLoss: the loss applies log-softmax itself, so the "
            "model is trained through two softmaxes (slow, flat gradients)", last_path, severity="warning",
            layer=last_row.item.index, key=True, help="remove the Softmax layer (apply softmax only at prediction time)")
    if loss_name == "NLLLoss" and tail != "LogSoftmax":
        err("nll-without-log-softmax", f"NLLLoss expects log-probabilities but the model ends with {tail}",
            last_path, severity="warning", layer=last_row.item.index, key=True,
            help="end the model with `- LogSoftmax: {dim: -1}`, or use CrossEntropyLoss on raw scores")
    if loss_name == "BCELoss" and tail != "Sigmoid":
        err("bce-without-sigmoid", f"BCELoss expects probabilities but the model ends with {tail}", last_path,
            severity="warning", layer=last_row.item.index, key=True,
            help="use BCEWithLogitsLoss on raw scores (numerically safer), or end with Sigmoid")
    return diags, symbols


def _bind(d: Any, symbols: dict[str, int]) -> Any:
    if isinstance(d, str) and d != dims.UNKNOWN:
        try:
            return dims.evaluate(d, symbols)
        except ValueError:
            return d
    return d


def data_summary(f: DataFacts) -> str:
    x = dims.fmt_shape(f.sample_shape)
    y = dims.fmt_shape(f.target_shape)
    kind = f"{f.num_classes} classes" if f.task == "classification" and f.num_classes else f.task
    return f"{f.name} samples {x} {'ids' if f.x_dtype == 'long' else 'float'}, targets {y} ({kind})"
