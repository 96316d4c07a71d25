"""dlspec: declarative model specs for PyTorch, checked like a compiler before a tensor is allocated.

    import dlspec
    spec = dlspec.load("specs/lenet.yaml")      # parse + schema (never raises for a bad spec)
    checked = dlspec.check(spec)                 # shapes, params, MACs, diagnostics (no torch import)
    model = dlspec.build(checked)                # torch.nn.Module (raises SpecError if the spec has errors,
                                                 # ResourceError if its weights would not fit in memory)

A spec of several networks (`networks:`, e.g. a GAN) checks to a Checked whose `networks` holds one Checked per
network, and builds to an nn.ModuleDict of the networks by name.
"""

from __future__ import annotations

import os
from typing import Any, Union

from . import layers as _layers  # noqa: F401  (fills the registry)
from .infer import Checked
from .schema import Spec, parse_spec
from .source import parse, read

__version__ = "0.1.0"
__all__ = ["load", "loads", "check", "build", "Spec", "Checked", "SpecError", "ResourceError"]

SpecLike = Union[str, "os.PathLike[str]", Spec, Checked]


def load(path: str | os.PathLike[str]) -> Spec:
    """Read and validate a spec file.  Problems are in ``spec.diagnostics``; nothing is raised for a bad spec."""
    return parse_spec(read(os.fspath(path)))


def loads(text: str, path: str = "<string>") -> Spec:
    """Like load(), from YAML text."""
    return parse_spec(parse(text, path))


def check(spec: SpecLike) -> Checked:
    """Infer every layer's shape, parameters and MACs; collect all diagnostics.  Never imports torch."""
    from .diagnostics import locate, sort_key
    from .infer import check as _check
    from .traincheck import check_train

    if isinstance(spec, Checked):
        return spec
    if not isinstance(spec, Spec):
        spec = load(spec)
    checked = _check(spec)  # the shapes
    extra = check_train(checked)  # the train: section against torch's names, the data and the model
    if extra:
        checked.diagnostics = sorted(checked.diagnostics + [locate(d, spec.doc) for d in extra], key=sort_key)
    return checked


def build(spec: SpecLike) -> Any:
    """Build the torch.nn.Module a spec describes (an nn.ModuleDict of its networks, by name, for a spec of several).
    Raises SpecError (with the rendered diagnostics) on errors, and ResourceError (a SpecError) when the weights
    would not fit in this machine's memory, before allocating any."""
    from .builder import build_checked

    return build_checked(check(spec))


def __getattr__(name: str) -> Any:
    if name in ("SpecError", "ResourceError"):
        from . import builder

        return getattr(builder, name)
    raise AttributeError(name)
