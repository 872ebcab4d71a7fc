"""The idea of the one-pass d1/d2 kernel (ext/_d1d2.pyx), written out in plain Python for
2-D labels: slow, for reading and stepping through. tests/test_weights.py holds it equal
to the kernel, bit for bit.

The per-cell reference (`unet_ref.reference`) runs one distance transform per cell. The
kernel instead runs one separable pass per axis, like an exact Euclidean distance
transform, and carries per pixel a triple: the nearest label L1, d1^2 and d2^2.

1. Along each column, every pixel keeps the two nearest *distinct* labels of its column,
   (l1, g1) and (l2, g2), g = squared distance. A sweep down the column knows the nearest
   label above (a) and the nearest label above that differs from it (b): between b and the
   pixel there is only background and label a, so no third label can be nearer. A sweep
   up does the same below; the two nearest distinct of these four are the column's.
2. Along each row: d1^2(x) = min over x' of (x - x')^2 + g1(x'), and L1 is the label of the
   minimising x'. d2 is the distance to the nearest pixel whose label is not L1; in column
   x' that pixel is (l1, g1) if l1(x') != L1, and (l2, g2) otherwise, since l2 is the
   nearest label of that column other than l1. So
   d2^2(x) = min over x' of (x - x')^2 + (g1(x') if l1(x') != L1 else g2(x')).
   Two labels per column are enough. If two cells tie for the nearest, d2 = d1 whichever
   is called L1.

The kernel takes the row minima with a lower envelope of parabolas (Felzenszwalb and
Huttenlocher, "Distance transforms of sampled functions", 2012), in time linear in the row;
here they are plain numpy minima over the whole row, quadratic, and a 3-D volume would add
one more such pass along its third axis.
"""
import numpy as np

__all__ = ["d1_d2"]


def _column_pass(column):
    """The two nearest distinct labels (l1, g1, l2, g2) of every pixel of one column, g the
    squared distance; label 0 and g = inf where there is none."""
    n = len(column)
    above = _sweep(column)  # nearest labels above or at each pixel: (a, ia, b, ib)
    below = [(a, n - 1 - ia, b, n - 1 - ib) for a, ia, b, ib in _sweep(column[::-1])][::-1]
    out = []
    for y in range(n):
        a, ia, b, ib = above[y]
        c, ic, d, id_ = below[y]
        candidates = sorted((abs(y - i) ** 2, label) for label, i in ((a, ia), (b, ib), (c, ic), (d, id_)) if label)
        first = candidates[0] if candidates else (np.inf, 0)
        second = next(((g, label) for g, label in candidates if label != first[1]), (np.inf, 0))
        out.append((first[1], first[0], second[1], second[0]))
    return out


def _sweep(column):
    """Down the column: per pixel, the nearest label at or above it (a, at index ia) and the
    nearest one above that differs from a (b, at ib); 0 for none."""
    a = ia = b = ib = 0
    out = []
    for y, label in enumerate(column):
        if label and label == a:
            ia = y
        elif label:
            a, ia, b, ib = label, y, a, ia
        out.append((a, ia, b, ib))
    return out


def d1_d2(labels):
    """d1, d2 of 2-D instance labels (as `unet_ref.weights.d1_d2`), float32, inf where the
    image holds fewer than one / two cells."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got shape {labels.shape}")
    h, w = labels.shape
    l1, g1, l2, g2 = (np.array(part, dtype=float).reshape(w, h).T  # (H, W) each
                      for part in zip(*(entry for x in range(w) for entry in _column_pass(labels[:, x].tolist()))))
    d1_sq, d2_sq = np.empty((h, w)), np.empty((h, w))
    gap = (np.arange(w)[:, None] - np.arange(w)[None, :]) ** 2.0  # (x, x'): (x - x')^2
    for y in range(h):
        total = gap + g1[y]  # (x, x')
        nearest = total.argmin(axis=1)
        d1_sq[y] = total[np.arange(w), nearest]
        big_l1 = l1[y, nearest]  # L1 of every x
        other = np.where(l1[y][None, :] != big_l1[:, None], g1[y], g2[y])  # (x, x'): nearest label != L1
        d2_sq[y] = (gap + other).min(axis=1)
    return np.sqrt(d1_sq).astype(np.float32), np.sqrt(d2_sq).astype(np.float32)
