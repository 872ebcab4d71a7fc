"""The per-cell weight map of the original notebook, rewritten readably: the oracle.

Ronneberger et al. (2015), eq. (2):

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1 is the distance to the nearest cell and d2 the distance to the second-nearest cell. The
notebook (`unet_wmap`) computes them the obvious way: one Euclidean distance transform per
cell, stacked into an (H, W, n_cells) float64 array and sorted along the cells. That costs
n_cells distance transforms and O(H W n_cells) memory (about 2-3 s and 640 MB for a
512 x 512 ISBI label with ~130 cells), which is why `unet_ref.weights` exists. This module
keeps the obvious algorithm as the definition that the fast kernel is tested against and
the baseline it is benchmarked against, in any number of dimensions and with a pixel
spacing per axis (scipy's `sampling`). Do not use it for training.
"""
import numpy as np
from scipy.ndimage import distance_transform_edt
from skimage.measure import label

__all__ = ["d1_d2", "weight_map"]


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


def weight_map(mask, w0=10, sigma=5, spacing=None):
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

    Returns
    -------
    float32 array of the mask's shape

    Notes
    -----
    Departs from the notebook in one place: when a class has no pixels the notebook divides
    by zero; here the absent class gets no weight (it has no pixels) and the present one
    weighs 1. With fewer than two cells d1 + d2 = inf, so the border term is exp(-inf) = 0.
    """
    mask = np.asarray(mask)
    cells = mask if mask.dtype == bool else mask >= 128
    n_cell = np.count_nonzero(cells)
    n_membrane = cells.size - n_cell
    # w_c = 1 / frequency, scaled so that the rarer class weighs 1; an absent class counts
    # as infinitely rare but owns no pixels, so the present class weighs 1 (notebook: 1/0)
    inv = np.array([1.0 / n if n else 0.0 for n in (n_membrane, n_cell)])
    w_c = inv / inv.max()
    w = np.where(cells, w_c[1], w_c[0])
    d1, d2 = _nearest_two(label(cells, connectivity=cells.ndim), spacing)
    w = w + w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma * sigma))  # inf -> exp(-inf) = 0
    return w.astype(np.float32)
