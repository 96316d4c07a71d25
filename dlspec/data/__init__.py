"""Datasets for `dlspec run`: each module registers its entries in DATASETS (see base.py).

The loader modules (idx, synthetic, files, text, textclass, vision) share the helpers in common.py.
"""

from __future__ import annotations

import importlib

from .base import DATASETS, Bundle, DataError, DataFacts, DatasetType, FieldFacts, Split, data_root, register

for _mod in ("idx", "synthetic", "files", "text", "textclass", "vision"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as e:  # pragma: no cover - only while a module is being written
        if e.name != f"{__name__}.{_mod}":
            raise

__all__ = ["DATASETS", "Bundle", "DataError", "DataFacts", "DatasetType", "FieldFacts", "Split", "data_root", "register", "load"]


def load(name: str, args: dict, root: str) -> Bundle:
    """Load a registered dataset; DataError for anything wrong with the data."""
    return DATASETS[name].load(args, root)
