"""How raw images become network input: one normalisation and one mirroring, for training
and prediction alike.

Intensities. One rule, `normalize_image`, turns every image into float32 in [0, 1], for
training and prediction alike; a run records its rule (`TrainConfig.normalize`), so that
predict and evaluate read images as its training did. The rules:

- "dtype" (default): uint8 and uint16 are divided by the largest value their dtype holds
  (255, 65535), so that a model trained on 8-bit ISBI slices sees the same range from a
  16-bit TIFF of the same scene; bool is 0 / 1; float images must already lie in [0, 1].
  Anything else is refused, never guessed: other integer types (an int64 array holding
  0 .. 255 divided by 2**63 - 1 would look black), floats outside [0, 1] (a float TIFF
  holding 0 .. 255, negative values). The error names the rule that reads the file.
- "percentile" (or "percentile:LOW,HIGH", default 1 and 99.8, as csbdeep's
  `normalize(x, 1, 99.8)`): each image maps its LOW-th percentile to 0 and its HIGH-th to
  1, clipped to [0, 1]; for camera images whose range has nothing to do with their dtype
  (12 bits in a uint16 arrive with a maximum of 0.06 under "dtype").
- "range:MIN,MAX": MIN -> 0, MAX -> 1, clipped; any dtype, e.g. range:0,255 for an int64
  or float array holding 8-bit values (the same input a uint8 file gives), range:0,4095
  for 12-bit camera images.

Every rule gives a float32 image in [0, 1], and "dtype" passes such an image through
unchanged, so an image normalised once is not changed by a second call.

Context beyond the border. The paper extrapolates missing context by mirroring. Here the
mirror is about the edge pixel, which is not repeated (... x2 x1 | x0 x1 x2 ...), so a
1 px membrane on the border stays 1 px wide in the context (the notebook used numpy's
"symmetric", ... x1 x0 | x0 x1 ..., which doubles the edge pixel). numpy calls this
extension "reflect" (`MIRROR_MODE`, used by `mirror_pad` for overlap-tile prediction) and
scipy.ndimage calls it "mirror" (`SCIPY_MIRROR_MODE`, used by the elastic deformation's
splines): one extension, two libraries' names for it, both defined here.
"""
import numpy as np

__all__ = ["normalize_image", "parse_normalize", "check_normalize", "as_stack", "mirror_pad", "mirror_index",
           "MIRROR_MODE", "SCIPY_MIRROR_MODE", "NORMALIZE_HELP"]

NORMALIZE_HELP = "dtype | percentile[:LOW,HIGH] | range:MIN,MAX"
DEFAULT_PERCENTILES = (1.0, 99.8)

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


def parse_normalize(text):
    """An intensity rule as text (the command line, config.json) -> its tuple.

    >>> parse_normalize("percentile"), parse_normalize("range:0,4095")
    (('percentile', 1.0, 99.8), ('range', 0.0, 4095.0))
    """
    kind, _, numbers = str(text).replace(" ", "").partition(":")
    try:
        values = tuple(float(v) for v in numbers.split(",")) if numbers else ()
    except ValueError:
        values = None
    if kind == "percentile" and not values:
        values = DEFAULT_PERCENTILES
    if values is None or kind not in ("dtype", "percentile", "range"):
        raise ValueError(f"normalize must be one of {NORMALIZE_HELP} (e.g. percentile:1,99.8 or range:0,4095), got "
                         f"{text!r}")
    return check_normalize((kind, *values))


def check_normalize(rule, name="normalize"):
    """An intensity rule as a checked tuple: ("dtype",), ("percentile", low, high) with
    0 <= low < high <= 100, or ("range", min, max) with min < max; text is parsed first."""
    if isinstance(rule, str):
        return parse_normalize(rule)
    rule = tuple(rule) if isinstance(rule, (tuple, list)) else (rule,)
    kind, values = rule[0], rule[1:]
    numbers = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                  and np.isfinite(v) for v in values)
    if kind == "dtype" and not values:
        return ("dtype",)
    if kind == "percentile" and len(values) == 2 and numbers and 0 <= values[0] < values[1] <= 100:
        return ("percentile", float(values[0]), float(values[1]))
    if kind == "range" and len(values) == 2 and numbers and values[0] < values[1]:
        return ("range", float(values[0]), float(values[1]))
    raise ValueError(f"{name} must be ('dtype',), ('percentile', LOW, HIGH) with 0 <= LOW < HIGH <= 100 or "
                     f"('range', MIN, MAX) with MIN < MAX (as text: {NORMALIZE_HELP}), got {rule!r}")


def _hint(image):
    """The rule that reads `image` as meant, as the error message names it."""
    low, high = image.min(), image.max()
    whole = np.issubdtype(image.dtype, np.integer) or bool(np.all(image == np.round(image)))
    top = next((top for top in (255, 4095, 65535) if high <= top), None)
    return f"range:0,{top}" if whole and low >= 0 and top else "percentile"


def normalize_image(image, name="image", *, normalize="dtype"):
    """Return `image` as float32 in [0, 1] by the intensity rule `normalize` (see the module
    docstring: "dtype", "percentile[:LOW,HIGH]", "range:MIN,MAX", as text or tuple).

    >>> normalize_image(np.array([[0, 255]], dtype=np.uint8))
    array([[0., 1.]], dtype=float32)
    >>> normalize_image(np.array([[0, 4095]], dtype=np.uint16), normalize="range:0,4095")
    array([[0., 1.]], dtype=float32)
    """
    rule = check_normalize(normalize)
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if image.dtype == bool:
        return image.astype(np.float32)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"{name} must be an integer, bool or float array, got dtype {image.dtype}")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if rule[0] != "dtype":
        low, high = np.percentile(image, rule[1:]) if rule[0] == "percentile" else rule[1:]
        scaled = (image.astype(np.float32) - np.float32(low)) / np.float32(max(high - low, 1e-20))
        return np.clip(scaled, 0.0, 1.0, out=scaled)
    if image.dtype in (np.uint8, np.uint16):
        return image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    if np.issubdtype(image.dtype, np.floating) and image.min() >= 0 and image.max() <= 1:
        return image.astype(np.float32, copy=False)
    what = "only uint8 and uint16 images are scaled by their dtype" if np.issubdtype(image.dtype, np.integer) \
        else "float images must lie in [0, 1]"
    raise ValueError(f"{name} is {image.dtype} with values {image.min()} .. {image.max()}, which the intensity rule "
                     f"'dtype' does not read ({what}); say what its values mean with --normalize {_hint(image)} "
                     f"(normalize='{_hint(image)}' in Python; see unet_ref.images)")


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
