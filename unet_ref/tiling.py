"""Overlap-tile prediction: seamless segmentation of images of any size (paper, Fig. 2).

With valid convolutions a U-Net of depth d maps an n x n input tile to an
(n - 2 * margin) x (n - 2 * margin) output tile, margin = 92 px for d = 4. To predict a
whole image we mirror it at its borders (the paper's extrapolation of missing context),
cut input tiles that overlap by 2 * margin, and paste the output tiles side by side.

Done right the result is *exactly* one forward pass over the whole mirrored image,
whatever the tile size: every output pixel sees the same input window, and the tiles
start on the network's pooling grid (multiples of 2**d px; per axis, the product of that
axis's pooling factors when a volume is pooled anisotropically), so every max-pool groups
the same pixels as in the whole-image pass. Memory is bounded by one batch of
tiles; only the padded input image and the output probabilities are held whole.

Two steps: `plan_tiles` fixes the geometry (tile, output tile, stride and count per
axis, the mirror padding, the tile origins), `predict_tiled` runs the batches and
pastes the output tiles. Everything works per spatial axis, for images (H, W) and
volumes (D, H, W) alike; the margin and the pooling grid of each axis come from the
model's own pooling layers (`unet_ref.model.unet_pool_sizes`). `choose_tile_size` (at the
end) picks a default tile from a memory budget.

Shapes: image (*S) or (*S, C); stack (N, *S[, C]); output (..., *S, n_classes), with
S = (H, W) for a 2-D model and (D, H, W) for a 3-D one.
"""
import dataclasses
import itertools
import math

import numpy as np

from unet_ref.augment import DIHEDRAL, dihedral, dihedral_inverse
from unet_ref.checks import check_int, per_axis
from unet_ref.images import as_stack, mirror_pad
from unet_ref.masks import CELL_CLASS
from unet_ref.memory import DEFAULT_MEMORY_BUDGET, check_memory, tile_bytes
from unet_ref.sizes import margin, output_size, pool_factors, valid_input_size

__all__ = ["predict_tiled", "predict_cells", "plan_tiles", "TilePlan", "predict_padded", "choose_tile_size"]


def _model_geometry(model):
    """(ndim, in_channels, n_classes, base_filters, pool_sizes) read from a built U-Net;
    pool_sizes: the pooling factors of its levels, one per axis (`unet_pool_sizes`)."""
    from unet_ref.model import spatial_layers, unet_pool_sizes  # imports TensorFlow; only when predicting

    pool_sizes = unet_pool_sizes(model)
    ndim = len(model.input_shape) - 2
    in_channels, n_classes = model.input_shape[-1], model.output_shape[-1]
    if in_channels is None or n_classes is None:
        raise ValueError(f"model must declare its channel counts, got input_shape={model.input_shape}, "
                         f"output_shape={model.output_shape}; build it with unet_ref.build_unet")
    convs = [layer for layer in model.layers if type(layer) is spatial_layers(ndim).conv]
    base_filters = convs[0].filters if convs else 64  # first 3x3 conv; else assume the paper's 64
    return ndim, in_channels, n_classes, base_filters, pool_sizes


# The helpers below work along one axis, pooled by `axis_pools` (its factor at each level).

def _stride(tile, axis_pools):
    """Output px between tile origins: the output size rounded down to the pooling grid."""
    out = output_size(tile, pool_sizes=axis_pools)
    return out - out % math.prod(axis_pools)


def _n_tiles(length, tile, axis_pools):
    """Tiles of input size `tile` needed along an axis of `length` px."""
    return 1 + max(0, math.ceil((length - output_size(tile, pool_sizes=axis_pools)) / _stride(tile, axis_pools)))


def _smallest_tile(axis_pools):
    """Smallest valid tile whose stride is at least one step of the pooling grid."""
    return valid_input_size(math.prod(axis_pools) + 2 * margin(pool_sizes=axis_pools), pool_sizes=axis_pools)


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """How an image of `shape` is cut into tiles; one entry per spatial axis.

    tile: input tile size; output: output tile size; stride: px between tile origins
    (the output rounded down to the pooling grid); count: tiles along the axis;
    margin: px of context lost on each side.
    """
    shape: tuple
    tile: tuple
    output: tuple
    stride: tuple
    count: tuple
    margin: tuple

    @property
    def padding(self):
        """(before, after) mirror padding per axis: the margin before, the margin plus
        whatever fills the last tile after."""
        return tuple((g, (k - 1) * s + t - n - g)
                     for n, t, s, k, g in zip(self.shape, self.tile, self.stride, self.count, self.margin))

    def origins(self):
        """Tile origins, in reading order: of the input tile in the padded image, which is
        also the output tile's origin in the image."""
        return itertools.product(*(range(0, k * s, s) for k, s in zip(self.count, self.stride)))

    @property
    def n_tiles(self):
        return math.prod(self.count)


def plan_tiles(shape, tile, depth=None, pool_sizes=None):
    """The `TilePlan` of an image of spatial `shape` for input tiles `tile` (one valid
    size per axis) and a U-Net of `depth` max-pools of 2, or with `pool_sizes` (one entry
    per level, as `unet_ref.sizes.pool_factors` reads it)."""
    tile = tuple(int(t) for t in tile)
    axis_pools = tuple(zip(*pool_factors(pool_sizes, depth, len(tile)))) or ((),) * len(tile)
    return TilePlan(shape=tuple(int(n) for n in shape), tile=tile,
                    output=tuple(output_size(t, pool_sizes=p) for t, p in zip(tile, axis_pools)),
                    stride=tuple(_stride(t, p) for t, p in zip(tile, axis_pools)),
                    count=tuple(_n_tiles(n, t, p) for n, t, p in zip(shape, tile, axis_pools)),
                    margin=tuple(margin(pool_sizes=p) for p in axis_pools))


def _check_tile(tile_size, ndim, pool_sizes):
    """tile_size (int or one per axis) -> a tuple, each a valid input with stride > 0."""
    tiles = per_axis(tile_size, ndim, "tile_size")
    for axis, (n, p) in enumerate(zip(tiles, zip(*pool_sizes))):
        where = "" if ndim == 1 or len(set(tiles)) == 1 and len(set(pool_sizes)) == 1 else f" (axis {axis})"
        try:
            output_size(n, pool_sizes=p)
        except (TypeError, ValueError) as err:
            raise type(err)(f"tile_size{where}: {err}") from None
        if _stride(n, p) == 0:
            raise ValueError(f"tile_size{where} {n} is too small for this U-Net: its {output_size(n, pool_sizes=p)} "
                             f"px output is narrower than the {math.prod(p)} px pooling grid; use at least "
                             f"{_smallest_tile(p)}")
    return tiles


def predict_padded(model, padded, plan, out, batch=1, bar=None):
    """Fill `out` (*plan.shape, n_classes) with the softmax of the model over `padded`, the
    normalised image (*S, C) with `plan.padding` of context around it (mirrored by
    `predict_tiled`, read from the volume by `unet_ref.blockwise`): cut the tiles of `plan`,
    run them `batch` at a time, paste the output tiles; `bar` (tqdm) counts them."""
    import keras

    origins = list(plan.origins())
    for start in range(0, len(origins), batch):
        chunk = origins[start:start + batch]
        tiles = np.stack([padded[tuple(slice(o, o + t) for o, t in zip(origin, plan.tile))]
                          for origin in chunk])  # (B, *tile, C)
        # predict_on_batch runs a compiled graph (inference mode): it frees each
        # activation as soon as it is used: less peak memory than model(x).
        logits = model.predict_on_batch(tiles)  # (B, *output, n_classes)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
        for origin, p in zip(chunk, probabilities):
            # clipped at the image's far border; overlapping px (stride < output) get the
            # same value from both tiles
            inside = tuple(slice(0, min(o + t, n) - o) for o, t, n in zip(origin, plan.output, plan.shape))
            out[tuple(slice(o, o + t) for o, t in zip(origin, plan.output))] = p[inside]
        if bar is not None:
            bar.update(len(chunk))


def predict_tiled(model, image, *, tile_size=None, batch_size=None, tta=False, progress=None,
                  stack=None, memory_budget=DEFAULT_MEMORY_BUDGET):
    """Class probabilities for an image of any size with the overlap-tile strategy.

    Parameters
    ----------
    model : keras.Model
        A U-Net from `unet_ref.build_unet` (output = logits); its dimensions, pooling
        (and so the margin), channel counts and base filters are read from its layers.
    image : array_like
        (H, W) or (H, W, C), any H, W >= 1, integer or float; normalised with
        `unet_ref.images.normalize_image` as in training. A 4-D array is a stack
        (N, H, W, C); a 3-D array is one (H, W, C) image unless ``stack=True`` (a grayscale
        stack): the code never guesses. For a 3-D model, a volume (D, H, W[, C]) or a stack.
    tile_size : int or tuple of int, optional
        Input tile size, a valid network input, one for all axes or one per axis.
        Default: `choose_tile_size` under `memory_budget`.
    batch_size : int, optional
        Tiles per forward pass. Default: as many as fit in `memory_budget` (at least 1).
    tta : bool
        Average the probabilities over the 8 flips/quarter turns of the image in the plane
        of the last two axes (`unet_ref.augment.DIHEDRAL`): 8x the compute. Our choice;
        the paper averaged "7 rotated versions of the input data" for its ISBI result.
    progress : bool, optional
        A tqdm progress bar over tiles. Default: only for more than 16 tiles.
    stack : bool, optional
        True: the first axis indexes images. None: 4-D (5-D for a 3-D model) is a stack.
    memory_budget : int
        Bytes of activations allowed for one batch of tiles (default 1 GiB).

    Returns
    -------
    float32 (*S, n_classes) or (N, *S, n_classes): the softmax of the logits, aligned pixel
    for pixel with `image`.

    Notes
    -----
    The image is mirrored by the margin on each side (more at the far end to fill whole
    tiles). Tile origins are multiples of the output tile size rounded down to the pooling
    grid (2**depth px, or per axis the product of its pooling factors), so neighbouring
    output tiles overlap by a few px and the result equals one pass over the whole
    mirrored image.

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
    from tqdm.auto import tqdm

    ndim, in_channels, n_classes, base_filters, pool_sizes = _model_geometry(model)
    images, is_stack = as_stack(image, ndim, in_channels, stack)  # (N, *S, C)
    check_int(memory_budget, "memory_budget (bytes)", minimum=1)
    if batch_size is not None:
        check_int(batch_size, "batch_size", minimum=1)
    tiles = _check_tile(tile_size, ndim, pool_sizes) if tile_size is not None else None
    plane = (ndim - 2, ndim - 1)  # TTA turns and flips the last two axes
    transforms = DIHEDRAL if tta else DIHEDRAL[:1]
    axis_pools = tuple(zip(*pool_sizes))
    if tta and axis_pools[-2] != axis_pools[-1]:
        raise ValueError(f"tta turns the last two axes by quarter turns, which needs the same pooling on both; "
                         f"this model pools them by {axis_pools[-2]} and {axis_pools[-1]}: predict with tta=False")

    plans = {}  # one plan per transformed shape: a quarter turn swaps the last two axes
    for k, flip in transforms:
        view_shape = dihedral(images[0, ..., 0], k, flip, axes=plane).shape
        if view_shape not in plans:
            plans[view_shape] = plan_tiles(view_shape, tiles or choose_tile_size(
                model, *view_shape, batch_size=batch_size or 1, memory_budget=memory_budget), pool_sizes=pool_sizes)
    total = len(images) * sum(plans[dihedral(images[0, ..., 0], k, f, axes=plane).shape].n_tiles
                              for k, f in transforms)
    per_tile = tile_bytes(plans[images.shape[1:-1]].tile, base_filters, in_channels)
    batch = batch_size or max(1, min(memory_budget // per_tile, total))
    check_memory(plans[images.shape[1:-1]].tile, base_filters, in_channels, batch)
    bar = tqdm(total=total, unit="tile", desc="predict_tiled",
               disable=(not progress) if progress is not None else (True if total <= 16 else None))

    shape = images.shape[1:-1]
    result = (np.zeros if tta else np.empty)((len(images), *shape, n_classes), np.float32)
    for i, img in enumerate(images):
        for k, flip in transforms:
            view = dihedral(img, k, flip, axes=plane)  # (*S', C)
            plan = plans[view.shape[:-1]]
            out = np.empty((*plan.shape, n_classes), np.float32) if tta else result[i]  # no copy without TTA
            predict_padded(model, mirror_pad(view, *zip(*plan.padding)), plan, out, batch, bar)
            if tta:
                result[i] += dihedral_inverse(out, k, flip, axes=plane)
    bar.close()
    if tta:
        result /= len(transforms)
    return result if is_stack else result[0]


def predict_cells(model, images, names=None, **options):
    """P(cell) of each image, one at a time: yields (name, (H, W) float32 in [0, 1]), or
    (name, (D, H, W)) for the volumes of a 3-D model.

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


def choose_tile_size(model, *shape, batch_size=1, memory_budget=DEFAULT_MEMORY_BUDGET):
    """The default input tile (one size per axis) for an image of spatial `shape` under a
    memory budget, e.g. ``choose_tile_size(model, height, width)``.

    The largest square (cubic) tile whose activations fit `memory_budget` bytes for
    `batch_size` tiles fixes how many tiles each axis needs; then each side shrinks to
    the smallest valid size that still covers the image with that many tiles (a 7 x 300
    image gets a flat tile, a small image one tile just big enough).
    """
    ndim, in_channels, _, base_filters, pool_sizes = _model_geometry(model)
    if len(shape) != ndim:
        raise ValueError(f"shape must give {ndim} sizes for a {ndim}-D model, got {shape}")
    pixels = max(memory_budget // (tile_bytes((1,) * ndim, base_filters, in_channels) * batch_size), 1)
    side = round(pixels ** (1 / ndim))  # the largest side with side**ndim <= pixels, exactly
    side -= side**ndim > pixels

    def shrink(length, p):  # smallest tile that needs no more tiles than the largest one that fits
        n_max = _smallest_tile(p)
        while (n := valid_input_size(n_max + 1, pool_sizes=p)) <= side:  # valid sizes are P_d apart
            n_max = n
        n = _smallest_tile(p)
        while _n_tiles(length, n, p) > _n_tiles(length, n_max, p):
            n = valid_input_size(n + 1, pool_sizes=p)
        return n

    return tuple(shrink(length, p) for length, p in zip(shape, zip(*pool_sizes)))
