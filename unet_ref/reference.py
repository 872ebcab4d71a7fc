"""The per-cell weight map of the original notebook, rewritten readably: the oracle.

Ronneberger et al. (2015), eq. (2):

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

with w_c "the weight map to balance the class frequencies", d1 "the distance to the border
of the nearest cell" and d2 "the distance to the border of the second nearest cell". The
notebook (`unet_wmap`) computes d1 and d2 the obvious way: one Euclidean
distance transform per cell, stacked into an (H, W, n_cells) float64 array and sorted along
the cells, so it costs n_cells distance transforms and O(H W n_cells) memory. This module
keeps that algorithm, in any number of dimensions and with a pixel spacing per axis
(scipy's `sampling`), as the definition: the one-pass kernel of `unet_ref.weights` is tested
bit for bit against it and benchmarked against it, and the plain training tile
(`unet_ref.tiles`) uses it. It imports nothing else of the package.
"""
import math

import numpy as np
from scipy.ndimage import distance_transform_edt
from skimage.measure import label

__all__ = ["d1_d2", "weight_map", "balanced_class_weights", "weight_context"]


def d1_d2(labels, spacing=None):
    """Distances to the nearest and second-nearest object, one distance transform per object.

    Parameters
    ----------
    labels : array of int, any number of dimensions
        Instance labels; 0 is background, every other value is one object.
    spacing : sequence of float, optional
        Pixel size along each axis, passed to `distance_transform_edt` as `sampling`.

    Returns
    -------
    d1, d2 : float32 arrays of the labels' shape
        Euclidean distance to the nearest object (0 inside it) and to the nearest pixel of
        a different object; `inf` where fewer than one / two objects exist.
    """
    d1, d2 = _nearest_two(np.asarray(labels), spacing)
    # float64 until here, like the notebook; one rounding to float32 at the end
    return d1.astype(np.float32), d2.astype(np.float32)


def _nearest_two(labels, spacing=None):
    """(d1, d2) in float64, as the notebook has them before the weight formula."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    # maps[..., i]: distance of every pixel to object ids[i]            # (*shape, n_objects)
    maps = np.full(labels.shape + (max(len(ids), 2),), np.inf)
    for i, k in enumerate(ids):
        maps[..., i] = distance_transform_edt(labels != k, sampling=spacing)
    maps.sort(axis=-1)
    return maps[..., 0], maps[..., 1]


def balanced_class_weights(cells):
    """The notebook's w_c: (w_background, w_cell) = 1 / class frequency, scaled so that the
    rarer class weighs 1. `cells`: bool array, True on cells.

    Departs from the notebook where a class has no pixels (it divides by zero there): the
    absent class counts as infinitely rare but owns no pixels, so the present one weighs 1.
    """
    n_cell = np.count_nonzero(cells)
    inv = np.array([1.0 / n if n else 0.0 for n in (cells.size - n_cell, n_cell)])
    w_background, w_cell = inv / inv.max()
    return float(w_background), float(w_cell)


def weight_map(mask=None, w0=10, sigma=5, spacing=None, *, labels=None, class_weights=None):
    """The notebook's `unet_wmap`: class weights plus the border term, per-cell version.

    Parameters
    ----------
    mask : uint8 {0, 255} or bool array, 2-D or 3-D
        Cells are the pixels >= 128 (True for bool); cells are the connected components
        with every neighbour (8-connected in 2-D, as the notebook; 26 in 3-D).
    w0, sigma : float
        Border weight and width in the units of `spacing` (paper: 10 and 5 pixels).
    spacing : sequence of float, optional
        Pixel size along each axis (`d1_d2`).
    labels : int array, optional
        Instance labels instead of `mask` (0 = background, one id per cell), taken as they
        are: touching cells stay separate.
    class_weights : (w_background, w_cell), optional
        w_c of the two classes; default: balanced on this image (`balanced_class_weights`).

    Returns
    -------
    float32 array of the mask's shape

    Notes
    -----
    With fewer than two cells d1 + d2 = inf, so the border term is exp(-inf) = 0.
    """
    if labels is None:
        mask = np.asarray(mask)
        cells = mask if mask.dtype == bool else mask >= 128
        labels = label(cells, connectivity=cells.ndim)
    else:
        labels = np.asarray(labels)
        cells = labels > 0
    w_background, w_cell = balanced_class_weights(cells) if class_weights is None else class_weights
    w = np.where(cells, w_cell, w_background)
    d1, d2 = _nearest_two(labels, spacing)
    w = w + w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma * sigma))  # inf -> exp(-inf) = 0
    return w.astype(np.float32)


def weight_context(w0=10.0, sigma=5.0, tolerance=1e-6):
    """How far (in the units of sigma) the border term reaches: beyond
    sigma sqrt(2 ln(w0 / tolerance)) it is below `tolerance` (29 px for w0 = 10, sigma = 5).

    A block's weight map computed with this much context around it equals the whole
    image's to `tolerance`: every pixel whose border term exceeds it has both its nearest
    cells within that distance."""
    if w0 <= tolerance:
        return 0
    return math.ceil(sigma * math.sqrt(2.0 * math.log(w0 / tolerance)))
