"""How raw images become network input: one normalisation and one mirroring, for training
and prediction alike.

Intensities. Integer images are scaled by the largest value their dtype can hold (uint8 /
255, uint16 / 65535), so that a model trained on 8-bit ISBI slices sees the same range
from a 16-bit TIFF of the same scene. Float images are taken to be in [0, 1] already and
are only cast to float32. The training pipeline, the overlap-tile predictor and the
command line all call `normalize_image`; nothing else converts intensities.

Context beyond the border. The paper extrapolates missing context by mirroring. Here the
mirror is about the edge pixel, which is not repeated (... x2 x1 | x0 x1 x2 ...), so a
1 px membrane on the border stays 1 px wide in the context (the notebook used numpy's
"symmetric", ... x1 x0 | x0 x1 ..., which doubles the edge pixel). numpy calls this
extension "reflect" (`MIRROR_MODE`, used by `mirror_pad` for overlap-tile prediction) and
scipy.ndimage calls it "mirror" (`SCIPY_MIRROR_MODE`, used by the elastic deformation's
splines): one extension, two libraries' names for it, both defined here.
"""
import numpy as np

__all__ = ["normalize_image", "as_stack", "mirror_pad", "mirror_index", "MIRROR_MODE", "SCIPY_MIRROR_MODE"]

MIRROR_MODE = "reflect"  # np.pad's name for the mirror about the edge pixel
SCIPY_MIRROR_MODE = "mirror"  # scipy.ndimage's name for the same extension


def mirror_pad(image, before, after):
    """Mirror-pad the leading (spatial) axes of `image` by `before` and `after` px.

    `before`/`after` give one pad per spatial axis, e.g. (rows, cols) for an (H, W[, C])
    image; trailing axes (channels) are not padded. Works for pads wider than the image
    (np.pad then reflects again and again, a periodic mirror), so a 1 x 1 or 7 x 300 image
    still gets its full context.
    """
    if len(before) != len(after) or len(before) > np.ndim(image):
        raise ValueError(f"before and after must give one pad per spatial axis, got {before} and {after} for an "
                         f"array of shape {np.shape(image)}")
    pad = list(zip(before, after)) + [(0, 0)] * (np.ndim(image) - len(before))
    return np.pad(image, pad, mode=MIRROR_MODE)


def mirror_index(index, length):
    """Where integer positions `index` (any array) along an axis of `length` px fall in the
    image under the mirror extension: reflected into [0, length) with period 2 (length - 1),
    as np.pad(mode="reflect") reflects (an axis of length 1 is constant).

    >>> mirror_index(np.arange(-3, 8), 5)
    array([3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1])
    """
    if length == 1:
        return np.zeros_like(index)
    index = np.abs(index) % (2 * (length - 1))
    return np.where(index >= length, 2 * (length - 1) - index, index)


def normalize_image(image, name="image"):
    """Return `image` as float32 in [0, 1] (integers scaled by their dtype's maximum).

    >>> normalize_image(np.array([[0, 255]], dtype=np.uint8))
    array([[0., 1.]], dtype=float32)
    """
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.unsignedinteger):
        return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    if np.issubdtype(image.dtype, np.signedinteger):
        if image.min() < 0:
            raise ValueError(f"{name} has negative values; expected intensities >= 0 for dtype {image.dtype}")
        return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return image.astype(np.float32, copy=False)
    raise TypeError(f"{name} must be an integer, bool or float array, got dtype {image.dtype}")


def as_stack(image, ndim, in_channels, stack=None):
    """`image` as the network takes it: normalised float32 (N, *S, C), S the `ndim` spatial
    axes, and whether it was a stack (stack=None: one axis more than an image means a stack).
    ValueError naming the shape and the channels the model takes otherwise."""
    image = normalize_image(image, "image")
    shape = image.shape
    if stack is None:
        stack = image.ndim == ndim + 2
    axes = "H, W" if ndim == 2 else "D, H, W"
    expected = f"(N, {axes}) or (N, {axes}, C)" if stack else f"({axes}) or ({axes}, C)"
    gray = ndim + 1 if stack else ndim
    if image.ndim not in (gray, gray + 1):
        raise ValueError(f"image must be {expected}, got a {image.ndim}-D array of shape {shape}")
    if image.ndim == gray:
        image = image[..., None]  # grayscale: add the channel axis
    if image.shape[-1] != in_channels:
        hint = ""
        if not stack and image.ndim == ndim + 1 and in_channels == 1:
            hint = f"; if this is a stack of {shape[0]} grayscale images, pass stack=True"
        raise ValueError(
            f"image of shape {shape} has {image.shape[-1]} channels but the model takes "
            f"{in_channels} (read as {expected}){hint}"
        )
    return (image if stack else image[None]), stack
