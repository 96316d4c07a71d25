"""The data ↔ model ↔ loss contract, and the metrics a run computes.  Pure Python (no torch).

The checked spec says what the model takes and gives per sample; the dataset says what it feeds and
what the targets are (`DataFacts`: known statically from its options for `dlspec check`, or from the
loaded data for `dlspec run`); the loss says how output and target meet.  A mismatch becomes a
diagnostic at the line that has to change.  What the facts leave unknown (a CSV's column count, a text's
vocabulary) is not checked here; `dlspec run` checks it once the data is loaded.
"""

from __future__ import annotations

from typing import Any

from . import codes, dims
from .codes import ErrorCode
from .data.base import DataFacts
from .diagnostics import Diagnostic, diag, did_you_mean
from .dims import Shape
from .infer import Checked, Row

CLASS_LOSSES = ("CrossEntropyLoss", "NLLLoss", "MultiMarginLoss")
ELEMENTWISE_LOSSES = ("MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss",
                      "SoftMarginLoss", "MultiLabelSoftMarginLoss", "PoissonNLLLoss", "KLDivLoss")
SUPPORTED_LOSSES = CLASS_LOSSES + ELEMENTWISE_LOSSES
BINARY_LOSSES = ("BCELoss", "BCEWithLogitsLoss")

CLASS_METRICS = ("accuracy", "top5_accuracy", "perplexity")
REGRESSION_METRICS = ("mse", "mae", "rmse")

__all__ = ["DataFacts", "check_contract", "check_metrics", "default_loss", "default_metrics", "CLASS_LOSSES",
           "SUPPORTED_LOSSES"]


def default_loss(task: str | None, entry: Any = None) -> str | None:
    """The loss of a run that names none: the task entry's (dlspec.tasks), else its kind's."""
    if entry is not None and entry.default_loss:
        return str(entry.default_loss)
    return {"classification": "CrossEntropyLoss", "regression": "MSELoss"}.get(task or "")


def default_metrics(task: str | None, entry: Any = None) -> list[str]:
    if entry is not None and entry.default_metrics is not None:
        return list(entry.default_metrics)
    return ["accuracy"] if task == "classification" else ["mse"] if task == "regression" else []


def bind_symbols(spec_shape: Shape, data_shape: tuple[int | None, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s, d in zip(spec_shape, data_shape, strict=False):
        if isinstance(s, str) and dims.SYMBOL.match(s) and d is not None:
            out.setdefault(s, d)
    return out


def _last_rows(rows: list[Row]) -> list[Row]:
    """Top-level rows that actually compute (skip trailing Identity/Dropout)."""
    return [r for r in rows if not r.entry.passthrough]


def _matches(want: tuple[int | None, ...], got: tuple[Any, ...]) -> bool:
    """got has want's shape, an unknown size (None) matching any."""
    return len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got, strict=True))


def _fmt(shape: tuple[Any, ...]) -> str:
    return dims.fmt_shape(tuple("?" if d is None else d for d in shape))


def _input_help(ss: list[Any], ds: tuple[int | None, ...], facts: DataFacts) -> str | None:
    """How to make the spec's input match the data: torch's channels-first order, a reshape, or the data's shape."""
    if any(d is None for d in ds):
        return None
    fix = f"write input: {list(ds)}"
    if len(ss) == len(ds) >= 3 and ss[-1] == ds[0] and list(ss[:-1]) == list(ds[1:]):
        return f"torch reads images channels first, (C, H, W): {fix} (not channels last)"
    count_s = dims.product(tuple(ss))
    if isinstance(count_s, int) and count_s == dims.product(tuple(d for d in ds if d is not None)) and facts.can_reshape:
        return fix + f", or reshape the samples with `shape: {ss}` under train.data"
    return fix


def check_contract(checked: Checked, facts: DataFacts, loss: str | None, loss_path: tuple[Any, ...] | None
                   ) -> tuple[list[Diagnostic], dict[str, int]]:
    """Diagnostics for the contract, and the symbol values the data binds (e.g. T=64)."""
    diags: list[Diagnostic] = []
    spec_in = checked.spec.input
    if spec_in is None:
        return diags, {}
    loss_name = loss or default_loss(facts.task)
    where_loss = loss_path if loss_path else None

    def err(code: ErrorCode, msg: str, path: tuple[Any, ...], help: str | None = None, notes: list[str] | None = None,
            severity: str = "error", layer: int | None = None, key: bool = False) -> None:
        diags.append(diag(severity, code, msg, path, key=key, layer=layer, help=help, notes=notes))

    # 1. the samples the data gives vs the spec's input
    ss = list(spec_in.shape)
    symbols: dict[str, int] = {}
    if facts.sample_shape is not None:
        ds = facts.sample_shape
        ok = len(ds) == len(ss) and all(not isinstance(s, int) or d is None or s == d
                                        for s, d in zip(ss, ds, strict=True))
        if not ok:
            err(codes.DATA_SHAPE, f"{facts.name} gives samples of shape {list('?' if d is None else d for d in ds)} "
                f"but the spec's input is {ss}", ("input",), help=_input_help(ss, ds, facts),
                notes=[f"data: {data_summary(facts)}"])
            return diags, {}
        symbols = bind_symbols(spec_in.shape, ds)
    if facts.x_dtype is not None and facts.x_dtype != spec_in.dtype:
        if facts.x_dtype == "long":
            err(codes.DTYPE, f"{facts.name} gives integer ids but the spec's input is float features", ("input",),
                help=f"write input: {{shape: {ss}, dtype: long}} and start with an Embedding, or use one_hot encoding")
        else:
            err(codes.DTYPE, f"{facts.name} gives float features but the spec's input is integer ids", ("input",),
                help=f"write input: {ss} (float), or " + (facts.ids_help or "give the data as integer ids"))
        return diags, symbols
    if checked.output is None or loss_name is None or not checked.rows:
        return diags, symbols
    if loss_name not in SUPPORTED_LOSSES:
        err(codes.LOSS, f"dlspec run does not support {loss_name} (it needs inputs other than (output, target))",
            where_loss or ("train",), key=where_loss is None, help="supported losses: " + ", ".join(SUPPORTED_LOSSES))
        return diags, symbols
    if facts.target_shape is None or facts.target_dtype is None:
        return diags, symbols
    _check_output(checked, facts, loss_name, where_loss, symbols, err)
    return diags, symbols


def _check_output(checked: Checked, facts: DataFacts, loss_name: str, where_loss: tuple[Any, ...] | None,
                  symbols: dict[str, int], err: Any) -> None:
    """The model's output against the targets through the loss; then the last layer against the loss."""
    assert checked.output is not None and facts.target_shape is not None
    out = tuple(_bind(d, symbols) for d in checked.output.shape)
    last = _last_rows(checked.rows)
    last_row = last[-1] if last else checked.rows[-1]
    last_path = last_row.item.args_path
    at_last = {"layer": last_row.item.index, "key": True}
    out_txt = dims.fmt_shape(out)
    target = facts.target_shape
    tgt_txt = _fmt(target)
    notes = [f"data: {data_summary(facts)}"]
    sequence_model = any(r.entry.mixes_steps for r in checked.all_rows())
    ids = facts.target_dtype == "long"
    k = facts.num_classes

    if loss_name in CLASS_LOSSES:
        if not ids:
            err(codes.LOSS, f"{loss_name} needs class ids as targets but {facts.name} gives float targets {tgt_txt}",
                where_loss or ("train",), key=where_loss is None,
                help="use MSELoss (or another regression loss) for real-valued targets")
            return
        want_out = target + (k,)
        if len(out) != len(want_out) or not _matches(target, out[:-1]):
            hint = None
            if sequence_model and len(out) == len(target) + 2:
                hint = "take the last step with `- Last` before the classifier"
            elif len(out) > len(want_out):
                hint = "add `- Flatten` (or `- Last` for sequences) before the last Linear"
            err(codes.LOSS, f"{loss_name} compares the output {out_txt} with class-id targets {tgt_txt}: it needs "
                f"(N, {', '.join(map(str, tuple('?' if d is None else d for d in target) + ('classes',)))})",
                last_path, help=hint, notes=notes, **at_last)
            return
        classes = out[-1]
        if k and isinstance(classes, int) and classes != k:
            err(codes.CLASSES, f"the model gives {classes} class scores but {facts.name} has {k} classes",
                last_path, severity="error" if classes < k else "warning",
                help=f"make the last layer give {k} outputs (e.g. out_features: {k})", **at_last)
    else:
        want = target
        binary = loss_name in BINARY_LOSSES
        if ids and not binary:  # MSELoss & co. on class ids: the wrong loss, not the wrong output
            err(codes.LOSS, f"{loss_name} compares values element by element, but {facts.name}'s targets are class "
                f"ids {tgt_txt}" + (f" ({k} classes)" if k else ""), where_loss or last_path,
                key=where_loss is None, layer=None if where_loss else last_row.item.index, notes=notes,
                help="for class ids use CrossEntropyLoss (the default for classification: leave `loss:` out)"
                     + (f", with a last layer of {k} outputs" if k else ""))
            return
        if binary and ids and target == ():
            if k and k > 2:
                err(codes.LOSS, f"{loss_name} is a two-class loss (one logit per sample) but {facts.name} has "
                    f"{k} classes", where_loss or last_path, key=where_loss is None,
                    layer=None if where_loss else last_row.item.index, notes=notes,
                    help=f"use CrossEntropyLoss (the default for classification: leave `loss:` out), with a last "
                         f"layer of {k} outputs")
                return
            want = (1,)  # binary class ids are compared with one logit per sample
        if not _matches(want, out):
            hint = None
            if binary and ids and out == (2,):
                hint = "give one logit per sample (out_features: 1), or use CrossEntropyLoss on the 2 scores"
            elif sequence_model and len(out) == len(want) + 1 and _matches(want, out[1:]):
                hint = "the model gives one output per time step: take the last step with `- Last` " \
                       "(after the recurrent layer), or predict a target per step"
            elif all(d is not None for d in want) and dims.product(out) == dims.product(tuple(d or 0 for d in want)):
                hint = f"reshape the output to {list(want)} (e.g. `- Flatten`)"
            elif all(d is not None for d in want) and len(want) == 1:
                hint = f"make the last layer give {want[0]} output{'s' if want[0] != 1 else ''} per sample " \
                       f"(e.g. out_features: {want[0]})"
            err(codes.LOSS, f"{loss_name} compares the output {out_txt} with targets {_fmt(want)}: the shapes differ "
                "(torch would broadcast them, or fail)", where_loss or last_path, key=where_loss is None,
                layer=None if where_loss else last_row.item.index, help=hint, notes=notes)
            return

    # the last layers vs the loss: double softmax, missing log-softmax / sigmoid
    tail = last_row.entry.name
    if loss_name == "CrossEntropyLoss" and tail == "Softmax":
        err(codes.DOUBLE_SOFTMAX, "Softmax before CrossEntropyLoss: the loss applies log-softmax itself, so the "
            "model is trained through two softmaxes (slow, flat gradients)", last_path, severity="warning",
            help="remove the Softmax layer (apply softmax only at prediction time)", **at_last)
    if loss_name == "NLLLoss" and tail != "LogSoftmax":
        err(codes.NLL_WITHOUT_LOG_SOFTMAX, f"NLLLoss expects log-probabilities but the model ends with {tail}",
            last_path, severity="warning",
            help="end the model with `- LogSoftmax: {dim: -1}`, or use CrossEntropyLoss on raw scores", **at_last)
    if loss_name == "BCELoss" and tail != "Sigmoid":
        err(codes.BCE_WITHOUT_SIGMOID, f"BCELoss expects probabilities but the model ends with {tail}", last_path,
            severity="warning", help="use BCEWithLogitsLoss on raw scores (numerically safer), or end with Sigmoid",
            **at_last)


def check_metrics(cfg: Any, task: str | None, loss: str | None, entry: Any = None) -> list[Diagnostic]:
    """Metrics that make no sense for the task, and an early-stopping metric that is never computed or that
    would select the model on the test set.  task None: not known yet (only what needs no task is checked)."""
    diags: list[Diagnostic] = []
    metrics = cfg.metrics or default_metrics(task, entry)
    if task is not None:
        fits: tuple[str, ...] = CLASS_METRICS if task == "classification" else REGRESSION_METRICS
        if loss in BINARY_LOSSES and task == "classification":
            fits = ("accuracy",)  # one logit (or probability) per label: no top-5, no perplexity
        if entry is not None and entry.metrics is not None:
            fits = entry.metrics
        for i, m in enumerate(cfg.metrics or []):
            if m not in fits:
                what = f"{task} with {loss}" if loss in BINARY_LOSSES else task
                diags.append(diag("error", codes.METRIC, f"metric {m} does not apply to {what}",
                                  ("train", "metrics", i), help="metrics for this task: " + ", ".join(fits) if fits
                                  else f"leave train.metrics out: {task} computes its own"))
    es = cfg.early_stopping
    if not es:
        return diags
    watched = str(es.get("metric"))
    path = ("train", "early_stopping", "metric")
    splits = ["train"] + (["val"] if cfg.val_split else [])
    columns = list(entry.row_metrics) if entry is not None and entry.row_metrics else ["loss", *metrics]
    names = [f"{s}_{m}" for s in splits for m in columns]
    if watched.startswith("test_"):
        diags.append(diag("error", codes.METRIC, f"early_stopping may not watch {watched}: choosing the epoch by "
                          "the test set makes the test result an optimistic estimate", path,
                          help=("watch a validation metric instead, e.g. metric: val_" + watched[5:]
                                + ("" if cfg.val_split else " (with val_split: 0.1 to hold out a validation part)"))))
        return diags
    if watched in names or (task is None and not cfg.metrics and watched.split("_", 1)[-1] != "loss"):
        return diags  # fine, or a metric whose default is not known before the data is loaded
    with_val = names + ([f"val_{m}" for m in columns] if not cfg.val_split else [])
    hint = did_you_mean(watched, with_val)
    why = " (there is no validation split: set train.val_split)" if watched.startswith("val_") and \
        not cfg.val_split else ""
    diags.append(diag("error", codes.METRIC, f"early_stopping watches '{watched}', which this run never computes{why}",
                      path, help=(f"did you mean '{hint}'? " if hint else "") + "metrics of this run: " + ", ".join(names)))
    return diags


def _bind(d: Any, symbols: dict[str, int]) -> Any:
    if isinstance(d, str) and d != dims.UNKNOWN:
        try:
            return dims.evaluate(d, symbols)
        except ValueError:
            return d
    return d


def data_summary(f: DataFacts) -> str:
    x = _fmt(f.sample_shape) if f.sample_shape is not None else "of a shape known once loaded"
    y = _fmt(f.target_shape) if f.target_shape is not None else "?"
    kind = f"{f.num_classes} classes" if f.task == "classification" and f.num_classes else f.task or "task unknown"
    dtype = {"long": " ids", "float": " float"}.get(f.x_dtype or "", "")
    return f"{f.name} samples {x}{dtype}, targets {y} ({kind})"
