"""Layer families; importing this package fills the registry (one entry per layer type)."""

from . import activation, attention, conv, core, merge, norm, pool, recurrent, resize, select, structure, tokens  # noqa: F401
