"""Random training tiles and the tf.data pipeline: a fresh deformation and an exact weight
map for every sample.

The overlap-tile geometry at training time (paper, Fig. 2), replacing the notebook's four
fixed corners: per sample, `TileSampler` draws an image, the corner of the output crop (m px
per axis, m = output_size(n, ...)) inside it, and a random transform (elastic 3 x 3 grid,
shift, flip/rotation) and gray-value variation (`TileSampler.draw`); the tile is then
`unet_ref.tiles.training_tile` of these draws: the input window around the crop, warped and
mirrored where it leaves the image, the crop's cells and their exact weight map.

Two ways to make the same tile. sampler="plain" calls `training_tile`, the readable
definition (numpy, scipy, skimage; slow). sampler="fast" (the default) makes it from
tables kept per image, in compiled loops (`unet_ref.fast.tile`); tests/test_fast.py holds
the two equal, as stardist keeps its Python `star_dist` beside the C one.

Every sample's randomness comes from numpy.random.default_rng([seed, index]), so the same
seed gives the same batches however many parallel calls produce them.
"""
import pathlib

import numpy as np

from unet_ref.augment import random_gray_values, random_transform
from unet_ref.checks import check_int, check_spacing, per_axis
from unet_ref.datasets import read_image
from unet_ref.images import normalize_image
from unet_ref.masks import check_labels
from unet_ref.memory import check_label_region
from unet_ref.sizes import output_size, pool_factors
from unet_ref.tiles import training_tile

__all__ = ["TileSampler", "make_dataset", "PipelineError", "take_failure"]

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


class TileSampler:
    """Random training tiles (image (*n, C) float32, cells (*m) int32 {0, 1}, weights (*m)
    float32) from images and their labels: n = tile_size per axis, m its output size.

    Parameters
    ----------
    images : sequence of (*S) or (*S, C) arrays or image file paths, S = (H, W) or (D, H, W)
        Paths are decoded on first use (`unet_ref.datasets.read_image`).
    labels : sequence of (*S) int or bool arrays, or label file paths
        Instance labels (0 = membrane/background) or binary masks ({0, 255}, {0, 1},
        bool): the cells are their connected regions of equal value (`training_tile`).
    tile_size : int or tuple of int
        Network input size n, one for every axis or one per axis (a valid input size).
    depth, pool_sizes : the network's pooling, as `build_unet` takes it.
    spacing : float or sequence of float, optional
        Pixel (voxel) size per axis, e.g. (5, 1, 1) for sections 5 times thicker than a
        pixel: d1, d2, sigma and the context band are in these units, and the elastic
        deformation is isotropic in space (`random_transform`). Default 1 on every axis.
    augment : bool
        Elastic deformation, shift, flips/rotations and gray values; False gives plain
        mirrored crops (validation tiles).
    w0, sigma, class_balance : the weight map (paper: 10, 5, balanced w_c); w0 = 0 and
        class_balance=False weigh every pixel 1.
    seed : int
    cache : bool
        Keep decoded, normalised images (and the fast path's tables) in memory.
    elastic_sigma, grid : the elastic deformation (paper: 10 px on a 3 x 3 grid).
    sampler : "fast" (default) or "plain" (`unet_ref.tiles.training_tile`): the same tiles.
    """

    def __init__(self, images, labels, tile_size, depth=4, *, pool_sizes=None, spacing=None, augment=True, w0=10.0,
                 sigma=5.0, class_balance=True, seed=0, cache=True, elastic_sigma=10.0, grid=3, sampler="fast"):
        if len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"images and labels must be non-empty and of equal length, got "
                             f"{len(images)} images and {len(labels)} labels")
        if sampler not in ("fast", "plain"):
            raise ValueError(f"sampler must be 'fast' or 'plain', got {sampler!r}")
        self.images, self.labels = list(images), list(labels)
        self.augment, self.w0, self.sigma = bool(augment), float(w0), float(sigma)
        self.seed, self.class_balance = check_int(seed, "seed", minimum=0), bool(class_balance)
        self.cache, self.elastic_sigma, self.grid = bool(cache), float(elastic_sigma), int(grid)
        image, labels = self._read(0)
        self.ndim, self.channels = labels.ndim, image.shape[-1]
        self.pool_sizes = pool_factors(pool_sizes, depth, self.ndim)
        self.tile_shape = tuple(int(n) for n in per_axis(tile_size, self.ndim, "tile_size"))  # (n, n) or (z, y, x)
        self.output_shape = output_size(self.tile_shape, pool_sizes=self.pool_sizes)  # ValueError names valid sizes
        self.spacing = None if spacing is None else check_spacing(spacing, self.ndim)
        check_label_region(self.output_shape, self.spacing, w0, sigma)  # a spacing in the wrong units, at once
        self.sampler = sampler
        if sampler == "fast":  # the one place the fast path is chosen
            from unet_ref.fast.tile import FastTiles

            self._fast = FastTiles(self.tile_shape, self.output_shape, w0=self.w0, sigma=self.sigma,
                                   spacing=self.spacing, class_balance=self.class_balance)
        self._prepared = {}
        self._prepare(0, image, labels)

    def __len__(self):
        return len(self.images)

    def _read(self, i):
        """Image i as float32 (*S, C) in [0, 1] and its labels (*S), checked."""
        image, labels = self.images[i], self.labels[i]
        if isinstance(image, (str, pathlib.Path)):
            image = read_image(image)
        if isinstance(labels, (str, pathlib.Path)):
            labels = read_image(labels)
        image, labels = normalize_image(image, name=f"images[{i}]"), np.ascontiguousarray(labels)
        ndim = labels.ndim
        if ndim < 2 or image.ndim not in (ndim, ndim + 1) or image.shape[:ndim] != labels.shape:
            raise ValueError(f"images[{i}] {image.shape} and labels[{i}] {labels.shape} must be "
                             f"(H, W[, C]) and (H, W) of the same H, W (or (D, H, W[, C]) and (D, H, W))")
        labels = check_labels(labels, name=f"labels[{i}]")  # integer ids >= 0 (bool: a mask), native byte order
        return (image[..., None] if image.ndim == ndim else image), labels

    def _prepare(self, i, image, labels):
        prepared = self._fast.prepare(image, labels, self.augment) if self.sampler == "fast" else (image, labels)
        if self.cache:
            self._prepared[i] = prepared
        return prepared

    def draw(self, index):
        """The random parts of sample `index` (a function of (seed, index) only): the image,
        the output crop's corner in it, the `Transform` and the gray values (both None
        without augmentation)."""
        rng = np.random.default_rng([self.seed, int(index)])
        i = int(rng.integers(len(self.images)))
        shape = self._load(i)[1].shape  # of the labels (plain) or the cells (fast)
        # the output crop's corner, inside the image (a crop larger than the image mirrors)
        corner = tuple(int(rng.integers(max(length - m, 0) + 1)) for length, m in zip(shape, self.output_shape))
        if not self.augment:
            return i, corner, None, None
        transform = random_transform(shape, rng, sigma=self.elastic_sigma, grid=self.grid, spacing=self.spacing)
        return i, corner, transform, random_gray_values(rng)

    def _load(self, i):
        return self._prepared[i] if i in self._prepared else self._prepare(i, *self._read(i))

    def sample(self, index):
        """The tile triple (image, cells, weights) for sample `index`."""
        i, corner, transform, gray = self.draw(index)
        if self.sampler == "fast":
            return self._fast.tile(self._load(i), corner, transform, gray)
        image, labels = self._load(i)
        return training_tile(image, labels, corner, self.tile_shape, self.output_shape, transform, gray, w0=self.w0,
                             sigma=self.sigma, spacing=self.spacing, class_balance=self.class_balance)


def make_dataset(images, labels, *, tile_size, depth=4, pool_sizes=None, batch_size=1, augment=True, seed=0,
                 w0=10.0, sigma=5.0, cache=True, num_tiles=None, num_parallel_calls=None, prefetch=None,
                 sampler="fast", **sampler_options):
    """An infinite `tf.data.Dataset` of batches for `model.fit`.

    Yields `(image_tile (B, n, n, C) float32, label_tile (B, m, m) int32 in {0, 1},
    weight_tile (B, m, m) float32)` with m = output_size(n, depth); Keras takes the third
    element as the per-pixel sample_weight. Arguments as in `TileSampler`. Element i is
    `TileSampler.sample(i)`, in order, so the same seed gives the same stream; Keras keeps
    one iterator across epochs, so every epoch draws fresh tiles. `num_tiles` (a multiple of
    `batch_size`) instead cycles through samples 0..num_tiles-1: a fixed validation set.
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

    source = TileSampler(images, labels, tile_size, depth, pool_sizes=pool_sizes, augment=augment, w0=w0,
                          sigma=sigma, seed=seed, cache=cache, sampler=sampler, **sampler_options)
    n, m, channels = source.tile_shape, source.output_shape, source.channels  # per axis
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    autotune = tf.data.AUTOTUNE

    def sample_batch(indices):  # (B,) sample indices -> numpy arrays (B, ...)
        try:
            return tuple(np.stack(parts) for parts in zip(*(source.sample(i) for i in indices)))
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
