"""Block sparsity as the network and the `.tac` format see it: a Linear or Conv weight viewed as a
matrix (out, in * kernel) cut into `rows x cols` blocks. Pruning (model/compression/prune.py)
zeroes blocks; the compiler turns the same blocks into BSR kernels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tinyasr.model.common.errors import InputError


@dataclass(frozen=True)
class BlockShape:
    rows: int
    cols: int

    @classmethod
    def parse(cls, text: str) -> BlockShape:
        """'4x1' -> BlockShape(4, 1)."""
        try:
            rows, cols = (int(n) for n in text.lower().split("x"))
        except ValueError:
            raise InputError(f"--block: expected ROWSxCOLS such as 1x4 or 4x4, "
                             f"got {text!r}") from None
        if rows < 1 or cols < 1:
            raise InputError(f"--block: sizes must be positive, got {text!r}")
        return cls(rows, cols)

    def fits(self, weight: torch.Tensor) -> bool:
        rows, cols = weight_matrix(weight).shape
        return rows % self.rows == 0 and cols % self.cols == 0

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"


def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A linear or conv weight as (out, in * kernel): the matrix that masks and BSR blocks tile."""
    return weight.reshape(weight.shape[0], -1)


PrunableLayer = nn.Linear | nn.Conv1d | nn.Conv2d   # the layers a weight matrix is pruned in


def prunable_layers(model: nn.Module, block: BlockShape) -> dict[str, PrunableLayer]:
    """Linear and Conv layers whose weight matrix divides into `block`, by module name."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and block.fits(module.weight)}


def sparsity_of(weight: torch.Tensor) -> float:
    return float((weight == 0).float().mean())
