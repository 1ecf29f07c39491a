"""A running batch's key/value cache plus the 2-D attention mask that says which columns are real.

Rows join (left-padded to a common width), leave (batch select), and may carry holes: columns a
row must not attend to, from left padding or from rejected speculative drafts in a batch where
another row accepted more. Holes are just zeros in the mask; positions are tracked per row, so
RoPE never sees them. Columns nobody uses are trimmed from both ends.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def dynamic_layers(cache: DynamicCache) -> list[DynamicLayer]:
    """The cache's layers; only plain dynamic (full-attention) layers can be re-batched."""
    layers = []
    for layer in cache.layers:
        if not isinstance(layer, DynamicLayer) or layer.keys is None or layer.values is None:
            raise TypeError("continuous batching needs a full-attention DynamicCache")
        layers.append(layer)
    return layers


def _tensors(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor]:
    keys, values = layer.keys, layer.values
    assert keys is not None and values is not None  # checked by dynamic_layers
    return keys, values


def cache_width(cache: DynamicCache) -> int:
    return int(cache.get_seq_length())


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - t.shape[-2]
    if missing <= 0:
        return t
    pad = t.new_zeros((*t.shape[:-2], missing, t.shape[-1]))
    return torch.cat([pad, t], dim=-2)


class BatchKV:
    """The batch's cache and mask; row order matches the scheduler's list of sequences."""

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor = torch.zeros((0, 0), dtype=torch.long)

    @property
    def has_holes(self) -> bool:
        return not bool(self.mask.all())

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def add_row(self, cache: DynamicCache) -> None:
        """Append one prefilled sequence (batch 1, no holes) as the last row."""
        width = cache_width(cache)
        row_mask = torch.ones((1, width), dtype=torch.long)
        if self.cache is None or self.rows == 0:
            self.cache, self.mask = cache, row_mask
            return
        common = max(width, self.width)
        for mine, theirs in zip(dynamic_layers(self.cache), dynamic_layers(cache), strict=True):
            (mk, mv), (tk, tv) = _tensors(mine), _tensors(theirs)
            mine.keys = torch.cat([_pad_left(mk, common), _pad_left(tk, common)])
            mine.values = torch.cat([_pad_left(mv, common), _pad_left(tv, common)])
        self.mask = torch.cat([_pad_mask(self.mask, common), _pad_mask(row_mask, common)], dim=0)

    def keep_rows(self, keep: list[int]) -> None:
        if self.cache is None:
            return
        if not keep:
            self.cache, self.mask = None, torch.zeros((0, 0), dtype=torch.long)
            return
        index = torch.tensor(keep, dtype=torch.long)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self._trim_left()

    def extend(self, new_columns: torch.Tensor) -> torch.Tensor:
        """Mask for a forward pass that appends `new_columns` ([rows, q], 1 = real input)."""
        self.mask = torch.cat([self.mask, new_columns], dim=1)
        return self.mask

    def reject(self, row: int, from_column: int) -> None:
        """Mark columns >= from_column of `row` as holes (rejected drafts)."""
        if from_column < self.width:
            self.mask[row, from_column:] = 0

    def trim_right(self) -> None:
        """Drop trailing columns that no row uses (e.g. drafts rejected everywhere)."""
        if self.cache is None or self.width == 0:
            return
        used = self.mask.any(dim=0)
        last = int(torch.nonzero(used).max().item()) + 1 if bool(used.any()) else 0
        drop = self.width - last
        if drop > 0:
            self.cache.crop(-drop)
            self.mask = self.mask[:, :last]

    def _trim_left(self) -> None:
        used = self.mask.any(dim=0)
        if not bool(used.any()) or self.cache is None:
            return
        first = int(torch.nonzero(used).min().item())
        if first > 0:
            for layer in dynamic_layers(self.cache):
                keys, values = _tensors(layer)
                layer.keys, layer.values = keys[..., first:, :], values[..., first:, :]
            self.mask = self.mask[:, first:]


def _pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - mask.shape[1]
    if missing <= 0:
        return mask
    return torch.cat([mask.new_zeros((mask.shape[0], missing)), mask], dim=1)
