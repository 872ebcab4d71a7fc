"""Fast path of the elastic deformation: what `unet_ref.augment.sample_positions` and
`unet_ref.augment.warp` compute, in compiled loops that read the positions a row at a time.

Equal to the plain functions: tests/test_fast.py (positions to 1e-9 px; cubic samples to
1e-6, nearest samples exactly).

Why it is faster. The displacement field is linear in the knot values, a tensor product of
one small weight matrix per axis (`_knot_table`), so contracting the knots with the weights
of every axis but the last gives a small table from which the sampling loops compute the
positions of one row at a time (`PositionField`) instead of reading an array of positions
the size of the window (for a 3-D training sample's label region, megabytes written and
read once per sample). The cubic spline's prefilter runs once per image
(`spline_coefficients`) instead of once per tile, and the loops of ext/_warp.pyx are
specialised to order 3 and the mirror extension, with the 64 (16) taps summed two at a
time (ext/_taps.h). The GIL is released, so tf.data's parallel calls run on every core.
"""
import dataclasses
import functools
import math

import numpy as np
from scipy import ndimage

from unet_ref import _warp
from unet_ref.augment import check_window, dihedral
from unet_ref.images import SCIPY_MIRROR_MODE

__all__ = ["position_field", "PositionField", "spline_coefficients", "warp"]


@functools.lru_cache(maxsize=32)
def _knot_table(length, grid):
    """(length, grid) read-only: the cubic-spline weight of each knot at the integer
    positions 0 .. length - 1 of an image axis (knot i sits at i (L - 1) / (g - 1)).

    The field is linear in the knot values, so the spline of each unit vector gives the
    tensor-product spline as a product of small matrices, one per axis. Cached: every
    tile of an image reads the same table."""
    knot_coords = np.arange(length) * ((grid - 1) / max(length - 1, 1))
    table = np.stack([ndimage.map_coordinates(e, knot_coords[None], order=3, mode=SCIPY_MIRROR_MODE)
                      for e in np.eye(grid)], 1)
    table.flags.writeable = False
    return table


def _knot_weights(start, count, length, grid):
    """(count, grid) knot weights at the integer positions start .. start + count - 1.

    The mirrored spline is symmetric about the first and last pixel (knots 0 and g - 1),
    so a position outside the image reads the weights of its mirror image."""
    index = np.abs(np.arange(start, start + count)) % max(2 * (length - 1), 1)
    return _knot_table(length, grid)[np.where(index >= length, 2 * (length - 1) - index, index)]


def _partial_field(transform, top_left, size):
    """The displacement field of a window, contracted along every axis but the last:
    (partial (ndim, *size[:-1], grid), weights of the last axis (size[-1], grid)), so that
    field[k, ..., j] = partial[k, ...] . weights[j]."""
    top_left, size = check_window(transform, top_left, size)
    grid = transform.displacement.shape[1]
    weights = [_knot_weights(start, n, length, grid)  # (n, grid) per axis
               for start, n, length in zip(top_left, size, transform.image_shape)]
    partial = []
    for knots in transform.displacement:  # (grid,) * ndim: one component
        for b in weights[:-1]:  # contract the first knot axis with its weights; its pixel axis goes last
            knots = np.tensordot(knots, b, axes=([0], [1]))
        partial.append(np.moveaxis(knots, 0, -1))  # (*size[:-1], grid)
    return np.stack(partial), weights[-1]


def spline_coefficients(image, ndim=2):
    """Cubic B-spline coefficients of `image` (*S[, C]) float along its first `ndim` axes.

    `warp(..., prefiltered=True)` takes these instead of the image, so the prefilter runs
    once per image instead of once per tile."""
    image = np.asarray(image, dtype=np.float64)
    for axis in range(ndim):
        image = ndimage.spline_filter1d(image, order=3, axis=axis, mode=SCIPY_MIRROR_MODE)
    return image


@dataclasses.dataclass(frozen=True)
class PositionField:
    """The sample positions of a window, in the form the sampling loops of ext/_warp.pyx
    compute them from, a row at a time: positions[a, k, i, j] = base[a] + (k, i, j)[a] +
    partial[a, k, i] . weights[:, j], (k, i, j) counted from `start` in the field.

    Why: written out, the positions of a 3-D training sample's label region (70 x 78 x 78
    voxels, 3 float64 each) are 10 MB, written and read once per sample; a row of them fits
    in the first-level cache. `position_field` makes one; `window` selects a sub-window
    without computing anything; np.asarray(field) writes the positions out
    (`sample_positions`), and `warp(positions=...)` takes either form.
    """

    partial: np.ndarray  # (ndim, D, H, grid) float64, C order; D = 1 for an image
    weights: np.ndarray  # (grid, W) float64, C order: the last axis's knot weights
    base: np.ndarray  # (ndim,) float64: top_left + shift
    start: tuple  # (3,): the window's first pixel in the field, as (z, y, x)
    size: tuple  # the window's size, one per axis (ndim)

    @property
    def ndim(self):
        return len(self.size)

    def window(self, slices):
        """The sub-window `slices` (one slice with step 1 per axis, within the window)."""
        if len(slices) != self.ndim or not all(isinstance(s, slice) for s in slices):
            raise ValueError(f"slices must be {self.ndim} slices, one per axis, got {slices!r}")
        starts, sizes = [], []
        for s, n in zip(slices, self.size):
            begin, end, step = s.indices(n)
            if step != 1 or end < begin:
                raise ValueError(f"slices must be increasing with step 1 within the size {self.size}, got {slices!r}")
            starts.append(begin)
            sizes.append(end - begin)
        offsets = (0,) * (3 - self.ndim) + tuple(starts)
        return dataclasses.replace(self, start=tuple(a + b for a, b in zip(self.start, offsets)), size=tuple(sizes))

    def kernel_args(self):
        """What the sampling loops take (ext/_warp.pyx, `_rows`)."""
        return self.partial, self.weights, self.base, self.start

    def __array__(self, dtype=None, copy=None):
        positions = np.empty((self.ndim, *_volume_shape(self.size)))
        _warp.field_positions(*self.kernel_args(), positions)
        return positions.reshape(self.ndim, *self.size).astype(dtype or np.float64, copy=False)


def position_field(transform, top_left=None, size=None, elastic=True):
    """The sample positions of a window as a `PositionField`: what `sample_positions`
    returns, not yet written out."""
    top_left, size = check_window(transform, top_left, size)
    partial, last = _partial_field(transform, top_left, size)
    partial = partial.reshape(len(size), *_volume_shape(size)[:-1], partial.shape[-1])  # (ndim, D, H, grid)
    partial = np.ascontiguousarray(partial) if elastic else np.zeros_like(partial, order="C")
    return PositionField(partial, np.ascontiguousarray(last.T), np.add(top_left, transform.shift, dtype=np.float64),
                         (0, 0, 0), tuple(size))


def _volume_shape(shape):
    """(D, H, W) of a spatial shape: ext/_warp.pyx sees an image as a volume of one plane (D = 1)."""
    return (1,) * (3 - len(shape)) + tuple(shape)


def warp(array, transform, *, order, top_left=None, size=None, prefiltered=False, elastic=True,
         positions=None):
    """`unet_ref.augment.warp(array, transform, order=..., ...)` for orders 0 and 3, with two
    more ways in: `prefiltered=True` takes `spline_coefficients` of the image (computed once
    per image instead of once per tile), and `positions` may be a `PositionField` (computed
    a row at a time by the loops) or its positions written out."""
    array = np.asarray(array)
    ndim = transform.ndim
    spatial = tuple(transform.image_shape)
    if ndim not in (2, 3):
        raise ValueError(f"transform must be of an image or a volume (2 or 3 axes), got image_shape {spatial}")
    if array.ndim not in (ndim, ndim + 1) or tuple(array.shape[:ndim]) != spatial:
        axes = "(H, W) or (H, W, C)" if ndim == 2 else f"{ndim} spatial axes and optional channels"
        raise ValueError(f"array must be {axes} with spatial shape {spatial}, got shape {array.shape}")
    if array.dtype == bool:  # a mask: looked up as the same bytes (order 0), else a 0/1 image
        if order != 0:
            return warp(array.astype(np.float32), transform, order=order, top_left=top_left, size=size,
                        elastic=elastic, positions=positions)
        return warp(array.view(np.uint8), transform, order=0, top_left=top_left, size=size,
                    elastic=elastic, positions=positions).view(bool)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"array must be real (an integer, bool or float dtype), got dtype {array.dtype}")
    coords = position_field(transform, top_left, size, elastic) if positions is None else positions
    if isinstance(coords, PositionField):
        if coords.ndim != ndim:
            raise ValueError(f"positions must be of a {ndim}-D window, got a field of size {coords.size}")
        size, rows = coords.size, coords.kernel_args()  # the loops compute them a row at a time
    else:
        coords = np.asarray(coords, dtype=np.float64)
        if coords.ndim != ndim + 1 or coords.shape[0] != ndim:
            raise ValueError(f"positions must be a finite ({ndim}, *size) array, got shape {coords.shape}")
        size = coords.shape[1:]
        rows = coords.reshape(ndim, *_volume_shape(size))  # an image is a volume of one plane to the loops
    channels = array.shape[ndim:]  # () or (C,)
    if order == 0:  # nearest neighbour: ids copied, never mixed
        if array.dtype.kind not in "iu" and array.dtype not in (np.float32, np.float64):
            raise TypeError(f"array must be of an integer, bool, float32 or float64 dtype for order 0, got {array.dtype}")
        source = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
        loop, dtype = _warp.nearest_sample, source.dtype
    elif order == 3:  # what map_coordinates(order=3, mode="mirror", prefilter=False) computes
        source = np.ascontiguousarray(array if prefiltered else spline_coefficients(array, ndim), dtype=np.float64)
        loop, dtype = _warp.cubic_sample, np.float32
    else:
        raise ValueError(f"order must be 0 or 3 on the fast path (unet_ref.augment.warp takes any), got {order!r}")
    source = source.reshape(*_volume_shape(spatial), math.prod(channels))  # (D, H, W, C)
    out = np.empty((*size, source.shape[-1]), dtype)
    if not loop(source, rows, out.reshape(*_volume_shape(size), out.shape[-1])):
        raise ValueError(f"positions must be a finite ({ndim}, *size) array: found NaN or infinity")
    out = out if channels else out[..., 0]
    return np.ascontiguousarray(dihedral(out, transform.rot90, transform.flip, axes=(ndim - 2, ndim - 1)))


