"""The paper's data augmentation: smooth elastic deformations, flips, rotations, gray values.

Ronneberger et al. (2015), section 3.1: "we generate smooth deformations using random
displacement vectors on a coarse 3 by 3 grid. The displacements are sampled from a
Gaussian distribution with 10 pixels standard deviation. Per-pixel displacements are
then computed using bicubic interpolation." Here the 3 x 3 knots span the whole image
(as in the paper, whose training tile covered about one 512 x 512 ISBI slice) and the
per-pixel field is their cubic spline interpolant.

One geometric transform, evaluated only where it is needed: a window of the image (the
training tile's input, or the label region around its output crop) is sampled at
p + D(p), with D the displacement field at image position p and a small random shift,
by one pass of a sampling loop per array (ext/_warp.pyx: the cubic spline computed as
scipy.ndimage.map_coordinates(order=3, mode="mirror") computes it, and a nearest-sample
look-up); then the tile is flipped and rotated by multiples of 90 degrees (a lossless
pixel permutation). The image is sampled
with cubic splines (order 3), the instance labels with the nearest neighbour (order 0),
so label ids are never interpolated -- the notebook interpolated its masks and then
computed weight maps on the blurred result.

Missing context at the image border is mirrored about the edge pixel, which is not
repeated (... x2 x1 | x0 x1 x2 ...), so a border membrane keeps its width: the extension
of `unet_ref.images` (scipy's "mirror", numpy's "reflect"), the one the overlap-tile
predictor uses, so training and prediction see the same context.

Axes. Everything works on a tuple of spatial axes: (H, W) images, and (D, H, W) volumes
with a 3 x 3 x 3 grid of knots (the 3-D U-Net's augmentation). Flips and 90-degree
rotations act in the plane of the last two axes (`dihedral`), so the slice axis of an
anisotropic stack is never turned into an in-plane axis; the overlap-tile predictor's
test-time augmentation uses the same `dihedral`. The sampling loops of ext/_warp.pyx
see an image as a volume of one plane, so one loop serves both.
"""
import dataclasses
import functools
import math
import operator

import numpy as np
from scipy import ndimage

from unet_ref import _warp
from unet_ref.images import SCIPY_MIRROR_MODE, normalize_image
from unet_ref.checks import check_spacing

__all__ = ["Transform", "random_transform", "displacement_field", "sample_positions", "position_field",
           "PositionField", "warp", "vary_gray_values",
           "augment", "spline_coefficients", "dihedral", "dihedral_inverse", "DIHEDRAL"]

# The 8 symmetries of the square as (rot90, flip): rotate k x 90 degrees, then flip.
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral(array, rot90=0, flip=False, axes=(0, 1)):
    """Rotate `array` by rot90 x 90 degrees in the plane of `axes` (counter-clockwise for
    (0, 1), as np.rot90), then flip it along axes[1]: one of the 8 `DIHEDRAL` symmetries.
    A view (no copy); lossless, a permutation of the pixels."""
    out = np.rot90(array, rot90, axes=axes)
    return np.flip(out, axes[1]) if flip else out


def dihedral_inverse(array, rot90=0, flip=False, axes=(0, 1)):
    """Undo `dihedral(array, rot90, flip, axes)`."""
    out = np.flip(array, axes[1]) if flip else array
    return np.rot90(out, -rot90, axes=axes)


@dataclasses.dataclass(frozen=True)
class Transform:
    """A random geometric transform of one image (all lengths in px).

    displacement : (ndim, grid, ..., grid) float -- the displacement along each axis at
        knots spanning the image, e.g. (2, 3, 3) = (dy, dx) on a 3 x 3 grid
    image_shape : the spatial shape the knots span, (H, W) or (D, H, W)
    shift : one shift per axis, added to every sample position
    rot90 : number of counter-clockwise 90-degree turns of the tile (0-3), in the plane of
        the last two axes
    flip : flip the tile along its last axis (after the rotation)
    """
    displacement: np.ndarray
    image_shape: tuple
    shift: tuple = (0.0, 0.0)
    rot90: int = 0
    flip: bool = False

    @property
    def ndim(self):
        return len(self.image_shape)


def random_transform(image_shape, rng, *, sigma=10.0, grid=3, max_shift=8.0, flips=True, spacing=None):
    """Draw a `Transform`: elastic (paper: 3 x 3 grid, sigma 10 px), shift, flip/rotation.

    Parameters
    ----------
    image_shape : tuple of int
        The spatial shape, (H, W) or (D, H, W) (no channel axis).
    rng : numpy.random.Generator
        The only source of randomness.
    sigma : float
        Standard deviation of the knot displacements in px (0 turns the deformation off).
    grid : int
        Knots per axis (>= 2).
    max_shift : float
        Shift drawn uniformly from [-max_shift, max_shift] px per axis.
    flips : bool
        Draw one of the 8 flips/90-degree rotations of the last two axes (else the identity).
    spacing : float or sequence of float, optional
        Pixel (voxel) size per axis, e.g. (5, 1, 1) for sections 5 times thicker than a
        pixel. The deformation is then isotropic in space: `sigma` and `max_shift` are px
        along the finest axis, and along an axis of spacing s they become
        sigma * min(spacing) / s px (2 sections instead of 10 for (5, 1, 1)). Default: the
        same number of px on every axis. Only ratios matter, so nm or px give the same draw.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if len(image_shape) not in (2, 3) or min(image_shape) < 1:
        raise ValueError(f"image_shape must be the spatial shape, (H, W) or (D, H, W), with sides >= 1, "
                         f"got {image_shape!r}")
    if not (np.isfinite(sigma) and sigma >= 0 and np.isfinite(max_shift) and max_shift >= 0):
        raise ValueError(f"sigma and max_shift must be finite and >= 0, got {sigma}, {max_shift}")
    if int(grid) != grid or grid < 2:
        raise ValueError(f"grid must be an int >= 2, got {grid!r}")
    ndim = len(image_shape)
    spacing = np.asarray(check_spacing(spacing, ndim))
    scale = spacing.min() / spacing  # px per px of the finest axis: 1 everywhere without spacing
    displacement = rng.normal(0.0, sigma, size=(ndim,) + (int(grid),) * ndim) * scale.reshape((ndim,) + (1,) * ndim)
    shift = tuple(float(v) for v in rng.uniform(-max_shift, max_shift, size=ndim) * scale)
    rot90, flip = (int(rng.integers(4)), bool(rng.integers(2))) if flips else (0, False)
    return Transform(displacement, tuple(int(s) for s in image_shape), shift, rot90, flip)


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


def _window(transform, top_left, size):
    """(top_left, size) as int tuples, one per axis (defaults: the origin, the image)."""
    ndim = transform.ndim
    size = transform.image_shape if size is None else tuple(size)
    top_left = (0,) * ndim if top_left is None else top_left
    try:
        top_left = tuple(operator.index(v) for v in top_left)
    except TypeError:
        count = {2: "two", 3: "three"}.get(ndim, str(ndim))
        raise TypeError(f"top_left must be {count} integers (a pixel position), got {top_left!r}") from None
    if len(top_left) != ndim or len(size) != ndim:
        raise ValueError(f"top_left and size must have one entry per axis ({ndim}), got {top_left!r} and {size!r}")
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in size):
        raise ValueError(f"size must be {ndim} integers >= 0, got {size!r}")
    return top_left, tuple(int(n) for n in size)


def _partial_field(transform, top_left, size):
    """The displacement field of a window, contracted along every axis but the last:
    (partial (ndim, *size[:-1], grid), weights of the last axis (size[-1], grid)), so that
    field[k, ..., j] = partial[k, ...] . weights[j] (the field is linear in the knots, a
    tensor product of one small weight matrix per axis)."""
    top_left, size = _window(transform, top_left, size)
    grid = transform.displacement.shape[1]
    weights = [_knot_weights(start, n, length, grid)  # (n, grid) per axis
               for start, n, length in zip(top_left, size, transform.image_shape)]
    partial = []
    for knots in transform.displacement:  # (grid,) * ndim: one component
        for b in weights[:-1]:  # contract the first knot axis with its weights; its pixel axis goes last
            knots = np.tensordot(knots, b, axes=([0], [1]))
        partial.append(np.moveaxis(knots, 0, -1))  # (*size[:-1], grid)
    return np.stack(partial), weights[-1]


def displacement_field(transform, top_left=None, size=None):
    """Per-pixel displacement (ndim, *size) float64 on the window at `top_left` of `size`.

    `size` defaults to the image shape. The window may extend past the image: the field
    continues smoothly (mirrored spline).
    """
    partial, last = _partial_field(transform, top_left, size)
    return partial @ last.T  # (ndim, *size)


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
    top_left, size = _window(transform, top_left, size)
    partial, last = _partial_field(transform, top_left, size)
    partial = partial.reshape(len(size), *_volume_shape(size)[:-1], partial.shape[-1])  # (ndim, D, H, grid)
    partial = np.ascontiguousarray(partial) if elastic else np.zeros_like(partial, order="C")
    return PositionField(partial, np.ascontiguousarray(last.T), np.add(top_left, transform.shift, dtype=np.float64),
                         (0, 0, 0), tuple(size))


def sample_positions(transform, top_left=None, size=None, elastic=True):
    """Image positions (ndim, *size) float64 that the window's pixels are read from:
    top_left + index + shift (+ the displacement field if `elastic`), before flips and
    rotations.

    Compute once and pass to `warp(positions=...)` to warp several arrays alike
    (`position_field` gives the same positions without writing them out)."""
    return np.asarray(position_field(transform, top_left, size, elastic))


def _volume_shape(shape):
    """(D, H, W) of a spatial shape: ext/_warp.pyx sees an image as a volume of one plane (D = 1)."""
    return (1,) * (3 - len(shape)) + tuple(shape)


def warp(array, transform, *, order, top_left=None, size=None, prefiltered=False, elastic=True,
         positions=None):
    """Sample `array` (*S) or (*S, C) on a window through `transform`.

    Parameters
    ----------
    array : (*S) or (*S, C) array, S = transform.image_shape, e.g. (H, W) or (H, W, C)
        The image (order 3; float) or instance labels (order 0; any integer dtype).
    transform : Transform
    order : int
        Interpolation order: 3 for images, 0 for labels (ids are never mixed).
    top_left, size : tuple of int, one per axis
        Window in image coordinates (may extend past the image: mirrored context);
        default the whole image.
    prefiltered : bool
        `array` holds `spline_coefficients` of the image (order 3 only).
    elastic : bool
        Apply the displacement field (False: only shift, flip and rotation).
    positions : (ndim, *size) array or PositionField, optional
        `sample_positions(transform, top_left, size, elastic)` or `position_field(...)`,
        computed once for several arrays; replaces top_left, size and elastic.

    Returns
    -------
    (*size[, C]) array, float32 for order > 0, `array.dtype` for order 0; the output pixel
    p before flipping/rotating comes from image position top_left + p + shift + D.
    """
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
    if order in (0, 3):
        if order == 0:  # nearest neighbour: ids copied, never mixed
            if array.dtype.kind not in "iu" and array.dtype not in (np.float32, np.float64):
                raise TypeError(f"array must be of an integer, bool, float32 or float64 dtype for order 0, "
                                f"got {array.dtype}")
            source = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
            loop, dtype = _warp.nearest_sample, source.dtype
        else:  # what map_coordinates(order=3, mode="mirror", prefilter=False) computes, 3-4 x faster
            source = array if prefiltered else spline_coefficients(array, ndim)
            loop, dtype = _warp.cubic_sample, np.float32
            source = np.ascontiguousarray(source, dtype=np.float64)
        source = source.reshape(*_volume_shape(spatial), math.prod(channels))  # (D, H, W, C)
        out = np.empty((*size, source.shape[-1]), dtype)
        if not loop(source, rows, out.reshape(*_volume_shape(size), out.shape[-1])):
            raise ValueError(f"positions must be a finite ({ndim}, *size) array: found NaN or infinity")
        out = out if channels else out[..., 0]
    else:  # another spline order (a figure's bilinear grid): scipy's generic loop
        coords = np.asarray(coords)
        if not np.isfinite(coords).all():
            raise ValueError(f"positions must be a finite ({ndim}, *size) array: found NaN or infinity")
        planes = [array] if not channels else [array[..., c] for c in range(channels[0])]
        out = [ndimage.map_coordinates(a, coords, output=np.float32, order=order, mode=SCIPY_MIRROR_MODE,
                                       prefilter=not prefiltered) for a in planes]
        out = (np.stack(out, axis=-1) if out else np.empty((*size, 0), np.float32)) if channels else out[0]
    return np.ascontiguousarray(dihedral(out, transform.rot90, transform.flip, axes=(ndim - 2, ndim - 1)))


def vary_gray_values(image, rng, *, gamma=0.25, contrast=0.15, brightness=0.08):
    """Random gamma, contrast and brightness of a float image in [0, 1] (image only).

    The paper names gray-value variations without details; these ranges keep EM images
    plausible: gamma = exp(U(-gamma, gamma)), contrast around the tile mean
    x U(1 - contrast, 1 + contrast), brightness + U(-brightness, brightness), clipped to [0, 1].
    """
    # float32 throughout (Python-float factors keep the array's dtype): half the memory
    # traffic of float64 on a per-tile step
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) ** math.exp(rng.uniform(-gamma, gamma))
    mean = float(image.mean())
    scale, offset = rng.uniform(1 - contrast, 1 + contrast), rng.uniform(-brightness, brightness)
    image *= scale
    image += (1 - scale) * mean + offset  # (x - mean) scale + mean + offset
    return np.clip(image, 0.0, 1.0, out=image)


def augment(image, labels, rng, *, sigma=10.0, grid=3, max_shift=8.0, flips=True, gray_values=True, spacing=None):
    """Whole-image augmentation: the same random transform on `image` and `labels`.

    Parameters
    ----------
    image : (*S) or (*S, C), S = (H, W) or (D, H, W)
        Any dtype `normalize_image` accepts.
    labels : (*S) int
        Instance labels (or a binary mask); warped with the nearest neighbour.
    rng : numpy.random.Generator
    sigma, grid, max_shift, flips, spacing : see `random_transform`.
    gray_values : bool
        Apply `vary_gray_values` to the image.

    Returns
    -------
    image : float32 in [0, 1], same shape (rotations by 90 degrees swap the last two axes)
    labels : same dtype as `labels`, holding only values of the input

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> labels = np.kron(np.arange(16).reshape(4, 4), np.ones((16, 16), int))
    >>> warped_image, warped_labels = augment(labels.astype(np.uint8), labels, rng)
    >>> warped_image.shape, set(np.unique(warped_labels)) <= set(range(16))
    ((64, 64), True)
    """
    labels = np.asarray(labels)
    image = normalize_image(image)
    if labels.ndim < 2 or image.shape[:labels.ndim] != labels.shape or image.ndim > labels.ndim + 1:
        raise ValueError(f"labels must be the image's spatial shape ((H, W) for an (H, W[, C]) image of shape "
                         f"{image.shape}), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise TypeError(f"labels must be an integer or bool array, got dtype {labels.dtype}")
    transform = random_transform(labels.shape, rng, sigma=sigma, grid=grid, max_shift=max_shift, flips=flips,
                                 spacing=spacing)
    warped_image = warp(image, transform, order=3)
    warped_labels = warp(labels, transform, order=0)
    if gray_values:
        warped_image = vary_gray_values(warped_image, rng)
    return warped_image, warped_labels
