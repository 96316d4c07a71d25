"""Command-line overrides: `train.epochs=3 train.optimizer.SGD.lr=0.1 layers.7.Linear.out_features=64`.

Dotted paths into the spec document; list items by index; values parsed as YAML (so 0.1 is a float,
true a bool, [1, 2] a list).  Applied to the document before it is validated, so an override is
checked exactly like the file.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class OverrideError(ValueError):
    """An override that cannot be applied: the item, why, and which characters of the item it is about."""

    def __init__(self, item: str, reason: str, span: tuple[int, int] | None = None):
        super().__init__(f"override '{item}': {reason}")
        self.item, self.reason = item, reason
        self.span = span or (0, len(item))


_SCIENTIFIC = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def numbers(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads 1e-3 as a string; YAML 1.2 and every user read it as a number: make it one."""
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value):
        return float(value)
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return value


def parse(item: str) -> tuple[list[str | int], Any]:
    if "=" not in item:
        raise OverrideError(item, "not PATH=VALUE (e.g. train.epochs=3)")
    key, _, text = item.partition("=")
    if not key or any(not p for p in key.split(".")):
        raise OverrideError(item, f"empty part in the path '{key}'", (0, len(key)))
    try:
        value = numbers(yaml.safe_load(text)) if text.strip() else None
    except yaml.YAMLError as e:
        raise OverrideError(item, f"the value is not valid YAML ({_first_line(e)})", (len(key) + 1, len(item))) from None
    except Exception as e:  # noqa: BLE001 - a tag whose constructor refuses the text (!!int abc, !!float x)
        raise OverrideError(item, f"the value cannot be read ({type(e).__name__}: {_first_line(e)})",
                            (len(key) + 1, len(item))) from None
    path: list[str | int] = [int(p) if p.lstrip("-").isdigit() else p for p in key.split(".")]
    return path, value


def apply(data: Any, items: list[str]) -> Any:
    """Apply overrides to a parsed spec document (modified in place, also returned)."""
    if not items:
        return data
    if not isinstance(data, dict):
        raise OverrideError(items[0], "overrides need a spec that is a mapping")
    for item in items:
        path, value = parse(item)
        node: Any = data
        for i, p in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, dict):
                if p not in node or node[p] is None:
                    node[p] = [] if isinstance(nxt, int) else {}
                elif isinstance(node[p], str) and node[p] == nxt:  # `optimizer: SGD` -> `optimizer: {SGD: {}}`
                    node[p] = {node[p]: {}}
                elif not isinstance(node[p], (dict, list)) and isinstance(nxt, str) and _main_arg(p):
                    node[p] = {_main_arg(p): node[p]}  # `- Linear: 16` -> `- Linear: {out_features: 16}`
                node = node[p]
            elif isinstance(node, list) and isinstance(p, int) and -len(node) <= p < len(node):
                if isinstance(node[p], str) and node[p] == nxt:  # `- ReLU` -> `- ReLU: {...}`
                    node[p] = {node[p]: {}}
                node = node[p]
            else:
                where = ".".join(map(str, path[: i + 1]))
                if isinstance(node, list) and isinstance(p, int):
                    why = f"the list '{where.rpartition('.')[0] or where}' has {len(node)} item(s)"
                elif isinstance(node, list):
                    why = f"'{where.rpartition('.')[0]}' is a list: use an index"
                else:
                    why = f"'{'.'.join(map(str, path[:i]))}' is {node!r}, not a mapping or list"
                raise OverrideError(item, f"there is no '{where}' in the spec ({why})", (0, len(where)))
        last = path[-1]
        if isinstance(node, dict):
            node[last] = value
        elif isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node):
            node[last] = value
        elif isinstance(node, list) and isinstance(last, int):
            raise OverrideError(item, f"there is no item {last}: the list has {len(node)} item(s)",
                                (0, len(item.partition("=")[0])))
        else:
            where = ".".join(map(str, path[:-1]))
            raise OverrideError(item, f"cannot set '{last}': '{where}' is "
                                + ("a list (use an index)" if isinstance(node, list) else f"{node!r}, not a mapping"),
                                (0, len(item.partition("=")[0])))
    return data


def _main_arg(name: Any) -> str | None:
    """The argument a layer's bare value stands for (`- Linear: 16`: out_features), for a layer type name."""
    from .registry import lookup

    entry = lookup(name) if isinstance(name, str) else None
    return entry.main_arg if entry is not None else None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
