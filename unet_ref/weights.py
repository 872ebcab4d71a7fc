"""The U-Net weight map, eq. (2) of Ronneberger et al. (2015), in one exact pass.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

w_c balances the class frequencies; the second term makes the network learn the thin
membrane between touching cells. d1 is the distance to the border of the nearest cell, d2
to the border of the second nearest. The original notebook (and `unet_ref.reference`, the
definition) runs one Euclidean distance transform per cell; here the Cython kernel
ext/_d1d2.pyx finds the two nearest distinct cells of every pixel (or voxel: 2-D and 3-D,
with a spacing per axis) in one separable pass, exactly: d1 and d2 are bit-identical in
float32 to the per-cell reference (within 1 float32 ulp for non-integer spacings).

This module checks the arguments and evaluates the formula's inputs; `unet_ref.fast.d1d2`
hands the labels to the kernel in the layout it takes.
"""
import numbers

import numpy as np

from unet_ref.checks import check_real, check_spacing
from unet_ref.fast.d1d2 import empty_output, nearest_two
from unet_ref.masks import cells_from_mask, check_labels, label_cells

__all__ = ["d1_d2", "weight_map", "balanced_class_weights"]

# the column pass stores distances along axis 0 as int32
MAX_SIDE = 2**20
AXES = {2: "(H, W)", 3: "(D, H, W)"}


def _as_labels(labels, name="labels"):
    """Check an instance label image and return it as a native-endian integer array."""
    labels = np.asarray(labels)
    if labels.ndim not in AXES:
        raise ValueError(f"{name} must be a 2-D (H, W) or 3-D (D, H, W) array, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"{name} is empty (shape {labels.shape}); expected every side >= 1")
    if max(labels.shape) > MAX_SIDE:
        raise ValueError(f"{name} has shape {labels.shape}; the kernel supports sides up to {MAX_SIDE}")
    return check_labels(labels, name)


def _window(window, shape):
    """Start and shape of a window given as one step-1 slice per axis."""
    ndim = len(shape)
    if window is None:
        return (0,) * ndim, shape
    try:
        parts = tuple(window)
    except TypeError:
        parts = ()
    if len(parts) != ndim or not all(isinstance(s, slice) for s in parts):
        example = "np.s_[29:129, 29:129]" if ndim == 2 else "np.s_[0:16, 29:129, 29:129]"
        raise ValueError(f"window must be a {'pair' if ndim == 2 else 'triple'} of slices, one per axis, "
                         f"such as {example}, got {window!r}")
    bounds = [s.indices(n) for s, n in zip(parts, shape)]
    if any(step != 1 or stop <= start for start, stop, step in bounds):
        raise ValueError(f"window must select a non-empty step-1 block of the {shape} labels, got {window!r}")
    return tuple(b[0] for b in bounds), tuple(b[1] - b[0] for b in bounds)


def d1_d2(labels, *, spacing=None, num_threads=None):
    """Distances of every pixel (voxel) to the nearest and the second-nearest object.

    Parameters
    ----------
    labels : (H, W) or (D, H, W) array of int or bool
        Instance labels: 0 is background, every other value is one object; ids need not be
        contiguous. Any integer dtype and memory layout; read-only arrays (memory maps) are
        read in place. Negative values raise ValueError, float arrays TypeError.
    spacing : sequence of float, or float, optional
        The size of a pixel along each axis, e.g. (3, 1, 1) for slices 3 times thicker than
        the in-plane pixel size (scipy's `sampling`); one number applies to every axis.
        Default 1. Distances are in these units.
    num_threads : int or None, default None
        OpenMP threads for the kernel; None uses every core the process may run on. Pass
        1 where the caller is parallel already (the training pipeline) or on a busy machine.

    Returns
    -------
    d1, d2 : float32 arrays of the labels' shape
        d1 = Euclidean distance to the nearest object pixel (0 inside an object); d2 =
        distance to the nearest pixel of a different object. `inf` where the image holds
        fewer than one / two objects.

    Notes
    -----
    The definition is the per-object reference (`unet_ref.reference.d1_d2`: one
    `scipy.ndimage.distance_transform_edt(labels != k, sampling=spacing)` per object k,
    sorted along k), computed in one separable pass per axis that keeps, per pixel, the
    nearest label, d1^2 and d2^2 (the algorithm and the proof that it is exact and linear:
    ext/_d1d2.pyx; written out in Python: `unet_ref.one_pass`).

    With integer spacings (the default) squared distances are integers, computed exactly
    in int64, and the output is float32(sqrt(float64)): bit-identical to the reference.
    With other spacings they are computed in float64 the way scipy computes them; scipy's
    feature transform and the kernel may then pick different features among those within
    float64 rounding of each other, so the result is within 1 float32 ulp of the reference.

    Examples
    --------
    >>> d1, d2 = d1_d2(np.array([[1, 0, 0, 2]]))
    >>> d1
    array([[0., 1., 1., 0.]], dtype=float32)
    >>> d2
    array([[3., 2., 2., 3.]], dtype=float32)
    >>> d1, d2 = d1_d2(np.array([[[1]], [[0]], [[2]]]), spacing=(2.5, 1, 1))  # (D, H, W)
    >>> d1.ravel(), d2.ravel()
    (array([0. , 2.5, 0. ], dtype=float32), array([5. , 2.5, 5. ], dtype=float32))
    """
    labels = _as_labels(labels)
    spacing = check_spacing(spacing, labels.ndim)
    d1, d2 = empty_output(labels, spacing), empty_output(labels, spacing)
    nearest_two(labels, d1=d1, d2=d2, spacing=spacing, num_threads=num_threads)
    return d1, d2


def balanced_class_weights(cells):
    """w_c = 1 / class frequency, scaled so that the rarer class weighs 1.

    Parameters
    ----------
    cells : bool array (any shape)
        True on cells (foreground), False on membrane / background.

    Returns
    -------
    (w_background, w_foreground) : tuple of float
        An absent class gets weight 0 (it has no pixels to weigh) and the present one 1;
        the notebook divides by zero there.
    """
    n_cell = int(np.count_nonzero(cells))
    counts = (cells.size - n_cell, n_cell)
    inv = [1.0 / n if n else 0.0 for n in counts]
    return inv[0] / max(inv), inv[1] / max(inv)


def weight_map(mask=None, w0=10.0, sigma=5.0, *, labels=None, class_weights="balanced",
               border="all", connectivity=None, window=None, threshold=None, spacing=None,
               num_threads=None):
    """The U-Net weight map w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2)), in 2-D or 3-D.

    Parameters
    ----------
    mask : (H, W) or (D, H, W) bool or int, optional
        Binary segmentation: bool, or integers 0 (membrane) and one value > 0 (cell), e.g.
        the notebook's uint8 {0, 255} (`unet_ref.masks.cells_from_mask`; other values
        raise ValueError unless `threshold` is given). Cells are its connected components.
    w0, sigma : float
        Border weight and width, in the units of `spacing` (pixels by default; paper: 10, 5).
    labels : (H, W) or (D, H, W) int, optional
        Instance labels instead of `mask` (0 = membrane/background, ids > 0 = cells), taken
        as they are: touching cells stay separate.
    class_weights : "balanced", None or (w_background, w_foreground)
        "balanced": `balanced_class_weights` (the notebook); None: 1 for both classes.
    border : "all" or "background"
        Add the border term to every pixel (the notebook) or only to background/membrane
        pixels (several MATLAB versions of the paper's code).
    connectivity : int or None
        Which neighbours join cells of `mask` (`unet_ref.masks.label_cells`): 1 .. ndim;
        None (default) = every neighbour, as the notebook (8 in 2-D, 26 in 3-D).
    threshold : float, optional
        Read a mask that is not binary as cell = mask >= threshold (e.g. 128 for a
        JPEG-saved 0/255 mask).
    window : tuple of slices, one per axis, optional
        Return only this block, e.g. np.s_[29:129, 29:129], computed with the whole image as
        context: weight_map(...)[window], cheaper. The fast training tile uses it.
    spacing : sequence of float, or float, optional
        Pixel (voxel) size along each axis, e.g. (3, 1, 1) for anisotropic stacks; see
        `d1_d2`. d1, d2 and sigma are in these units.
    num_threads : int or None, default None
        OpenMP threads for the kernel, as in `d1_d2`.

    Returns
    -------
    float32 array of the mask's (labels') shape, or the window's shape

    Notes
    -----
    With fewer than two cells d2 = inf, so exp(-(d1 + d2)^2 ...) = 0: no border term. The
    formula is evaluated in float64 and rounded once, like the reference.

    Examples
    --------
    >>> mask = np.array([[255, 0, 0, 255]], dtype=np.uint8)
    >>> weight_map(mask, w0=10, sigma=5).round(3)
    array([[9.353, 9.353, 9.353, 9.353]], dtype=float32)
    """
    if (mask is None) == (labels is None):
        raise ValueError("pass exactly one of mask= (binary) or labels= (instance labels)")
    w0, sigma = check_real(w0, "w0", minimum=0), check_real(sigma, "sigma", above=0)
    if border not in ("all", "background"):
        raise ValueError(f"border must be 'all' or 'background', got {border!r}")
    if labels is None:
        mask = np.asarray(mask)
        if mask.ndim not in AXES:
            raise ValueError(f"mask must be a 2-D (H, W) or 3-D (D, H, W) array, got shape {mask.shape}")
        if max(mask.shape) > MAX_SIDE:
            raise ValueError(f"mask has shape {mask.shape}; the kernel supports sides up to {MAX_SIDE}")
        cells = cells_from_mask(mask, threshold=threshold)
        labels = label_cells(cells, connectivity)
    else:
        labels = _as_labels(labels)
        cells = labels != 0
    spacing = check_spacing(spacing, labels.ndim)
    if isinstance(class_weights, str) and class_weights == "balanced":
        wc = balanced_class_weights(cells)
    elif class_weights is None:
        wc = (1.0, 1.0)
    else:
        wc = tuple(class_weights) if np.ndim(class_weights) == 1 else ()
        if len(wc) != 2 or not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in wc):
            raise ValueError(
                f"class_weights must be 'balanced', None or a (w_background, w_foreground) "
                f"pair of finite numbers, got {class_weights!r}"
            )
    start, shape = _window(window, labels.shape)
    w = empty_output(labels, spacing, shape)
    nearest_two(labels, w=w, spacing=spacing, wc=(float(wc[0]), float(wc[1])), w0=float(w0), sigma=float(sigma),
                border_all=border == "all", num_threads=num_threads, start=start)
    return w

