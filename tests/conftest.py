"""Shared helpers for the tests: write a spec as YAML text, make a random batch (the torch-parity tests); measure
the work a piece of code does without a clock, and run a command with a hang guard (the robustness tests).

No test times anything: the machines are shared and noisy, so an elapsed-time assertion fails on a loaded
machine and proves nothing on an idle one.  What a "fast" or "bounded" claim really guards is pinned by what
does not depend on the machine's speed: the calls a piece of code makes (`work`), the memory it allocates
(tracemalloc, RLIMIT_AS), and a generous hang guard whose failure says the command hung (`run_or_hang`)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# hypothesis's own clocks off for every property test: no per-example deadline, and no "too slow" health check
# (both fail on a loaded machine); a test's own @settings keeps these unless it says otherwise
settings.register_profile("dlspec", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("dlspec")

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def spec_text(layers: list[Any], shape: tuple[Any, ...] | list[Any], dtype: str = "float") -> str:
    """A one-document spec as YAML text: `input:` (with dtype when not float) and a flow-style layer list."""
    inp: Any = list(shape) if dtype == "float" else {"shape": list(shape), "dtype": dtype}
    return "input: " + flow(inp) + "\nlayers:\n" + "".join(f"  - {flow(layer)}\n" for layer in layers)


def flow(v: Any) -> str:
    """A value as YAML flow text that PyYAML's safe loader reads back with the same types."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{flow(k)}: {flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(flow(x) for x in v) + "]"
    if isinstance(v, float):
        text = repr(v)  # YAML 1.1 needs a '.' in a float: 1e-05 would be read as a string
        return text if "." in text or "e" not in text else text.replace("e", ".0e", 1)
    return json.dumps(v)


def sample(shape: tuple[int, ...], dtype: str = "float", high: int = 2, batch: int = 3) -> Any:
    """A random batch for a per-sample shape (ids in [0, high) for long inputs)."""
    if dtype == "long":
        return torch.randint(0, high, (batch, *shape))
    return torch.randn(batch, *shape)


# --- work without a clock, and hang guards ------------------------------------------------------------------

class WorkExceeded(BaseException):
    """Raised inside the measured code at the first call over its budget.  A BaseException, so that the code
    under test, which turns its own exceptions into diagnostics, does not swallow it."""


@dataclass
class Work:
    calls: int = 0  # function calls made inside the block: Python functions, and C functions called from Python
    budget: int | None = None


@contextlib.contextmanager
def work(budget: int | None = None) -> Iterator[Work]:
    """Counts the function calls made inside the `with` block (sys.setprofile): a measure of the work done that
    is the same on a loaded machine as on an idle one, as a clock is not.  With a budget, the first call over it
    raises WorkExceeded inside the code, so a runaway expansion fails the test at once instead of hanging the
    suite.  Work inside one C call (one huge allocation, a long numpy loop) counts once: bound that by memory
    (tracemalloc, RLIMIT_AS)."""
    w = Work(budget=budget)
    limit = budget if budget is not None else -1

    def count(frame: Any, event: str, arg: Any) -> None:
        if event == "call" or event == "c_call":
            w.calls += 1
            if w.calls == limit + 1:
                raise WorkExceeded(f"more than {limit:,} calls")

    old = sys.getprofile()
    sys.setprofile(count)
    try:
        yield w
    finally:
        sys.setprofile(old)


def within(budget: int, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs)'s result; a test failure, not a hang, when it makes more than `budget` calls (`work`)."""
    try:
        with work(budget):
            return fn(*args, **kwargs)
    except WorkExceeded:
        pytest.fail(f"{getattr(fn, '__name__', fn)} made more than {budget:,} calls: it does not stop where its "
                    "bound says", pytrace=False)


def run_or_hang(cmd: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run with a generous timeout whose only purpose is not to hang the suite: the command answers in
    seconds even on a loaded machine, so when the timeout passes the test fails saying the command hung."""
    try:
        return subprocess.run(cmd, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        shown = " ".join(str(c) for c in cmd)
        pytest.fail(f"hung: no answer in {timeout:.0f} s from {shown[:300]}", pytrace=False)
