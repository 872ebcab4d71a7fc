"""How the d1/d2 kernel (ext/_d1d2.pyx) is called: memory layout, the exact integer path,
threads. It computes what `unet_ref.reference` computes per cell, in one pass (tests:
tests/test_weights.py, bit for bit against the reference; unet_ref.weights calls it).

The kernel only sees a C-contiguous (N0, N1, N2) label image with labels >= 0 (a 2-D image
as (H, 1, W)) and writes float32 outputs of the same layout.
"""
import numpy as np

from unet_ref import _d1d2
from unet_ref.checks import check_int, check_spacing
from unet_ref.devices import available_cores

__all__ = ["nearest_two", "empty_output"]


def _kernel_spacing(spacing, shape):
    """The spacing as the kernel takes it: int64 where every squared distance is an exact
    integer the envelope arithmetic can carry, float64 (scipy's expression) otherwise.

    Exact while the largest f = g + (s q)^2 of an envelope, below sum_k (s_k n_k)^2, stays
    under 2^53 (so that float64 holds it exactly, as scipy's does) and its products with
    position gaps under 2^62 (int64)."""
    if all(v.is_integer() for v in spacing):
        ints = [int(v) for v in spacing]
        f_max = sum((v * n) ** 2 for v, n in zip(ints, shape))
        if f_max < 2**53 and f_max * max(shape) < 2**62:
            return np.array(ints, np.int64)
    return np.array(spacing, np.float64)


def nearest_two(labels, d1=None, d2=None, w=None, spacing=None, wc=(1.0, 1.0), w0=0.0, sigma=1.0,
            border_all=True, num_threads=None, start=None):
    """Run the kernel on contiguous memory, filling the outputs (in the input's layout, of
    the labels' ndim) on the window of their shape at `start` of `labels`. Returns the
    number of positions the envelopes scanned (the linear bound of ext/_d1d2.pyx, tested)."""
    threads = available_cores() if num_threads is None else check_int(num_threads, "num_threads", minimum=1)
    ndim = labels.ndim
    spacing = check_spacing(None, ndim) if spacing is None else spacing
    start = (0,) * ndim if start is None else tuple(start)
    outs = [d1, d2, w]
    if _runs_transposed(labels, spacing):
        labels, outs = labels.T, [None if a is None else a.T for a in outs]
        spacing, start = spacing[::-1], start[::-1]
    labels = np.ascontiguousarray(labels)
    if ndim == 2:  # (H, W) -> (H, 1, W): the pass along the middle axis is skipped
        labels = labels[:, None, :]
        outs = [None if a is None else a[:, None, :] for a in outs]
        spacing, start = (spacing[0], 1.0, spacing[1]), (start[0], 0, start[1])
    return _d1d2._nearest_two(labels, *outs, _kernel_spacing(spacing, labels.shape), wc[0], wc[1], w0,
                              sigma, border_all, threads, np.array(start, np.intp))


def _runs_transposed(labels, spacing):
    """Fortran order: the distances of the transpose are the transpose of the distances, so
    the kernel runs on the (C-contiguous) transpose instead of a copy. Only where the order
    of the axes cannot change the float64 sums (scipy adds axis 0's term first): in 2-D
    (a + b == b + a) and on the exact integer path."""
    return (not labels.flags.c_contiguous and labels.flags.f_contiguous
            and (labels.ndim == 2 or _kernel_spacing(spacing, labels.shape).dtype == np.int64))


def empty_output(labels, spacing, shape=None):
    """An uninitialised float32 output for `nearest_two`, in the layout it writes fastest."""
    order = "F" if _runs_transposed(labels, spacing) else "C"
    return np.empty(labels.shape if shape is None else shape, dtype=np.float32, order=order)
