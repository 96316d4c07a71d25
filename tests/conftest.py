"""Shared helpers for the torch-parity tests: write a spec as YAML text, make a random batch."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
