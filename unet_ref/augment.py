"""The paper's data augmentation: smooth elastic deformations, shifts, rotations, gray values.

Ronneberger et al. (2015), section 3.1: "we primarily need shift and rotation invariance as
well as robustness to deformations and gray value variations", and "we generate smooth
deformations using random displacement vectors on a coarse 3 by 3 grid. The displacements
are sampled from a Gaussian distribution with 10 pixels standard deviation. Per-pixel
displacements are then computed using bicubic interpolation."

Our choices where the paper gives no detail: the knots span the whole image and the
per-pixel field is their cubic spline; the rotations are the 8 flips and quarter turns of
the tile (`dihedral`, lossless); the image is resampled with cubic splines; the gray values
vary by a random gamma, contrast and brightness.

One transform for image and labels: `random_transform` draws it, `sample_positions` says
where each pixel of a window is read from (p + shift + D(p), D the displacement field), and
`warp` reads an array there, with cubic splines for an image and the nearest sample for
labels, so label ids are never interpolated (the notebook interpolated its masks and then
computed weight maps on the blurred result). Beyond the image border the image is mirrored
about its edge pixel (`unet_ref.images`), as in overlap-tile prediction.

Axes: (H, W) images, and (D, H, W) volumes with a 3 x 3 x 3 grid of knots. Flips and turns
act in the plane of the last two axes, so the slice axis of a stack stays the slice axis.

This is the plain definition, on scipy.ndimage; the training pipeline's fast path
(`unet_ref.fast.warp`) computes the same, tested equal in tests/test_fast.py.
"""
import dataclasses
import math
import operator

import numpy as np
from scipy import ndimage

from unet_ref.checks import check_spacing
from unet_ref.images import SCIPY_MIRROR_MODE, mirror_index, normalize_image

__all__ = ["Transform", "random_transform", "identity_transform", "displacement_field", "sample_positions", "warp",
           "random_gray_values", "vary_gray_values", "augment", "dihedral", "dihedral_inverse", "DIHEDRAL"]

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
        pixel: the deformation is then isotropic in space, `sigma` and `max_shift` px along
        the finest axis and sigma * min(spacing) / s along an axis of spacing s (2 sections
        instead of 10 for (5, 1, 1)). Only ratios matter. Default: px on every axis.
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


def identity_transform(image_shape):
    """The `Transform` that moves nothing: no displacement, shift, flip or turn."""
    ndim = len(image_shape)
    return Transform(np.zeros((ndim,) + (3,) * ndim), tuple(int(s) for s in image_shape), (0.0,) * ndim)


def check_window(transform, top_left, size):
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


def displacement_field(transform, top_left=None, size=None):
    """Per-pixel displacement (ndim, *size) float64 on the window at `top_left` of `size`
    (default: the whole image): the cubic spline through the knots, knot i of an axis of
    length L at pixel i (L - 1) / (grid - 1). The window may extend past the image: the
    spline is mirrored there like the image."""
    top_left, size = check_window(transform, top_left, size)
    grid = transform.displacement.shape[1]
    # every pixel's position in knot units: (ndim, *size)
    knots = np.meshgrid(*[np.arange(start, start + n) * ((grid - 1) / max(length - 1, 1))
                          for start, n, length in zip(top_left, size, transform.image_shape)], indexing="ij")
    return np.stack([ndimage.map_coordinates(component, knots, order=3, mode=SCIPY_MIRROR_MODE)
                     for component in transform.displacement]).reshape(transform.ndim, *size)


def sample_positions(transform, top_left=None, size=None, elastic=True):
    """Image positions (ndim, *size) float64 that the window's pixels are read from:
    top_left + index + shift (+ the displacement field if `elastic`), before flips and
    rotations."""
    top_left, size = check_window(transform, top_left, size)
    shape = (-1,) + (1,) * len(size)
    positions = np.indices(size, dtype=np.float64) + np.add(top_left, transform.shift).reshape(shape)
    return positions + displacement_field(transform, top_left, size) if elastic else positions


def warp(array, transform, *, order, top_left=None, size=None, elastic=True, positions=None):
    """Sample `array` (*S) or (*S, C) on a window through `transform`.

    Parameters
    ----------
    array : (*S) or (*S, C) array, S = transform.image_shape, e.g. (H, W) or (H, W, C)
        The image (order 3; float) or instance labels (order 0; any integer or bool dtype).
    transform : Transform
    order : int
        Interpolation order: 3 for images, 0 for labels (ids are never mixed).
    top_left, size : tuple of int, one per axis
        Window in image coordinates (may extend past the image: mirrored context);
        default the whole image.
    elastic : bool
        Apply the displacement field (False: only shift, flip and rotation).
    positions : (ndim, *size) array, optional
        Where to read instead of `sample_positions(transform, top_left, size, elastic)`.

    Returns
    -------
    (*size[, C]) array, float32 for order > 0, `array.dtype` for order 0; the output pixel
    p before flipping/rotating comes from image position top_left + p + shift + D. Order 0
    reads the sample nearest to each position (rounded half to even, as np.rint).
    """
    array = np.asarray(array)
    ndim, spatial = transform.ndim, tuple(transform.image_shape)
    if ndim not in (2, 3):
        raise ValueError(f"transform must be of an image or a volume (2 or 3 axes), got image_shape {spatial}")
    if array.ndim not in (ndim, ndim + 1) or tuple(array.shape[:ndim]) != spatial:
        axes = "(H, W) or (H, W, C)" if ndim == 2 else f"{ndim} spatial axes and optional channels"
        raise ValueError(f"array must be {axes} with spatial shape {spatial}, got shape {array.shape}")
    if array.dtype != bool and array.dtype.kind not in "iuf":
        raise TypeError(f"array must be real (an integer, bool or float dtype), got dtype {array.dtype}")
    if positions is None:
        positions = sample_positions(transform, top_left, size, elastic)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != ndim + 1 or positions.shape[0] != ndim or not np.isfinite(positions).all():
        raise ValueError(f"positions must be a finite ({ndim}, *size) array, got shape {positions.shape}")
    if order == 0:  # the nearest sample of the mirrored array, channels alike
        out = array[tuple(mirror_index(np.rint(p).astype(np.int64), n) for p, n in zip(positions, spatial))]
    else:  # splines of that order, channel by channel, in float64, rounded once to float32
        channels = [array] if array.ndim == ndim else [array[..., c] for c in range(array.shape[-1])]
        out = [ndimage.map_coordinates(np.asarray(a, np.float64), positions, output=np.float32, order=order,
                                       mode=SCIPY_MIRROR_MODE) for a in channels]
        if array.ndim == ndim:
            out = out[0]
        else:
            out = np.stack(out, axis=-1) if out else np.empty((*positions.shape[1:], 0), np.float32)
    return np.ascontiguousarray(dihedral(out, transform.rot90, transform.flip, axes=(ndim - 2, ndim - 1)))


def random_gray_values(rng, *, gamma=0.25, contrast=0.15, brightness=0.08):
    """Draw a gray-value variation for `vary_gray_values`: (gamma, contrast, brightness) =
    (exp(U(-gamma, gamma)), U(1 - contrast, 1 + contrast), U(-brightness, brightness)).

    The paper names gray-value variations without details; these ranges keep EM images
    plausible."""
    gamma = math.exp(rng.uniform(-gamma, gamma))
    return gamma, rng.uniform(1 - contrast, 1 + contrast), rng.uniform(-brightness, brightness)


def vary_gray_values(image, gray):
    """Apply a `random_gray_values` draw to a float image in [0, 1] (image only): x ** gamma,
    then the contrast around the tile mean and the brightness, clipped to [0, 1].

    >>> vary_gray_values(np.array([0.0, 0.25, 1.0]), (2.0, 1.0, 0.0))
    array([0.    , 0.0625, 1.    ], dtype=float32)
    """
    gamma, scale, offset = gray
    # float32 throughout (Python-float factors keep the array's dtype)
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) ** gamma
    mean = float(image.mean())
    image *= scale
    image += (1 - scale) * mean + offset  # (x - mean) scale + mean + offset
    return np.clip(image, 0.0, 1.0, out=image)


def augment(image, labels, rng, *, sigma=10.0, grid=3, max_shift=8.0, flips=True, gray_values=True, spacing=None):
    """Whole-image augmentation: the same random transform on `image` and `labels`.

    image (*S) or (*S, C), S = (H, W) or (D, H, W), any dtype `normalize_image` accepts;
    labels (*S) int or bool, warped with the nearest sample; sigma, grid, max_shift, flips,
    spacing as in `random_transform`; gray_values: apply a `random_gray_values` draw.
    Returns the image as float32 in [0, 1] and the labels in their dtype, holding only
    values of the input (quarter turns swap the last two axes).

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
    positions = sample_positions(transform)
    warped_image = warp(image, transform, order=3, positions=positions)
    warped_labels = warp(labels, transform, order=0, positions=positions)
    if gray_values:
        warped_image = vary_gray_values(warped_image, random_gray_values(rng))
    return warped_image, warped_labels
