"""Layer groups shared by every diagnostic: embeddings, the lower, middle and upper thirds of the blocks
(numpy.array_split of the block indices into three), and the head (final norm and output projection)."""

from __future__ import annotations

import re

import numpy as np

GROUPS = ("embeddings", "lower", "middle", "upper", "head")
_BLOCK = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def block_group(block: int, n_blocks: int) -> str:
    """'lower' | 'middle' | 'upper' for block index 0..n_blocks-1."""
    for name, part in zip(("lower", "middle", "upper"), np.array_split(np.arange(n_blocks), 3)):
        if block in part:
            return name
    raise ValueError(f"block {block} out of range for {n_blocks} blocks")


def hidden_group(layer: int, n_layers: int) -> str:
    """Group of hidden-state index `layer` among n_layers = blocks + 1 (index 0 is the embedding output)."""
    return "embeddings" if layer == 0 else block_group(layer - 1, n_layers - 1)


def parameter_group(name: str, n_blocks: int) -> str:
    """Group of a parameter by its name in a LLaMA-style state dict."""
    m = _BLOCK.search(name)
    if m:
        return block_group(int(m.group(1)), n_blocks)
    return "embeddings" if "embed" in name else "head"
