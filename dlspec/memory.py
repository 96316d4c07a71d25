"""How much memory a run may use, and how much a model would take: checked before anything is allocated.

`available()` is the memory an allocation can count on now: on the CPU the least of the kernel's
MemAvailable, what the process's cgroup still allows and what its address-space limit (RLIMIT_AS) leaves;
on a CUDA device torch's free memory.  `DLSPEC_MEMORY=SIZE` (e.g. `8G`, `512M`, a number of bytes, or
`unlimited`) replaces the measured amount, for every device.

`estimate()` is what training (or evaluating) a checked spec takes at its peak, from the checked rows
alone: the float32 weights, their gradients, the optimizer's state (2 values per weight for Adam), a copy of
the weights for the trial step `dlspec run` takes before it starts, and one batch's activations (every
layer's output × the batch size, with the data's symbols bound).  An estimate from below: a run that needs
more than it is refused with the numbers before a tensor is allocated.

Pure Python: nothing here imports torch (data loaders call it too).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from . import dims

ENV = "DLSPEC_MEMORY"

# optimizer -> values of state per weight (torch's defaults; see state_per_weight for the options that add more)
OPTIMIZER_STATE = {"SGD": 0, "Adam": 2, "AdamW": 2, "Adamax": 2, "NAdam": 2, "RAdam": 2, "Adadelta": 2, "Rprop": 2,
                   "ASGD": 2, "Adagrad": 1, "RMSprop": 1, "SparseAdam": 2, "Adafactor": 0}

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}


def fmt_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units up to EiB."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.0f} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} EiB"


def parse_size(text: str) -> int | None:
    """'8G' -> 8 GiB in bytes; 'unlimited' -> None; ValueError for anything else."""
    t = text.strip().lower().replace(" ", "").replace("_", "")
    if t in ("unlimited", "inf", "none", "off"):
        return None
    num = t.rstrip("kmgtib")
    unit = t[len(num):]
    if unit not in _UNITS or not num:
        raise ValueError(text)
    value = float(num)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return int(value * _UNITS[unit])


@dataclass
class Budget:
    """Memory an allocation can count on: bytes (None: no bound known) and where the number comes from."""

    bytes: int | None
    source: str

    def note(self) -> str:
        """Where the number comes from, and how to give another."""
        if self.source.startswith(ENV + "="):
            return f"the memory is set by {self.source} (unset it to measure it, or give another size)"
        return f"the memory is measured ({self.source}); {ENV}=SIZE (e.g. {ENV}=64G) sets it instead"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _meminfo() -> int | None:
    text = _read("/proc/meminfo")
    for line in (text or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup() -> int | None:
    """What this process's cgroup still allows (v2, else v1); None without a limit."""
    for limit_f, usage_f, stat_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current",
                                      "/sys/fs/cgroup/memory.stat"),
                                     ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                      "/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat")):
        limit, usage = _read(limit_f), _read(usage_f)
        if limit is None or usage is None:
            continue
        limit = limit.strip()
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:
            return None
        reclaimable = 0
        for line in (_read(stat_f) or "").splitlines():
            key, _, value = line.partition(" ")
            if key in ("inactive_file", "total_inactive_file") and value.strip().isdigit():
                reclaimable = int(value)
        return max(0, int(limit) - max(0, int(usage.strip() or 0) - reclaimable))
    return None


def _address_space() -> int | None:
    """What RLIMIT_AS leaves of the address space; None without a limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    size = 0
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmSize:"):
            size = int(line.split()[1]) * 1024
    return max(0, soft - size)


def available(device: Any = None) -> Budget:
    """The memory an allocation on `device` (a torch.device, a device type string, or None for the CPU) can
    count on now: DLSPEC_MEMORY when set, else measured."""
    env = os.environ.get(ENV)
    note = ""
    if env:
        try:
            return Budget(parse_size(env), f"{ENV}={env}")
        except ValueError:
            note = f"; {ENV}={env!r} is not a size (e.g. 8G), so it is ignored"
    kind = getattr(device, "type", device) or "cpu"
    if kind == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return Budget(int(free), f"free on {device} (torch.cuda.mem_get_info){note}")
    if kind != "cpu":
        return Budget(None, f"not measured on {kind}{note}")
    found = [(b, s) for b, s in ((_meminfo(), "MemAvailable"), (_cgroup(), "the cgroup's limit"),
                                 (_address_space(), "the address-space limit RLIMIT_AS")) if b is not None]
    if not found:
        return Budget(None, "not measured" + note)
    b, s = min(found)
    return Budget(b, f"{s} on this machine{note}" if s != "MemAvailable" else f"available on this machine{note}")


def check_fits(nbytes: int, device: Any = None) -> Budget | None:
    """None when `nbytes` fit on the device; else the budget they exceed."""
    budget = available(device)
    return budget if budget.bytes is not None and nbytes > budget.bytes else None


# --- the estimate for a checked spec ---------------------------------------------------------------------

@dataclass
class Term:
    what: str  # "the weights", "Adam's state", ...
    bytes: int


@dataclass
class Estimate:
    terms: list[Term]
    params: int
    per_sample: int  # bytes of one sample's activations (training)
    largest_params: Any = None  # the row with the most parameters
    largest_output: Any = None  # the first row whose output is at least half the largest one (per sample)
    output_bytes: int = 0  # the largest output's bytes per sample
    unknown: list[str] = field(default_factory=list)  # rows whose output size is not known (left out)

    @property
    def total(self) -> int:
        return sum(t.bytes for t in self.terms)

    def breakdown(self) -> str:
        return ", ".join(f"{t.what} {fmt_bytes(t.bytes)}" for t in self.terms if t.bytes)


def state_per_weight(optimizer: str | None, kwargs: dict[str, Any]) -> int:
    """Values of optimizer state per weight (momentum buffers, Adam's two moments, amsgrad's maximum)."""
    if optimizer is None:
        return 0
    n = OPTIMIZER_STATE.get(optimizer, 2)
    if optimizer == "SGD" and kwargs.get("momentum"):
        n = 1
    if optimizer in ("Adam", "AdamW") and kwargs.get("amsgrad"):
        n += 1
    if optimizer == "RMSprop":
        n += bool(kwargs.get("momentum")) + bool(kwargs.get("centered"))
    return n


def _elements(shape: Any, symbols: dict[str, int]) -> int | None:
    n = 1
    for d in shape:
        if isinstance(d, str):
            try:
                d = dims.evaluate(d, symbols)
            except Exception:  # noqa: BLE001 - a symbol the data does not bind, or an unknown size
                return None
        n *= int(d)
    return n


def saved_values(row: Any) -> Any:
    """The values per sample training keeps of one layer for the backward pass: its output's, or what its
    registry entry says (a recurrent layer's gates of every step); a size or a symbolic expression."""
    if row.entry.saved is not None and row.input is not None and row.output is not None:
        return row.entry.saved(row.args, row.input.shape, row.output.shape)
    return dims.product(row.output.shape) if row.output is not None else dims.UNKNOWN


def activation_values(checked: Any) -> tuple[Any, Any]:
    """(values training keeps per sample, the inference peak per sample: the largest layer input plus output)
    of a spec of one network, as sizes or symbolic expressions (the peak, a maximum, is None when symbolic)."""
    from .infer import sum_dims

    leaves = [r for r in checked.all_rows() if not r.children and r.output is not None]
    train = sum_dims([saved_values(r) for r in leaves])
    pairs = []
    for r in leaves:
        ins = r.inputs or ([r.input] if r.input is not None else [])
        pair = [dims.product(t.shape) for t in ins] + [dims.product(r.output.shape)]
        if not all(isinstance(v, int) for v in pair):
            return train, None
        pairs.append(sum(int(v) for v in pair))
    return train, max(pairs, default=0)


def estimate(checked: Any, batch_size: int | None = None, eval_batch_size: int | None = None,
             optimizer: tuple[str, dict[str, Any]] | None = None, symbols: dict[str, int] | None = None,
             precision: str = "fp32", trial: bool = True) -> Estimate:
    """The peak memory of building (batch_size None), evaluating (optimizer None) or training a checked spec."""
    symbols = symbols or {}
    params = checked.params
    weights = 4 * params  # float32
    terms = [Term("the weights", weights)]
    training = optimizer is not None and batch_size is not None
    if training:
        name, kw = optimizer  # type: ignore[misc]
        terms.append(Term("their gradients", weights))
        k = state_per_weight(name, kw)
        if k:
            terms.append(Term(f"{name}'s state", k * weights))
    leaves = [r for r in checked.all_rows() if not r.children]
    act = 2 if precision in ("bf16", "fp16") else 4
    per_sample, largest_bytes, unknown = 0, 0, []
    outputs: list[tuple[Any, int]] = []
    for r in leaves:
        if r.output is None:
            continue
        n = _elements(r.output.shape, symbols)
        kept = _elements((saved_values(r),), symbols) if r.entry.saved is not None else n
        if n is None or kept is None:
            unknown.append(r.type)
            continue
        b = n * (8 if r.output.dtype == "long" else act)
        per_sample += kept * (8 if r.output.dtype == "long" else act)
        largest_bytes = max(largest_bytes, b)
        outputs.append((r, b))
    # where the activations become large: the first layer whose output is at least half the largest one
    largest = next((r for r, b in outputs if 2 * b >= largest_bytes), None)
    by_params = max(leaves, key=lambda r: r.params or 0, default=None)
    est = Estimate(terms, params, per_sample, by_params, largest, largest_bytes, unknown)
    if batch_size is None:
        return est
    # the peak beside the weights (and their gradients and state): the trial step's copy of the weights,
    # a training batch's activations (every output kept for the backward pass, and the largest one's
    # gradient), or an evaluation batch's (no graph kept: the largest input and output at once)
    eval_bs = eval_batch_size or max(256, 4 * batch_size)
    peaks = [Term(f"the activations of a batch of {eval_bs} (evaluation)", 2 * largest_bytes * eval_bs)]
    if training:
        peaks.append(Term(f"the activations of a batch of {batch_size}", (per_sample + largest_bytes) * batch_size))
    if trial:
        peaks.append(Term("a copy of the weights (the trial step)", weights))
    terms.append(max(peaks, key=lambda t: t.bytes))
    return est
