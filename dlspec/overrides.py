"""Command-line overrides: `train.epochs=3 train.optimizer.SGD.lr=0.1 layers.7.Linear.out_features=64`.

Dotted paths into the spec document; list items by index; values parsed as YAML (so 0.1 is a float,
true a bool, [1, 2] a list).  Applied to the document before it is validated, so an override is
checked exactly like the file.
"""

from __future__ import annotations

from typing import Any

import yaml


class OverrideError(ValueError):
    pass


def parse(item: str) -> tuple[list[str | int], Any]:
    if "=" not in item:
        raise OverrideError(f"override '{item}' is not PATH=VALUE (e.g. train.epochs=3)")
    key, _, text = item.partition("=")
    if not key or any(not p for p in key.split(".")):
        raise OverrideError(f"override '{item}': empty part in the path '{key}'")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise OverrideError(f"override '{item}': the value is not valid YAML ({e})") from None
    path: list[str | int] = [int(p) if p.lstrip("-").isdigit() else p for p in key.split(".")]
    return path, value


def apply(data: Any, items: list[str]) -> Any:
    """Apply overrides to a parsed spec document (modified in place, also returned)."""
    if not items:
        return data
    if not isinstance(data, dict):
        raise OverrideError("overrides need a spec that is a mapping")
    for item in items:
        path, value = parse(item)
        node: Any = data
        for i, p in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, dict):
                if p not in node or node[p] is None:
                    node[p] = [] if isinstance(nxt, int) else {}
                node = node[p]
            elif isinstance(node, list) and isinstance(p, int) and -len(node) <= p < len(node):
                if isinstance(node[p], str) and not isinstance(nxt, int):  # `- ReLU` -> `- ReLU: {...}`
                    node[p] = {node[p]: {}}
                node = node[p]
            else:
                where = ".".join(map(str, path[: i + 1]))
                raise OverrideError(f"override '{item}': '{where}' is not in the spec (or not a mapping/list)")
        last = path[-1]
        if isinstance(node, dict):
            node[last] = value
        elif isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node):
            node[last] = value
        else:
            raise OverrideError(f"override '{item}': cannot set '{last}' there")
    return data
