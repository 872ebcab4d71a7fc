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

Missing context at the image border is mirrored, scipy mode "mirror" (... x2 x1 | x0 x1
x2 ...): the edge pixel is not repeated, so a border membrane keeps its width. This is
numpy's np.pad mode "reflect", the one the overlap-tile predictor uses
(`unet_ref.tiling.MIRROR_MODE`), so training and prediction see the same context.
"""
import dataclasses
import functools
import math
import operator

import numpy as np
from scipy import ndimage

from unet_ref import _warp
from unet_ref.images import normalize_image

__all__ = ["Transform", "random_transform", "displacement_field", "sample_positions", "warp", "vary_gray_values",
           "augment", "spline_coefficients", "MIRROR_MODE"]

MIRROR_MODE = "mirror"  # scipy's name for numpy's "reflect"; see the module docstring


@dataclasses.dataclass(frozen=True)
class Transform:
    """A random geometric transform of one image (all lengths in px).

    displacement : (2, grid, grid) float -- (dy, dx) at knots spanning the image
    image_shape : (H, W) of the image the knots span
    shift : (dy, dx) added to every sample position
    rot90 : number of counter-clockwise 90-degree turns of the tile (0-3)
    flip : flip the tile left-right (after the rotation)
    """
    displacement: np.ndarray
    image_shape: tuple
    shift: tuple = (0.0, 0.0)
    rot90: int = 0
    flip: bool = False


def random_transform(image_shape, rng, *, sigma=10.0, grid=3, max_shift=8.0, flips=True):
    """Draw a `Transform`: elastic (paper: 3 x 3 grid, sigma 10 px), shift, flip/rotation.

    Parameters
    ----------
    image_shape : (H, W)
    rng : numpy.random.Generator
        The only source of randomness.
    sigma : float
        Standard deviation of the knot displacements in px (0 turns the deformation off).
    grid : int
        Knots per axis (>= 2).
    max_shift : float
        Shift drawn uniformly from [-max_shift, max_shift] px per axis.
    flips : bool
        Draw one of the 8 flips/90-degree rotations (else the identity).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if len(image_shape) < 2 or min(image_shape[:2]) < 1:
        raise ValueError(f"image_shape must be (H, W) with H, W >= 1, got {image_shape!r}")
    if not (np.isfinite(sigma) and sigma >= 0 and np.isfinite(max_shift) and max_shift >= 0):
        raise ValueError(f"sigma and max_shift must be finite and >= 0, got {sigma}, {max_shift}")
    if int(grid) != grid or grid < 2:
        raise ValueError(f"grid must be an int >= 2, got {grid!r}")
    displacement = rng.normal(0.0, sigma, size=(2, int(grid), int(grid)))
    shift = tuple(rng.uniform(-max_shift, max_shift, size=2))
    rot90, flip = (int(rng.integers(4)), bool(rng.integers(2))) if flips else (0, False)
    return Transform(displacement, tuple(int(s) for s in image_shape[:2]), shift, rot90, flip)


@functools.lru_cache(maxsize=32)
def _knot_table(length, grid):
    """(length, grid) read-only: the cubic-spline weight of each knot at the integer
    positions 0 .. length - 1 of an image axis (knot i sits at i (L - 1) / (g - 1)).

    The field is linear in the knot values, so the spline of each unit vector gives the
    tensor-product spline as two small matrix products. Cached: every tile of an image
    reads the same table."""
    knot_coords = np.arange(length) * ((grid - 1) / max(length - 1, 1))
    table = np.stack([ndimage.map_coordinates(e, knot_coords[None], order=3, mode=MIRROR_MODE)
                      for e in np.eye(grid)], 1)
    table.flags.writeable = False
    return table


def _knot_weights(start, count, length, grid):
    """(count, grid) knot weights at the integer positions start .. start + count - 1.

    The mirrored spline is symmetric about the first and last pixel (knots 0 and g - 1),
    so a position outside the image reads the weights of its mirror image."""
    index = np.abs(np.arange(start, start + count)) % max(2 * (length - 1), 1)
    return _knot_table(length, grid)[np.where(index >= length, 2 * (length - 1) - index, index)]


def displacement_field(transform, top_left=(0, 0), size=None):
    """Per-pixel displacement (2, h, w) float64 on the window at `top_left` of `size`.

    `size` defaults to the image shape. The window may extend past the image: the field
    continues smoothly (mirrored spline).
    """
    h, w = size if size is not None else transform.image_shape
    try:
        top, left = (operator.index(v) for v in top_left)
    except TypeError:
        raise TypeError(f"top_left must be two integers (a pixel position), got {top_left!r}") from None
    grid = transform.displacement.shape[1]
    by = _knot_weights(top, h, transform.image_shape[0], grid)  # (h, grid)
    bx = _knot_weights(left, w, transform.image_shape[1], grid)  # (w, grid)
    return np.stack([by @ transform.displacement[k] @ bx.T for k in range(2)])  # (2, h, w)


def spline_coefficients(image):
    """Cubic B-spline coefficients of `image` (H, W[, C]) float, along H and W only.

    `warp(..., prefiltered=True)` takes these instead of the image, so the prefilter runs
    once per image instead of once per tile."""
    image = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        image = ndimage.spline_filter1d(image, order=3, axis=axis, mode=MIRROR_MODE)
    return image


def sample_positions(transform, top_left=(0, 0), size=None, elastic=True):
    """Image positions (2, h, w) float64 that the window's pixels are read from:
    top_left + (i, j) + shift (+ the displacement field if `elastic`), before flips/rotations.

    Compute once and pass to `warp(positions=...)` to warp several arrays alike."""
    h, w = size if size is not None else transform.image_shape
    ys = np.arange(h) + (top_left[0] + transform.shift[0])  # (h,)
    xs = np.arange(w) + (top_left[1] + transform.shift[1])  # (w,)
    positions = displacement_field(transform, top_left, (h, w)) if elastic else np.zeros((2, h, w))
    positions[0] += ys[:, None]
    positions[1] += xs[None, :]
    return positions  # (2, h, w)


def warp(array, transform, *, order, top_left=(0, 0), size=None, prefiltered=False, elastic=True,
         positions=None):
    """Sample `array` (H, W[, C]) on a window through `transform`.

    Parameters
    ----------
    array : (H, W) or (H, W, C) array
        The image (order 3; float) or instance labels (order 0; any integer dtype).
    transform : Transform
    order : int
        Interpolation order: 3 for images, 0 for labels (ids are never mixed).
    top_left, size : (int, int)
        Window in image coordinates (may extend past the image: mirrored context);
        default the whole image.
    prefiltered : bool
        `array` holds `spline_coefficients` of the image (order 3 only).
    elastic : bool
        Apply the displacement field (False: only shift, flip and rotation).
    positions : (2, h, w) array, optional
        `sample_positions(transform, top_left, size, elastic)`, computed once for several
        arrays; replaces top_left, size and elastic.

    Returns
    -------
    (h, w[, C]) array, float32 for order > 0, `array.dtype` for order 0; the output pixel
    (i, j) before flipping/rotating comes from image position top_left + (i, j) + shift + D.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3) or tuple(array.shape[:2]) != transform.image_shape:
        raise ValueError(f"array must be (H, W) or (H, W, C) with (H, W) = {transform.image_shape}, "
                         f"got shape {array.shape}")
    if array.dtype == bool:  # a mask: looked up as the same bytes (order 0), else a 0/1 image
        if order != 0:
            return warp(array.astype(np.float32), transform, order=order, top_left=top_left, size=size,
                        elastic=elastic, positions=positions)
        return warp(array.view(np.uint8), transform, order=0, top_left=top_left, size=size,
                    elastic=elastic, positions=positions).view(bool)
    coords = sample_positions(transform, top_left, size, elastic) if positions is None else positions
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 3 or coords.shape[0] != 2 or not np.isfinite(coords).all():
        raise ValueError(f"positions must be a finite (2, h, w) array, got shape {coords.shape}")
    height, width = array.shape[:2]
    if order == 0:
        # nearest neighbour as an index look-up (ext/_warp.pyx), ids copied, never mixed
        index = np.empty(coords.shape[1:], np.intp)  # (h, w) flat indices into (H, W)
        _warp.nearest_index(coords, height, width, index)
        out = array.reshape(height * width, *array.shape[2:])[index]
    elif order == 3:
        # ext/_warp.pyx: what map_coordinates(order=3, mode="mirror", prefilter=False)
        # computes, specialised to 2-D and ~3.5x faster (the pipeline's largest cost)
        coefficients = array if prefiltered else spline_coefficients(array)
        coefficients = np.ascontiguousarray(coefficients.reshape(height, width, -1), dtype=np.float64)
        out = np.empty((*coords.shape[1:], coefficients.shape[2]), np.float32)  # (h, w, C)
        _warp.cubic_sample(coefficients, coords, out)
        out = out[..., 0] if array.ndim == 2 else out
    else:
        channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[2])]
        out = [ndimage.map_coordinates(a, coords, output=np.float32, order=order, mode=MIRROR_MODE,
                                       prefilter=not prefiltered) for a in channels]
        out = out[0] if array.ndim == 2 else np.stack(out, axis=-1)
    out = np.rot90(out, transform.rot90)  # lossless: a permutation of the pixels
    return np.ascontiguousarray(out[:, ::-1] if transform.flip else out)


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


def augment(image, labels, rng, *, sigma=10.0, grid=3, max_shift=8.0, flips=True, gray_values=True):
    """Whole-image augmentation: the same random transform on `image` and `labels`.

    Parameters
    ----------
    image : (H, W) or (H, W, C)
        Any dtype `normalize_image` accepts.
    labels : (H, W) int
        Instance labels (or a binary mask); warped with the nearest neighbour.
    rng : numpy.random.Generator
    sigma, grid, max_shift, flips : see `random_transform`.
    gray_values : bool
        Apply `vary_gray_values` to the image.

    Returns
    -------
    image : float32 in [0, 1], same shape (rotations by 90 degrees swap H and W)
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
    if image.shape[:2] != labels.shape or labels.ndim != 2:
        raise ValueError(f"labels must be (H, W) matching image {image.shape[:2]}, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise TypeError(f"labels must be an integer or bool array, got dtype {labels.dtype}")
    transform = random_transform(labels.shape, rng, sigma=sigma, grid=grid, max_shift=max_shift, flips=flips)
    warped_image = warp(image, transform, order=3)
    warped_labels = warp(labels, transform, order=0)
    if gray_values:
        warped_image = vary_gray_values(warped_image, rng)
    return warped_image, warped_labels
