"""Layer families; importing this package fills the registry (one entry per layer type)."""

from . import (  # noqa: F401
    activation,
    attention,
    conv,
    core,
    elementwise,
    merge,
    norm,
    pool,
    recurrent,
    resize,
    sampling,
    select,
    structure,
    tokens,
)
