"""The bounds on what a spec may expand to, so that any input is answered in bounded time and memory.

A spec is small text that can stand for a great deal: YAML aliases repeat whole subtrees (a 400-byte
"billion laughs" file stands for 10^9 nodes), `repeat:` and blocks multiply layers, nesting goes deep.
Each expansion is counted while it happens and stops at its bound with a `limit` diagnostic, instead of
the reader, the schema stage or the shape pass running out of time, memory or stack. A spec far below
every bound (the largest in specs/ has under 100 entries; 10,000 layers check in under half a second) is
not affected. Each bound can be raised with its environment variable, e.g. `DLSPEC_MAX_LAYERS=500000`.

Above `warn_params` parameters or `warn_activations` values of one sample's activations, `dlspec check`
warns (`model-size`): the spec is valid, but few machines can train it.

The values a spec gives or computes have fixed bounds too (MAX_INT and the others at the end): sizes are
torch's 64-bit integers, and block arithmetic and symbolic sizes are followed only so far, so that no
value drives the checker into arithmetic on huge numbers or texts (docs/limits.md, "Expressions and sizes").
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def env_bound(name: str, default: int) -> int:
    """A bound from the environment variable `name` (a positive integer; anything else is ignored), else `default`."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class Limits:
    spec_bytes: int  # the size of a spec file or text
    yaml_nodes: int  # YAML nodes read, every use of an alias counted again
    yaml_alias_nodes: int  # ... of which repeated by aliases (beyond the nodes written once)
    yaml_depth: int  # nesting of YAML mappings and lists
    layer_depth: int  # nesting of layer lists: Sequential, Residual, Concat branches, blocks using blocks
    layers: int  # layers after `repeat:` and blocks are expanded (the rows of the table)
    warn_params: int  # `model-size` warning above this many parameters
    warn_activations: int  # ... or above this many values in one sample's layer outputs, summed


def current() -> Limits:
    """The bounds in force: the defaults, or the environment's DLSPEC_MAX_* values."""
    return Limits(
        spec_bytes=env_bound("DLSPEC_MAX_SPEC_BYTES", 4 * 2**20),
        yaml_nodes=env_bound("DLSPEC_MAX_YAML_NODES", 1_000_000),
        yaml_alias_nodes=env_bound("DLSPEC_MAX_YAML_ALIAS_NODES", 20_000),
        yaml_depth=env_bound("DLSPEC_MAX_YAML_DEPTH", 200),
        layer_depth=env_bound("DLSPEC_MAX_LAYER_DEPTH", 64),
        layers=env_bound("DLSPEC_MAX_LAYERS", 100_000),
        warn_params=env_bound("DLSPEC_WARN_PARAMS", 2_000_000_000),
        warn_activations=env_bound("DLSPEC_WARN_ACTIVATIONS", 1_000_000_000),
    )


ENV = {"spec_bytes": "DLSPEC_MAX_SPEC_BYTES", "yaml_nodes": "DLSPEC_MAX_YAML_NODES",
       "yaml_alias_nodes": "DLSPEC_MAX_YAML_ALIAS_NODES",
       "yaml_depth": "DLSPEC_MAX_YAML_DEPTH", "layer_depth": "DLSPEC_MAX_LAYER_DEPTH", "layers": "DLSPEC_MAX_LAYERS",
       "warn_params": "DLSPEC_WARN_PARAMS", "warn_activations": "DLSPEC_WARN_ACTIVATIONS"}


def raise_with(name: str) -> str:
    """The help's words for raising a bound."""
    return f"raise the bound with {ENV[name]}=N if the spec really is meant to be this large"


# --- fixed bounds of what a spec's values may be: no machine could use more, so none can be raised ----------

MAX_INT = 2**63 - 1  # a size, count or index: torch holds them in 64-bit integers
MAX_RANK = 64  # dimensions of one sample (an input, a Reshape's shape): far beyond any network's
EXPR_NODES = 100  # numbers, names and operators of one block-arithmetic expression (`width * expansion` has 3)
EXPR_DEPTH = 16  # parentheses and calls nested in one expression (`max(8, (c + 1) // 2)` nests 2)
SIZE_TEXT = 500  # characters of one symbolic size after simplifying (`((L-3)//2+1)*4`): a size the pass follows


def number(n: int) -> str:
    """An integer for a message: `12,345`, or `a 4,000-digit number` where the digits would fill the screen
    (or pass Python's 4,300-digit bound on turning an integer into text)."""
    if abs(n) < 10**30:
        return f"{n:,}"
    return f"a {int(abs(n).bit_length() * 0.30103) + 1:,}-digit number"
