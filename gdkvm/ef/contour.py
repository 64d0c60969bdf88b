"""Binary-mask helpers: largest connected component and the 0.5 iso-contour (marching squares).

Coordinates are ``(row, col)`` in pixels, with pixel centres on integer coordinates. The contour of a binary mask at
level 0.5 runs through the midpoints between inside and outside pixel centres, so the polygon it encloses has about
the mask's pixel count as area.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["find_contours", "largest_component", "outer_contour", "polygon_area"]

# Segments per marching-squares case. Corners: tl=1, tr=2, br=4, bl=8. Edges: 0 top, 1 right, 2 bottom, 3 left.
# The two saddle cases (5, 10) keep the inside corners apart (the outside is 8-connected, the inside 4-connected).
_CASE_SEGMENTS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((0, 3),),
    2: ((0, 1),),
    3: ((3, 1),),
    4: ((1, 2),),
    5: ((0, 3), (1, 2)),
    6: ((0, 2),),
    7: ((3, 2),),
    8: ((3, 2),),
    9: ((0, 2),),
    10: ((0, 1), (3, 2)),
    11: ((1, 2),),
    12: ((3, 1),),
    13: ((0, 1),),
    14: ((0, 3),),
}
# Edge midpoints of cell (r, c) in doubled coordinates (2*row, 2*col), so that they are integers.
_EDGE_OFFSETS = np.array([[0, 1], [1, 2], [2, 1], [1, 0]])


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a binary mask.

    Args:
        mask: [H, W] bool or {0, 1}.

    Returns:
        [H, W] bool, all False when the mask is empty.
    """
    mask = np.asarray(mask) > 0
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def polygon_area(points: np.ndarray) -> float:
    """Signed shoelace area of a closed polygon; positive when it runs clockwise on screen (row axis down).

    Args:
        points: [N, 2] (row, col).

    Returns:
        the signed area in squared input units.
    """
    y, x = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def find_contours(mask: np.ndarray) -> list[np.ndarray]:
    """All closed 0.5 iso-contours of a binary mask (marching squares; the mask is padded, so all close).

    Args:
        mask: [H, W] bool or {0, 1}.

    Returns:
        a list of [N, 2] float arrays (row, col), each a closed loop without the repeated end point, in no
        particular orientation.
    """
    b = np.pad(np.asarray(mask) > 0, 1).astype(np.int64)
    case = b[:-1, :-1] + 2 * b[:-1, 1:] + 4 * b[1:, 1:] + 8 * b[1:, :-1]
    neighbours: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for code, segments in _CASE_SEGMENTS.items():
        rows, cols = np.nonzero(case == code)
        if rows.size == 0:
            continue
        base = np.stack([2 * rows, 2 * cols], axis=1)
        for e0, e1 in segments:
            p0 = base + _EDGE_OFFSETS[e0]
            p1 = base + _EDGE_OFFSETS[e1]
            for a, c in zip(map(tuple, p0.tolist()), map(tuple, p1.tolist())):
                neighbours.setdefault(a, []).append(c)
                neighbours.setdefault(c, []).append(a)
    contours: list[np.ndarray] = []
    seen: set[tuple[int, int]] = set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop = [start]
        seen.add(start)
        prev, cur = start, neighbours[start][0]
        while cur != start:
            loop.append(cur)
            seen.add(cur)
            a, c = neighbours[cur]
            prev, cur = cur, (c if a == prev else a)
        contours.append(np.asarray(loop, dtype=np.float64) / 2.0 - 1.0)
    return contours


def outer_contour(mask: np.ndarray) -> np.ndarray:
    """The outer contour of the mask's largest component, clockwise on screen, starting at its top-most point.

    Starting at the top (the apex side in the usual apical views) and running clockwise means the basal side is
    walked from right to left without wrapping around the start index.

    Args:
        mask: [H, W] bool or {0, 1}; must not be empty.

    Returns:
        [N, 2] float (row, col) in pixels.

    Raises:
        ValueError: the mask is empty.
    """
    comp = largest_component(mask)
    if not comp.any():
        raise ValueError("empty mask: no contour")
    contour = max(find_contours(comp), key=lambda c: abs(polygon_area(c)))
    if polygon_area(contour) < 0:
        contour = contour[::-1]
    start = int(np.lexsort((contour[:, 1], contour[:, 0]))[0])
    return np.roll(contour, -start, axis=0)
