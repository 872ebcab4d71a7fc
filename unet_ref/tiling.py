"""Overlap-tile prediction: seamless segmentation of images of any size (paper, Fig. 2).

With valid convolutions a U-Net of depth d maps an n x n input tile to an
(n - 2 * margin) x (n - 2 * margin) output tile, margin = 92 px for d = 4. To predict a
whole image we mirror it at its borders (the paper's extrapolation of missing context),
cut input tiles that overlap by 2 * margin, and paste the output tiles side by side.

Done right the result is *exactly* one forward pass over the whole mirrored image,
whatever the tile size: every output pixel sees the same input window, and the tiles
start on the network's pooling grid (multiples of 2**d px), so every 2x2 max-pool
groups the same pixels as in the whole-image pass. Memory is bounded by one batch of
tiles; only the padded input image and the output probabilities are held whole.

Shapes: image (H, W) or (H, W, C); stack (N, H, W[, C]); output (..., H, W, n_classes).
"""
import math

import numpy as np

from unet_ref.checks import check_int
from unet_ref.images import normalize_image
from unet_ref.masks import CELL_CLASS
from unet_ref.sizes import margin, output_size, valid_input_size

__all__ = ["predict_tiled", "predict_cells", "choose_tile_size", "mirror_pad", "MIRROR_MODE", "DEFAULT_MEMORY_BUDGET"]

# numpy's "reflect" mirrors about the edge pixel (... x2 x1 | x0 x1 x2 ...) without
# repeating it, so a 1 px membrane on the border stays 1 px wide in the context. The
# notebook used "symmetric" (... x1 x0 | x0 x1 ...), which doubles the edge pixel.
# For pads wider than the image np.pad reflects again and again (a periodic mirror), so
# a 1 x 1 or 7 x 300 image still gets its 92 px of context.
MIRROR_MODE = "reflect"

# Activation memory allowed for one batch of tiles (bytes), an estimate from the base
# filter count. 1 GiB lets the paper's network (64 base filters) take ~700 px tiles and
# one with 16 base filters ~1400 px; it fits beside other jobs on a laptop or a GPU.
DEFAULT_MEMORY_BUDGET = 2**30

# Peak memory of a forward pass per input pixel and base filter (bytes), measured with
# benchmarks/test_tiling.py (peak RSS - RSS before, over tile area x filters): 11-24 B
# for depth 4, 16-64 filters, 572-2236 px tiles, on CPU. 32 leaves some headroom.
_BYTES_PER_PIXEL_PER_FILTER = 32


def mirror_pad(image, before, after):
    """Mirror-pad the first two axes of `image` (H, W[, C]) by `before` and `after` px.

    `before`/`after` are (rows, cols) pairs. Uses `MIRROR_MODE`; works for pads wider
    than the image.
    """
    pad = [(before[0], after[0]), (before[1], after[1])] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode=MIRROR_MODE)


def _model_geometry(model):
    """(depth, in_channels, n_classes, base_filters) read from a built U-Net."""
    from unet_ref.model import unet_depth  # imports TensorFlow; only when predicting

    depth = unet_depth(model)
    in_channels, n_classes = model.input_shape[-1], model.output_shape[-1]
    if in_channels is None or n_classes is None:
        raise ValueError(
            f"model must declare its channel counts, got input_shape={model.input_shape}, "
            f"output_shape={model.output_shape}; build it with unet_ref.build_unet"
        )
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    base_filters = convs[0].filters if convs else 64  # first 3x3 conv; else assume the paper's 64
    return depth, in_channels, n_classes, base_filters


def _stride(tile, depth):
    """Output px between tile origins: the output size rounded down to the pooling grid."""
    out = output_size(tile, depth)
    return out - out % 2**depth


def _n_tiles(length, tile, depth):
    """Tiles of input size `tile` needed along an axis of `length` px."""
    return 1 + max(0, math.ceil((length - output_size(tile, depth)) / _stride(tile, depth)))


def _smallest_tile(depth):
    """Smallest valid tile whose stride is at least one step of the pooling grid."""
    return valid_input_size(2**depth + 2 * margin(depth), depth)


def choose_tile_size(model, height, width, *, batch_size=1, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Input tile (rows, cols) for an image of `height` x `width` px under a memory budget.

    The largest square tile whose activations fit `memory_budget` bytes for `batch_size`
    tiles fixes how many tiles each axis needs; then each side shrinks to the smallest
    valid size that still covers the image with that many tiles (a 7 x 300 image gets a
    flat tile, a small image one tile just big enough).
    """
    depth, in_channels, _, base_filters = _model_geometry(model)
    per_pixel = _BYTES_PER_PIXEL_PER_FILTER * base_filters + 4 * in_channels
    side = math.isqrt(max(memory_budget // (per_pixel * batch_size), 1))
    n_max = _smallest_tile(depth)
    while (n := valid_input_size(n_max + 1, depth)) <= side:  # valid sizes are 2**depth apart
        n_max = n

    def shrink(length):  # smallest tile that needs no more tiles than n_max does
        n = _smallest_tile(depth)
        while _n_tiles(length, n, depth) > _n_tiles(length, n_max, depth):
            n = valid_input_size(n + 1, depth)
        return n

    return shrink(height), shrink(width)


def _check_tile(tile_size, depth):
    """tile_size (int or (rows, cols)) -> (rows, cols), each a valid input with stride > 0."""
    tiles = (tile_size, tile_size) if np.ndim(tile_size) == 0 else tuple(tile_size)
    if len(tiles) != 2:
        raise ValueError(f"tile_size must be an int or a (rows, cols) pair, got {tile_size!r}")
    for n in tiles:
        try:
            output_size(n, depth)
        except (TypeError, ValueError) as err:
            raise type(err)(f"tile_size: {err}") from None
        if _stride(n, depth) == 0:
            raise ValueError(
                f"tile_size {n} is too small for a U-Net of depth {depth}: its {output_size(n, depth)} px "
                f"output is narrower than the {2**depth} px pooling grid; use at least "
                f"{_smallest_tile(depth)}"
            )
    return tiles


def _as_stack(image, in_channels, stack):
    """Normalised float32 (N, H, W, C) and whether the input was a stack."""
    image = normalize_image(image, "image")
    shape = image.shape
    if stack is None:
        stack = image.ndim == 4
    expected = "(N, H, W) or (N, H, W, C)" if stack else "(H, W) or (H, W, C)"
    if image.ndim not in ((3, 4) if stack else (2, 3)):
        raise ValueError(f"image must be {expected}, got a {image.ndim}-D array of shape {shape}")
    if image.ndim == (3 if stack else 2):
        image = image[..., None]  # grayscale: add the channel axis
    if image.shape[-1] != in_channels:
        hint = ""
        if not stack and image.ndim == 3 and in_channels == 1:
            hint = f"; if this is a stack of {shape[0]} grayscale images, pass stack=True"
        raise ValueError(
            f"image of shape {shape} has {image.shape[-1]} channels but the model takes "
            f"{in_channels} (read as {expected}){hint}"
        )
    return (image if stack else image[None]), stack


def _dihedral(a, k, flip):
    """One of the 8 flips/rotations of an (H, W, ...) array: flip columns, then rotate k x 90."""
    return np.rot90(a[:, ::-1] if flip else a, k)


def _dihedral_inverse(a, k, flip):
    a = np.rot90(a, -k)
    return a[:, ::-1] if flip else a


def predict_tiled(model, image, *, tile_size=None, batch_size=None, tta=False, progress=None,
                  stack=None, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Class probabilities for an image of any size with the overlap-tile strategy.

    Parameters
    ----------
    model : keras.Model
        A U-Net from `unet_ref.build_unet` (output = logits). Its depth (and so the
        margin), channel counts and base filter count are read from the model.
    image : array_like
        (H, W) or (H, W, C) image, any H, W >= 1, integer or float; normalised with
        `unet_ref.images.normalize_image` exactly as in training. A 4-D array is a stack
        (N, H, W, C). A 3-D array is always one (H, W, C) image unless ``stack=True``,
        which reads it as a grayscale stack (N, H, W): the code never guesses.
    tile_size : int or (int, int), optional
        Input tile size, a valid network input (`unet_ref.sizes.valid_input_size`).
        Default: `choose_tile_size` under `memory_budget`.
    batch_size : int, optional
        Tiles per forward pass. Default: as many as fit in `memory_budget` (at least 1).
    tta : bool
        Average the probabilities over the 8 flips/rotations of the image (the paper
        averaged rotated versions for its ISBI submission). 8x the compute.
    progress : bool, optional
        Show a tqdm progress bar over tiles. Default: only for more than 16 tiles.
    stack : bool, optional
        True: the first axis indexes images. False: one image. None: 4-D means a stack.
    memory_budget : int
        Bytes of activations allowed for one batch of tiles (default 1 GiB).

    Returns
    -------
    probabilities : ndarray of float32, (H, W, n_classes) or (N, H, W, n_classes)
        Softmax of the logits, aligned pixel for pixel with `image`.

    Notes
    -----
    The image is mirrored (`MIRROR_MODE`) by the margin on each side (more at the bottom
    and right to fill whole tiles). Tile origins are multiples of the output tile size
    rounded down to 2**depth px, so neighbouring output tiles overlap by a few px
    (4 px at depth 4) and the result equals one pass over the whole mirrored image.

    Examples
    --------
    >>> import numpy as np
    >>> from unet_ref import build_unet, predict_tiled
    >>> model = build_unet(base_filters=4, depth=2)
    >>> image = np.random.default_rng(0).integers(0, 256, (37, 50), dtype=np.uint8)
    >>> predict_tiled(model, image).shape
    (37, 50, 2)
    >>> predict_tiled(model, np.stack([image, image]), stack=True, tile_size=60).shape
    (2, 37, 50, 2)
    """
    import keras  # deferred: importing unet_ref.tiling does not pay for TensorFlow
    from tqdm.auto import tqdm

    depth, in_channels, n_classes, base_filters = _model_geometry(model)
    images, is_stack = _as_stack(image, in_channels, stack)  # (N, H, W, C)
    check_int(memory_budget, "memory_budget (bytes)", minimum=1)
    if batch_size is not None:
        check_int(batch_size, "batch_size", minimum=1)
    m = margin(depth)
    transforms = [(k, flip) for flip in (False, True) for k in range(4)] if tta else [(0, False)]

    # One plan (tile, stride, tile count) per transformed image shape: rotations swap H, W.
    def plan(h, w):
        tiles = _check_tile(tile_size, depth) if tile_size is not None else choose_tile_size(
            model, h, w, batch_size=batch_size or 1, memory_budget=memory_budget)
        outs = [output_size(t, depth) for t in tiles]
        strides = [_stride(t, depth) for t in tiles]
        counts = [_n_tiles(n, t, depth) for n, t in zip((h, w), tiles)]
        return tiles, outs, strides, counts

    _, h, w, _ = images.shape
    plans = {(h, w): plan(h, w), (w, h): plan(w, h)}
    total = len(images) * sum(math.prod(plans[(w, h) if k % 2 else (h, w)][3]) for k, _ in transforms)
    per_tile = (_BYTES_PER_PIXEL_PER_FILTER * base_filters + 4 * in_channels) * math.prod(plans[(h, w)][0])
    batch = batch_size or max(1, min(memory_budget // per_tile, total))
    bar = tqdm(total=total, unit="tile", desc="predict_tiled",
               disable=(not progress) if progress is not None else (True if total <= 16 else None))

    result = (np.zeros if tta else np.empty)((len(images), h, w, n_classes), np.float32)
    for i, img in enumerate(images):
        for k, flip in transforms:
            view = _dihedral(img, k, flip)  # (h', w', C)
            (th, tw), (oh, ow), (sh, sw), (ky, kx) = plans[view.shape[:2]]
            hv, wv = view.shape[:2]
            # top/left: the margin; bottom/right: the margin plus whatever fills the last tile.
            padded = mirror_pad(view, (m, m), ((ky - 1) * sh + th - hv - m, (kx - 1) * sw + tw - wv - m))
            pred = np.empty((hv, wv, n_classes), np.float32) if tta else result[i]  # no copy without TTA
            origins = [(y * sh, x * sw) for y in range(ky) for x in range(kx)]
            for start in range(0, len(origins), batch):
                chunk = origins[start:start + batch]
                tiles = np.stack([padded[y:y + th, x:x + tw] for y, x in chunk])  # (B, th, tw, C)
                # predict_on_batch runs a compiled graph (inference mode): it frees each
                # activation as soon as it is used, ~3x less peak memory than model(x).
                logits = model.predict_on_batch(tiles)  # (B, oh, ow, n_classes)
                probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
                for (y, x), p in zip(chunk, probs):
                    # overlapping px (stride < output) get the same value from both tiles
                    pred[y:y + oh, x:x + ow] = p[:hv - y, :wv - x]
                bar.update(len(chunk))
            if tta:
                result[i] += _dihedral_inverse(pred, k, flip)
    bar.close()
    if tta:
        result /= len(transforms)
    return result if is_stack else result[0]


def predict_cells(model, images, names=None, **options):
    """P(cell) of each image, one at a time: yields (name, (H, W) float32 in [0, 1]).

    `images`: a sequence of (H, W[, C]) arrays, or of (name, image) pairs (as
    `unet_ref.datasets.read_images` returns them) when `names` is None; `options` go to
    `predict_tiled` (tile_size, batch_size, tta, ...). A ValueError names the image.
    Lazy, so that a long list is predicted and written one image at a time.
    """
    images = list(images)
    if names is None:
        pairs = [item if isinstance(item, tuple) else (f"image_{i}", item) for i, item in enumerate(images)]
    else:
        names = list(names)
        if len(names) != len(images):
            raise ValueError(f"got {len(names)} names for {len(images)} images")
        pairs = list(zip(names, images))
    for name, image in pairs:
        try:
            probabilities = predict_tiled(model, image, **options)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from error
        yield name, np.ascontiguousarray(probabilities[..., CELL_CLASS])
