"""Tiles of one source image that are really distinct subjects: windows on a grid, never overlapping.

Tiles that overlap share pixels, so a query tile could be answered by copying a support tile. The builders that
cut one source into several subjects therefore use disjoint windows, with ``gap`` pixels between neighbours. They
write the window into the subject id (``<name>@y<top>x<left>``). ``separation`` measures how far apart two windows
are, and the tests check it on the built data.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

_WINDOW = re.compile(r"@y(\d+)x(\d+)$")


@dataclasses.dataclass(frozen=True)
class Window:
    """Rows ``top:top+height`` and columns ``left:left+width`` of a 2D source."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, array: np.ndarray, *, channels_last: bool = False) -> np.ndarray:
        """The window of ``array``'s last two axes, or of its first two for an ``(H, W, C)`` image
        (``channels_last``)."""
        rows, cols = slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)
        return array[rows, cols] if channels_last else array[..., rows, cols]

    def subject(self, name: str) -> str:
        return f"{name}@y{self.top}x{self.left}"


def grid(shape, tile, gap: int = 0) -> list[Window]:
    """Windows of ``tile`` pixels (an int, or ``(height, width)``) on a grid over a 2D ``shape``. Neighbours are
    ``gap`` pixels apart, and the grid is centred, so the leftover border is split evenly between both sides."""
    tiles = (tile, tile) if np.isscalar(tile) else tuple(tile)
    origins = []
    for length, size in zip(shape[:2], tiles):
        if not 1 <= size <= length or gap < 0:
            raise ValueError(f"tile {tiles} with gap {gap} does not fit a source of shape {tuple(shape[:2])}")
        count = (length + gap) // (size + gap)
        offset = (length - (count * size + (count - 1) * gap)) // 2
        origins.append([offset + k * (size + gap) for k in range(count)])
    return [Window(int(top), int(left), tiles[0], tiles[1]) for top in origins[0] for left in origins[1]]


def separation(a: Window, b: Window) -> int:
    """Pixels between two windows: the larger of the row gap and the column gap. It is negative when they
    overlap and 0 when they touch."""
    rows = max(b.top - (a.top + a.height), a.top - (b.top + b.height))
    cols = max(b.left - (a.left + a.width), a.left - (b.left + b.width))
    return max(rows, cols)


def subject_origin(subject: str) -> tuple[int, int]:
    """``(top, left)`` of the window named in a subject id ``<name>@y<top>x<left>``."""
    match = _WINDOW.search(subject)
    if not match:
        raise ValueError(f"subject {subject!r} does not name a window (<name>@y<top>x<left>)")
    return int(match.group(1)), int(match.group(2))
