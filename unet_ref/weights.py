"""The U-Net weight map, eq. (2) of Ronneberger et al. (2015), in one exact pass.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

w_c balances the class frequencies; the second term makes the network learn the thin
membrane between touching cells. d1 is the distance to the nearest cell, d2 to the
second-nearest. The original notebook (and unet_ref.reference, the oracle) runs one
Euclidean distance transform per cell; here the Cython kernel ext/_d1d2.pyx finds the two
nearest distinct cells of every pixel in one separable pass, exactly: d1 and d2 are
bit-identical in float32 to the per-cell reference. The algorithm and the proof that it is
exact are at the top of ext/_d1d2.pyx and in `d1_d2`'s Notes.

This module does the validation, dtype and memory-layout handling; the kernel only sees a
C-contiguous (H, W) label image with labels >= 0.
"""
import numbers
import os

import numpy as np

from unet_ref import _d1d2
from unet_ref.masks import cells_from_mask, check_labels, label_cells

__all__ = ["d1_d2", "weight_map", "balanced_class_weights"]

# the kernel's envelope test multiplies squared distances (< 2^41) by column gaps (< 2^20)
MAX_SIDE = 2**20


def _as_labels(labels, name="labels"):
    """Check an instance label image and return it as a native-endian integer array."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"{name} is empty (shape {labels.shape}); expected H, W >= 1")
    if max(labels.shape) > MAX_SIDE:
        raise ValueError(f"{name} has shape {labels.shape}; the kernel's exact int64 arithmetic "
                         f"supports sides up to {MAX_SIDE} px")
    return check_labels(labels, name)


def _kernel(labels, d1=None, d2=None, w=None, wc=(1.0, 1.0), w0=0.0, sigma=1.0,
            border_all=True, num_threads=None, top_left=(0, 0)):
    """Run the kernel on contiguous memory, filling the outputs (in the input's layout)
    on the window of their shape at `top_left` of `labels`. Returns the number of positions
    the row pass's envelopes scanned (the linear bound of ext/_d1d2.pyx, tested)."""
    if num_threads is None:
        threads = _available_cores()
    elif isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral) or num_threads < 1:
        raise ValueError(f"num_threads must be None or an integer >= 1, got {num_threads!r}")
    else:
        threads = int(num_threads)
    if not labels.flags.c_contiguous and labels.flags.f_contiguous:
        # Fortran order: the distances of the transpose are the transpose of the distances,
        # so run on the (C-contiguous) transpose instead of copying
        outs = [None if a is None else a.T for a in (d1, d2, w)]
        return _d1d2._nearest_two(labels.T, *outs, wc[0], wc[1], w0, sigma, border_all, threads,
                                  top_left[1], top_left[0])
    return _d1d2._nearest_two(np.ascontiguousarray(labels), d1, d2, w, wc[0], wc[1], w0, sigma,
                              border_all, threads, top_left[0], top_left[1])


def _available_cores():
    # the cores this process may run on (a container or taskset may allow fewer than exist)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _empty_like(labels, shape=None):
    order = "F" if (labels.flags.f_contiguous and not labels.flags.c_contiguous) else "C"
    return np.empty(labels.shape if shape is None else shape, dtype=np.float32, order=order)


def _window(window, shape):
    """(top, left), (height, width) of a window given as two step-1 slices."""
    if window is None:
        return (0, 0), shape
    try:
        rows, cols = window
    except (TypeError, ValueError):
        rows = cols = None
    if not (isinstance(rows, slice) and isinstance(cols, slice)):
        raise ValueError(f"window must be a pair of slices such as np.s_[29:129, 29:129], got {window!r}")
    bounds = [s.indices(n) for s, n in zip((rows, cols), shape)]
    if any(step != 1 or stop <= start for start, stop, step in bounds):
        raise ValueError(f"window must select a non-empty step-1 block of the {shape} labels, got {window!r}")
    return (bounds[0][0], bounds[1][0]), (bounds[0][1] - bounds[0][0], bounds[1][1] - bounds[1][0])


def d1_d2(labels, *, num_threads=None):
    """Distances of every pixel to the nearest and the second-nearest object.

    Parameters
    ----------
    labels : (H, W) array of int or bool
        Instance labels: 0 is background, every other value is one object; ids need not be
        contiguous. Any integer dtype, C or Fortran order or a strided view; read-only
        arrays (`np.load(..., mmap_mode="r")`, `tifffile.memmap`, `np.frombuffer`) are read
        in place. Negative values raise ValueError, float arrays raise TypeError.
    num_threads : int or None, default None
        OpenMP threads for the kernel; None uses every core the process may run on. Pass
        1 where the caller is parallel already (the training pipeline computes one weight
        map per sample in parallel workers) or on a busy machine, where extra threads
        wait for cores (see benchmarks/).

    Returns
    -------
    d1, d2 : (H, W) float32
        d1 = Euclidean distance to the nearest object pixel (0 inside an object); d2 =
        distance to the nearest pixel of a different object. `inf` where the image holds
        fewer than one / two objects.

    Notes
    -----
    Bit-identical to the per-object definition (`unet_ref.reference.d1_d2`: one
    `scipy.ndimage.distance_transform_edt(labels != k)` per object k, sorted along k), in
    one separable pass. A column pass keeps, per pixel, the two nearest *distinct* labels
    in its column with their squared distances, (l1, g1) and (l2, g2). A row pass takes
    d1^2(x) = min_x' (x - x')^2 + g1(x') with a lower envelope of parabolas, which also
    gives the nearest label L1. Two labels per column are enough: d2 is the distance to the
    nearest pixel whose label is not L1, and in column x' that pixel is (l1, g1) if
    l1(x') != L1 and (l2, g2) otherwise, since l2 is the nearest label != l1 in that column.
    So d2^2(x) = min_x' (x - x')^2 + (g1(x') if l1(x') != L1 else g2(x')); if two objects
    tie for the nearest, d2 = d1 whichever is called L1. Squared distances are integers,
    computed exactly in int64; the output is float32(sqrt(float64)), as the reference's.

    Examples
    --------
    >>> d1, d2 = d1_d2(np.array([[1, 0, 0, 2]]))
    >>> d1
    array([[0., 1., 1., 0.]], dtype=float32)
    >>> d2
    array([[3., 2., 2., 3.]], dtype=float32)
    """
    labels = _as_labels(labels)
    d1, d2 = _empty_like(labels), _empty_like(labels)
    _kernel(labels, d1=d1, d2=d2, num_threads=num_threads)
    return d1, d2


def balanced_class_weights(cells):
    """w_c = 1 / class frequency, scaled so that the rarer class weighs 1.

    Parameters
    ----------
    cells : (H, W) bool
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
               border="all", connectivity=2, window=None, threshold=None, num_threads=None):
    """The U-Net weight map w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2)).

    Parameters
    ----------
    mask : (H, W) bool or int, optional
        Binary segmentation: bool, or integers 0 (membrane) and one value > 0 (cell), e.g.
        the notebook's uint8 {0, 255} (`unet_ref.masks.cells_from_mask`: other values
        raise ValueError unless `threshold` is given). Cells are its connected components.
    w0, sigma : float
        Border weight and its width in pixels (paper: 10 and 5).
    labels : (H, W) int, optional
        Instance labels instead of `mask` (0 = membrane/background, ids > 0 = cells; see
        `d1_d2`); no labelling is done, so touching cells stay separate.
    class_weights : "balanced", None or (w_background, w_foreground)
        "balanced": `balanced_class_weights` (the notebook); None: 1 for both classes.
    border : "all" or "background"
        Add the border term to every pixel (the notebook) or only to background/membrane
        pixels (several MATLAB versions of the paper's code).
    connectivity : 1 or 2
        Cells from `mask` are 4- (1) or 8-connected (2, the notebook's skimage default).
    threshold : float, optional
        Read a mask that is not binary as cell = mask >= threshold (e.g. 128 for a
        JPEG-saved 0/255 mask).
    window : pair of slices, optional
        Return only this block, e.g. np.s_[29:129, 29:129], computed with the whole image
        as context: equal to weight_map(...)[window], cheaper (the kernel's row pass skips
        the rows outside). The training pipeline weighs an output crop this way.
    num_threads : int or None, default None
        OpenMP threads for the kernel; None uses every core the process may run on. Pass
        1 where the caller is parallel already (the training pipeline computes one weight
        map per sample in parallel workers) or on a busy machine, where extra threads
        wait for cores (see benchmarks/).

    Returns
    -------
    (H, W) float32, or the window's shape

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
    if not (np.isfinite(w0) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"w0 must be finite and sigma > 0, got w0={w0}, sigma={sigma}")
    if border not in ("all", "background"):
        raise ValueError(f"border must be 'all' or 'background', got {border!r}")
    if labels is None:
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"mask must be a 2-D (H, W) array, got shape {mask.shape}")
        cells = cells_from_mask(mask, threshold=threshold)
        labels = label_cells(cells, connectivity)
    else:
        labels = _as_labels(labels)
        cells = labels != 0
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
    top_left, shape = _window(window, labels.shape)
    w = _empty_like(labels, shape)
    _kernel(labels, w=w, wc=(float(wc[0]), float(wc[1])), w0=float(w0), sigma=float(sigma),
            border_all=border == "all", num_threads=num_threads, top_left=top_left)
    return w
