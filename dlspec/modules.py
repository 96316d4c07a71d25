"""torch modules for what a layer list needs and torch.nn lacks.  Imported only when building."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _SequenceOutput:
    """Mixin for recurrent layers: on a layer list they give their output sequence, not (output, state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, F) -> (N, T, H·dirs)
        return super().forward(x)[0]  # type: ignore[misc]

    def step(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """(output, new state): for generation that carries the hidden state from call to call."""
        return super().forward(x, state)  # type: ignore[misc]


class RNN(_SequenceOutput, nn.RNN):  # type: ignore[misc]
    pass


class LSTM(_SequenceOutput, nn.LSTM):  # type: ignore[misc]
    pass


class GRU(_SequenceOutput, nn.GRU):  # type: ignore[misc]
    pass


class SelfAttention(nn.MultiheadAttention):
    """MultiheadAttention with query = key = value = the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, x, x, need_weights=False)[0]


class SpecModel(nn.Sequential):
    """The model a spec describes: its layers in order, named as in the spec's table (conv1, relu1, ...)."""


class Residual(nn.Module):
    """x + body(x), or shortcut(x) + body(x)."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x if self.shortcut is None else self.shortcut(x)) + self.body(x)


class Concat(nn.Module):
    def __init__(self, branches: list[nn.Module], dim: int = 1):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Last(nn.Module):
    """The last time step: (N, T, F) -> (N, F)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]


class Reshape(nn.Module):
    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"N, {', '.join(map(str, self.shape))}"


class Permute(nn.Module):
    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return ", ".join(map(str, self.dims))
