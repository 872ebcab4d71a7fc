"""Training tiles and the tf.data pipeline: fresh deformation, exact weight map, every sample.

The overlap-tile geometry at training time (paper, Fig. 2), replacing the notebook's four
fixed corners: an output crop of m x m px, m = output_size(n, depth), is placed at a
random position of the image, and the input tile is the n x n window around it, mirrored
where it leaves the image. Per sample (`TileSampler.sample`):

1. draw an image and a `random_transform` (elastic 3 x 3 grid, shift, flip/rotation);
2. warp the image on the input window (cubic) and the image's cells on the output crop
   plus `context` px on each side (nearest). The cells are the image's connected regions
   of equal id (`split_regions`, once per image). Beyond an image border the mirrored
   image shows a copy of each cell; as the network sees it, the copy is a cell of its own
   unless the cell crosses that border (`border_crossings`). `warp_cells` numbers the
   cells of the mirrored image as it samples them;
3. weight map of the output crop from the warped labels, the band around it as context
   (`weight_map(labels=..., window=crop)`, exact d1/d2);
4. flip / rotate the image tile and, alike, the crop's labels and weights. Steps 2-3 run
   in the image's orientation, where `spacing` holds (pixels wider than tall keep their
   widths), and turning the small crop costs less than turning the label region.

Why a context band: d1/d2 of a pixel near the crop border depend on cells outside the
crop. With `context` >= sigma sqrt(2 ln(w0 / 1e-6)) (29 px for w0 = 10, sigma = 5) every
pixel whose border term exceeds 1e-6 has both its nearest cells inside the region, so
the weights equal those of the whole warped image to 1e-6. For depth 4 the region
(m + 58 px) is much smaller than the input window (m + 184 px): warping and weighting
the cells costs less than warping the image. A cell that leaves the region and
comes back keeps its number: the cells are numbered in the whole mirrored image, not in
the region (the first version relabelled the warped region, which split such a cell in
two). Of the region only the pixels within `context` of the crop are sampled
(`context_spans`), the others are background: no farther pixel is the nearest or second
nearest cell of a crop pixel whose border term reaches 1e-6. For shallow 3-D networks the
region is larger than the input window (3.3 x for the `tutorial3d` preset, two thirds of
it sampled), the price of exact weights.

Class weights w_c are computed once per image from its un-warped labels (not per tile):
a small tile inside one big cell would otherwise swing w_c from tile to tile, and the
deformation barely changes the class frequencies of an image.

Every sample's randomness comes from numpy.random.default_rng([seed, index]), so the
same seed gives the same batches however many parallel calls produce them.
"""
import math
import pathlib

import numpy as np

from unet_ref.augment import (PositionField, dihedral, position_field, random_transform, spline_coefficients,
                              vary_gray_values, warp)
from unet_ref import _warp
from unet_ref.checks import check_int, check_spacing
from unet_ref.datasets import read_image
from unet_ref.images import normalize_image
from unet_ref.masks import border_crossings, check_labels, split_regions
from unet_ref.sizes import output_size, pool_factors
from unet_ref.weights import balanced_class_weights, weight_context, weight_map

__all__ = ["TileSampler", "make_dataset", "warp_cells", "context_spans", "weight_context", "PipelineError",
           "take_failure"]

# Exceptions raised while a tf.data worker made a sample, oldest first. TensorFlow reports
# them as an InvalidArgumentError holding a Python traceback; the trainer takes the first
# one (`take_failure`) to say in one line what went wrong.
_failures = []


class PipelineError(RuntimeError):
    """The training data pipeline failed while making a sample (the original exception is
    the __cause__)."""


def take_failure():
    """The first exception raised inside a sampler of `make_dataset` since the last call,
    or None; forgets the others."""
    first = _failures[0] if _failures else None
    _failures.clear()
    return first


def warp_cells(cells, crossings, positions, spans=None):
    """The cells of the mirrored image at `positions` ((ndim, *size) array or
    `PositionField`), nearest sample: int64 ids, one per cell of the mirrored image (a copy
    of a cell beyond a border it does not cross is another cell), 0 = background.

    cells: the image's connected regions 1..n (`split_regions`), crossings: their
    `border_crossings`. Equal, as a partition, to the connected regions of equal id of
    the labels mirrored far enough and warped (tests/test_pipeline.py). spans, optional:
    sample only these pixels of each row, the others are background (`context_spans`).
    """
    cells, crossings = np.asarray(cells), np.asarray(crossings)
    ndim = cells.ndim
    if ndim not in (2, 3) or cells.dtype != np.int32:
        raise ValueError(f"cells must be a 2-D or 3-D int32 array of regions (split_regions), got "
                         f"{cells.dtype} {cells.shape}")
    if crossings.dtype != np.uint8 or crossings.ndim != 1 or crossings.size == 0:
        raise ValueError(f"crossings must be the uint8 border_crossings of cells, got {crossings.dtype} "
                         f"{crossings.shape}")
    volume = np.ascontiguousarray(cells).reshape((1,) * (3 - ndim) + cells.shape)
    # an image is a volume of one plane: its border bits move from axis a to axis a + 1
    crossings = crossings if ndim == 3 else (crossings.astype(np.int32) << 2 * (3 - ndim)).astype(np.uint8)
    if isinstance(positions, PositionField):  # computed a row at a time
        if positions.ndim != ndim:
            raise ValueError(f"positions must be of a {ndim}-D window, got a field of size {positions.size}")
        size, rows = positions.size, positions.kernel_args()
    else:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != ndim + 1 or positions.shape[0] != ndim:
            raise ValueError(f"positions must be a ({ndim}, *size) array, got shape {positions.shape}")
        size = positions.shape[1:]
        rows = positions.reshape(ndim, *((1,) * (3 - ndim) + size))
    out = np.empty((1,) * (3 - ndim) + size, np.int64)
    if spans is not None:
        spans = np.asarray(spans)
        if spans.shape != (*size[:-1], 2) or spans.dtype.kind not in "iu" or (
                spans.size and not (0 <= spans[..., 0].min() and (spans[..., 0] <= spans[..., 1]).all()
                                    and spans[..., 1].max() <= size[-1])):
            raise ValueError(f"spans must be an integer {(*size[:-1], 2)} array of 0 <= start <= stop <= "
                             f"{size[-1]} per row, got {spans.dtype} {spans.shape}")
        spans = np.ascontiguousarray(spans, dtype=np.intp).reshape(*out.shape[:2], 2)
    status = _warp.cell_sample(volume, crossings, rows, out, spans)
    if status == 1:
        raise ValueError(f"positions must be a finite ({ndim}, *size) array: found NaN or infinity")
    if status == 2:
        raise ValueError("positions lie more than 500 image lengths beyond the image: is the deformation "
                         "(elastic_sigma, max_shift) in pixels?")
    if status == 4:
        raise ValueError(f"cells must hold regions 0..{crossings.size - 1}, one entry of crossings each "
                         f"(border_crossings of the same cells): found a region outside")
    if status == 3:
        raise MemoryError("no memory for the tables of warp_cells")
    return out.reshape(size)


def context_spans(shape, crop, reach, spacing=None):
    """Which pixels of a label region lie within `reach` of its output crop: per row, the
    pixels start .. stop - 1, as an (*shape[:-1], 2) int array.

    shape: the region's shape; crop: one slice per axis; reach and spacing as in
    `weight_map` (distances in the units of `spacing`, default 1 per axis). A pixel of the
    region further than `weight_context` from every crop pixel is never the nearest or
    second nearest cell of a crop pixel whose border term reaches 1e-6, so it need not be
    sampled: in 3-D that skips the region's edges and corners, a third of its voxels.
    """
    if len(crop) != len(shape) or not all(isinstance(s, slice) and 0 <= s.start <= s.stop <= n
                                          for s, n in zip(crop, shape)):
        raise ValueError(f"crop must be one slice within the shape {tuple(shape)} per axis, got {crop!r}")
    if not (np.isfinite(reach) and reach >= 0):
        raise ValueError(f"reach must be a finite number >= 0, got {reach!r}")
    spacing = np.ones(len(shape)) if spacing is None else np.asarray(spacing, dtype=np.float64)
    # squared distance from each row to the crop along the axes but the last
    squared = np.zeros(shape[:-1])
    for axis, (length, window) in enumerate(zip(shape[:-1], crop[:-1])):
        index = np.arange(length)
        gap = np.maximum(np.maximum(window.start - index, index - (window.stop - 1)), 0) * spacing[axis]
        squared = squared + (gap**2).reshape((-1,) + (1,) * (len(shape) - 2 - axis))
    left = reach**2 - squared  # < 0: the whole row is too far
    half = np.floor(np.sqrt(np.maximum(left, 0)) / spacing[-1] + 1e-9).astype(np.intp)
    start = np.where(left >= 0, np.clip(crop[-1].start - half, 0, shape[-1]), 0)
    stop = np.where(left >= 0, np.clip(crop[-1].stop + half, 0, shape[-1]), 0)
    return np.stack([start, stop], axis=-1)


class TileSampler:
    """Random training tiles (image (n, n, C) float32, labels (m, m) int32 {0, 1},
    weights (m, m) float32) from images and their instance labels; for volumes
    (D, H, W) the tiles are cubes, (n, n, n, C) and (m, m, m).

    Parameters
    ----------
    images : sequence of (H, W) or (H, W, C) arrays, or of image file paths
        Paths are decoded on first use (`unet_ref.datasets.read_image`).
    labels : sequence of (H, W) int or bool arrays, or label file paths
        Instance labels (0 = membrane/background) or binary masks ({0, 255}, {0, 1},
        bool). The cells are the connected regions of equal value (8-connected in 2-D,
        26 in 3-D), found once per image, so a mask's cells are its connected components,
        as in `weight_map(mask)`; beyond an image border a cell's mirrored copy is a cell
        of its own unless the cell crosses that border (`warp_cells`).
    tile_size : int or tuple of int
        Network input size n (a valid size for `depth`), or one per axis, e.g. (z, y, x)
        for a volume pooled anisotropically.
    depth : int
    pool_sizes : sequence, optional
        Pooling factors per level (and axis) of the network, as `build_unet` takes them;
        default 2 everywhere. They fix the valid tile sizes and the output crop.
    spacing : float or sequence of float, optional
        Pixel (voxel) spacing per axis for the weight map's distances d1, d2, as
        `weight_map` takes it, e.g. (5, 1, 1) for sections 5 times thicker than a pixel;
        `sigma` is then in these units and the context band is measured in them too.
        The elastic deformation becomes isotropic in space (`random_transform`):
        `elastic_sigma` px along the finest axis, fewer along thicker ones. Default 1 on
        every axis.
    augment : bool
        Elastic deformation, shift, flips/rotations and gray values; False gives plain
        mirrored crops (validation tiles).
    w0, sigma : float
        Weight map parameters (paper: 10, 5); w0 = 0 leaves only the class weights.
    class_balance : bool
        w_c balances the class frequencies of each image (paper); False: w_c = 1, so with
        w0 = 0 every pixel weighs 1 (the plain cross-entropy).
    seed : int
    cache : bool
        Keep decoded, normalised images (and their spline coefficients) in memory.
    elastic_sigma, grid : float, int
        Elastic deformation (paper: 10 px on a 3 x 3 grid; with `spacing`, px along the
        finest axis).
    """

    def __init__(self, images, labels, tile_size, depth=4, *, pool_sizes=None, spacing=None, augment=True, w0=10.0,
                 sigma=5.0, class_balance=True, seed=0, cache=True, elastic_sigma=10.0, grid=3):
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"images and labels must be non-empty and of equal length, got "
                             f"{len(images)} images and {len(labels)} labels")
        check_int(seed, "seed", minimum=0)
        # label region: the output crop + context px per side; it and the input window
        # (n = m + 2 margin) are concentric, so one position map covers both
        self.context = weight_context(w0, sigma)
        self.images, self.labels = list(images), list(labels)
        self.augment, self.w0, self.sigma, self.seed = bool(augment), float(w0), float(sigma), int(seed)
        self.class_balance = bool(class_balance)
        self.cache, self.elastic_sigma, self.grid = bool(cache), float(elastic_sigma), int(grid)
        self._decoded = {}
        self._spans = (None, None)  # ((context, context_px), their context_spans)
        first = self._load(0)
        self.ndim, self.channels = first[1].ndim, first[0].shape[-1]
        tiles = (tile_size,) * self.ndim if isinstance(tile_size, (int, np.integer)) else tuple(tile_size)
        if len(tiles) != self.ndim:
            raise ValueError(f"tile_size must be an int or {self.ndim} ints for {self.ndim}-D images, got {tile_size!r}")
        self.depth = int(depth)
        self.pool_sizes = pool_factors(pool_sizes, self.depth, self.ndim)
        self.tile_shape = tuple(int(n) for n in tiles)  # (n, n) or (z, y, x)
        self.output_shape = output_size(self.tile_shape, pool_sizes=self.pool_sizes)  # ValueError names valid sizes
        # the context band in px per axis: `context` in units of the spacing (thick sections: fewer px along z)
        self.spacing = None if spacing is None else check_spacing(spacing, self.ndim)
        self.context_px = tuple(math.ceil(self.context / s) for s in (self.spacing or (1.0,) * self.ndim))
        # the scalar names of the 2-D pipeline, for square (cubic) tiles
        self.tile_size, self.output_size = self.tile_shape[-1], self.output_shape[-1]

    def __len__(self):
        return len(self.images)

    def _load(self, i):
        """(spline coefficients or image (*S, C) float, cells (*S) int32 numbered 1..n, their
        `border_crossings`, w_c) of image i."""
        if i in self._decoded:
            return self._decoded[i]
        image, labels = self.images[i], self.labels[i]
        if isinstance(image, (str, pathlib.Path)):
            image = read_image(image)
        if isinstance(labels, (str, pathlib.Path)):
            labels = read_image(labels)
        # contiguous labels: every tile looks its ids up in the flattened array
        image, labels = normalize_image(image, name=f"images[{i}]"), np.ascontiguousarray(labels)
        ndim = labels.ndim
        if ndim < 2 or image.ndim not in (ndim, ndim + 1) or image.shape[:ndim] != labels.shape:
            raise ValueError(f"images[{i}] {image.shape} and labels[{i}] {labels.shape} must be "
                             f"(H, W[, C]) and (H, W) of the same H, W (or (D, H, W[, C]) and (D, H, W))")
        labels = check_labels(labels, name=f"labels[{i}]")  # integer ids >= 0 (bool: a mask), native byte order
        if image.ndim == ndim:
            image = image[..., None]  # (*S, 1)
        class_weights = balanced_class_weights(labels > 0) if self.class_balance else (1.0, 1.0)
        cells = split_regions(labels)  # connected regions of equal id, as the network sees them
        entry = (spline_coefficients(image, ndim) if self.augment else image, cells, border_crossings(cells),
                 class_weights)
        if self.cache:
            self._decoded[i] = entry
        return entry

    def _weight_map(self, region, class_weights, window):
        """float32 weights of the `window` of an instance-label region (benchmarks swap in
        the reference)."""
        # one thread per sample: tf.data already runs samples in parallel
        return weight_map(labels=region, w0=self.w0, sigma=self.sigma, class_weights=class_weights,
                          window=window, spacing=self.spacing, num_threads=1)

    def sample(self, index):
        """The tile triple for sample `index` (a function of (seed, index) only)."""
        rng = np.random.default_rng([self.seed, int(index)])
        coefficients, cells, crossings, class_weights = self._load(int(rng.integers(len(self.images))))
        shape = cells.shape
        n, m, c = self.tile_shape, self.output_shape, self.context_px  # per axis
        # the output crop's corner, inside the image (a crop larger than the image mirrors)
        corner = tuple(int(rng.integers(max(length - mk, 0) + 1)) for length, mk in zip(shape, m))
        if self.augment:
            transform = random_transform(shape, rng, sigma=self.elastic_sigma, grid=self.grid, spacing=self.spacing)
        else:
            transform = random_transform(shape, rng, sigma=0.0, max_shift=0.0, flips=False)
        # one position map for the larger of the label region and the input window; both
        # are centred on the output crop, so flips and rotations keep them aligned
        big = tuple(max(nk, mk + 2 * ck) for nk, mk, ck in zip(n, m, c))
        positions = position_field(transform, tuple(k - (b - mk) // 2 for k, b, mk in zip(corner, big, m)), big,
                                   self.augment)  # (ndim, *big), computed a row at a time by the loops
        window = tuple(slice((b - nk) // 2, (b - nk) // 2 + nk) for b, nk in zip(big, n))
        around = tuple(slice((b - mk) // 2 - ck, (b - mk) // 2 + mk + ck) for b, mk, ck in zip(big, m, c))
        image = warp(coefficients, transform, order=3 if self.augment else 0, prefiltered=True,
                     positions=positions.window(window))  # (*n, C)
        # the cells in the image's orientation: weighed there (where `spacing` holds), then
        # the small crop is flipped / rotated like the image
        crop = tuple(slice(ck, ck + mk) for mk, ck in zip(m, c))  # in the region
        # (only the pixels within `context` of the crop: the others are never a crop
        # pixel's nearest or second nearest cell where its border term reaches 1e-6). The
        # spans are the same for every sample: computed again only if the context changes
        if self._spans[0] != (self.context, c):
            self._spans = ((self.context, c), context_spans(tuple(mk + 2 * ck for mk, ck in zip(m, c)), crop,
                                                            self.context, self.spacing))
        region = warp_cells(cells, crossings, positions.window(around), self._spans[1])
        weights = self._weight_map(region, class_weights, crop)  # (m, ..., m), the region as context
        cells = (region[crop] > 0).astype(np.int32)  # class 1 = cell (unet_ref.masks.CELL_CLASS)
        turn = dict(rot90=transform.rot90, flip=transform.flip, axes=(self.ndim - 2, self.ndim - 1))
        cells, weights = (np.ascontiguousarray(dihedral(a, **turn)) for a in (cells, weights))
        if self.augment:
            image = vary_gray_values(image, rng)
        return image.astype(np.float32, copy=False), cells, weights


def make_dataset(images, labels, *, tile_size, depth=4, pool_sizes=None, batch_size=1, augment=True, seed=0,
                 w0=10.0, sigma=5.0, cache=True, num_tiles=None, num_parallel_calls=None, prefetch=None,
                 **sampler_options):
    """An infinite `tf.data.Dataset` of batches for `model.fit`.

    Yields `(image_tile (B, n, n, C) float32, label_tile (B, m, m) int32 in {0, 1},
    weight_tile (B, m, m) float32)` with m = output_size(n, depth); Keras takes the third
    element as the per-pixel sample_weight. Arguments as in `TileSampler`. The stream is
    the same for the same seed (element i is `TileSampler.sample(i)`, in order). Keras
    keeps one iterator across epochs when `steps_per_epoch` / `validation_steps` is given,
    so every epoch draws fresh tiles. `num_tiles` (a multiple of `batch_size`) instead
    cycles through samples 0..num_tiles-1: a fixed validation set, e.g.
    `num_tiles=validation_steps * batch_size` with `augment=False`, so that val_loss is
    comparable between epochs.

    `num_parallel_calls` and `prefetch` default to tf.data.AUTOTUNE.

    Iterators you create yourself: let them go (`del iterator`) before the interpreter
    exits. An iterator still alive at exit is destroyed while the process shuts down,
    when its in-flight `tf.numpy_function` calls can no longer take the GIL, and the
    process can hang (a TensorFlow limitation; `fit` cleans up its own iterators).

    Examples
    --------
    >>> from unet_ref.synthetic import synthetic_dataset
    >>> images, labels = synthetic_dataset(2, size=64)
    >>> data = make_dataset(images, labels, tile_size=44, depth=1, batch_size=2)
    >>> [tuple(t.shape) for t in next(iter(data))]
    [(2, 44, 44, 1), (2, 28, 28), (2, 28, 28)]
    """
    import tensorflow as tf

    sampler = TileSampler(images, labels, tile_size, depth, pool_sizes=pool_sizes, augment=augment, w0=w0,
                          sigma=sigma, seed=seed, cache=cache, **sampler_options)
    n, m, channels = sampler.tile_shape, sampler.output_shape, sampler.channels  # per axis
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    autotune = tf.data.AUTOTUNE

    def sample_batch(indices):  # (B,) sample indices -> numpy arrays (B, ...)
        try:
            return tuple(np.stack(parts) for parts in zip(*(sampler.sample(i) for i in indices)))
        except Exception as error:
            _failures.append(error)  # for take_failure: TensorFlow only keeps its text
            raise

    def tiles(indices):
        # one Python call per batch, not per tile: less tf.data overhead per tile
        image, label, weight = tf.numpy_function(
            sample_batch, [indices], [tf.float32, tf.int32, tf.float32], stateful=False)
        image.set_shape((batch_size,) + n + (channels,))  # (B, n, n, C)
        label.set_shape((batch_size,) + m)  # (B, m, m)
        weight.set_shape((batch_size,) + m)  # (B, m, m)
        return image, label, weight

    if num_tiles is None:
        data = tf.data.Dataset.counter()  # 0, 1, 2, ...: the per-sample seeds
    elif isinstance(num_tiles, (int, np.integer)) and num_tiles > 0 and num_tiles % batch_size == 0:
        data = tf.data.Dataset.range(int(num_tiles)).repeat()
    else:
        raise ValueError(f"num_tiles must be None or a positive multiple of batch_size={batch_size}, got {num_tiles!r}")
    data = data.batch(batch_size, drop_remainder=True)  # batch b holds samples b B .. b B + B - 1
    data = data.map(tiles, num_parallel_calls=num_parallel_calls or autotune, deterministic=True)
    return data.prefetch(prefetch or autotune)
