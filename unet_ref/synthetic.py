"""Synthetic EM-like images with exact instance labels: the default data, no download.

A sample imitates an ISBI 2012 slice (serial-section TEM of neural tissue, 512 x 512 px,
about 100-136 cells, 20-27 % membrane):

1. Cells are a random tessellation: the Voronoi cells of random seed points whose density
   varies slowly (big and small cells side by side), with the cell map warped by a smooth
   random displacement so that boundaries wiggle instead of being straight.
2. Membranes are the pixels closer to a cell boundary than a slowly varying half-width
   (1-3.5 px, so membranes are 3-8 px thick, like ISBI's). Every boundary pixel is
   membrane, so two different cells never touch, not even diagonally: the 8-connected
   components of the mask are exactly the cells, as `weight_map(mask)` will see them.
3. The image: per-cell gray level, grainy texture, dark blurred membranes, dark
   mitochondria-like ellipses and vesicle dots *inside* cells (ISBI labels them as cell,
   so the network must learn that not every dark blob is membrane), slow illumination
   change, blur and noise.

Returned arrays follow the ISBI convention: mask uint8 {0, 255} with 255 = cell and 0 =
membrane, instance labels int32 with 0 = membrane and ids 1..n numbered like
`scipy.ndimage.label` with 8-connectivity, so mask == (labels > 0) * 255 and
`ndimage.label(mask, 8-connected)` returns `labels` itself.

Volumes (`synthetic_volume`, the default data of the 3-D U-Net): the same recipe in 3-D
with the same helpers: a warped Voronoi tessellation of space into cells about 20 voxels
across with dark membranes 3-5 voxels thick (about 30 % of the voxels), so that sections
through it look like EM slices. Labels are the 26-connected components of the mask.
"""
import numbers

import numpy as np
from scipy import ndimage

from unet_ref.checks import check_int
from unet_ref.masks import label_cells

__all__ = ["synthetic_sample", "touching_cells_sample", "synthetic_volume", "synthetic_dataset",
           "synthetic_volumes", "KINDS"]

CELLS_PER_MEGAPIXEL = 125 / (512 * 512) * 1e6  # ISBI slices: ~100-136 cells per 512 x 512
MIN_CELL_AREA = 20  # px; smaller slivers left by the warp become membrane


def _shape(size):
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size)):
        raise TypeError(f"size must be an int or a (height, width) pair of ints, got {size!r}")
    if min(size) < 16:
        raise ValueError(f"size must be at least 16 x 16 px (a few cells), got {tuple(size)}")
    return int(size[0]), int(size[1])


def _rng(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(check_int(seed, "seed (an int, None or a numpy Generator)", minimum=0))


def _smooth_field(rng, shape, scale):
    """Random field (any number of axes) with features of about `scale` px and unit
    standard deviation.

    Cubic zoom of a coarse Gaussian grid: cheap, and smooth at every pixel."""
    coarse = rng.standard_normal(tuple(n // scale + 2 for n in shape))
    field = ndimage.zoom(coarse, scale, order=3, mode="mirror")[tuple(slice(0, n) for n in shape)]
    return (field - field.mean()) / (field.std() + 1e-12)


def _tessellation(rng, shape):
    """Warped Voronoi cell ids (H, W) int32 of seed points with a varying density."""
    h, w = shape
    density = np.exp(0.9 * _smooth_field(rng, shape, 128))  # big and small cells side by side
    n_seeds = max(2, rng.poisson(1.05 * CELLS_PER_MEGAPIXEL * h * w / 1e6))  # some get dropped later
    flat = rng.choice(h * w, size=n_seeds, replace=False, p=(density / density.sum()).ravel())
    seeds = np.ones(shape, bool)
    seeds.flat[flat] = False
    # nearest seed of every pixel, by the Euclidean distance transform's index output
    iy, ix = ndimage.distance_transform_edt(seeds, return_distances=False, return_indices=True)
    ids = np.zeros(shape, np.int32)
    ids.flat[flat] = np.arange(1, n_seeds + 1, dtype=np.int32)
    ids = ids[iy, ix]
    # wavy membranes: read the cell map through a smooth displacement (nearest: ids stay ids)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    amplitude = 4.0
    warp = [yy + amplitude * _smooth_field(rng, shape, 24), xx + amplitude * _smooth_field(rng, shape, 24)]
    return ndimage.map_coordinates(ids, warp, order=0, mode="nearest")


def _boundary(ids):
    """Pixels (voxels) with a face neighbour in another cell; marking both sides leaves no
    diagonal contact between different cells (see the module docstring)."""
    boundary = np.zeros(ids.shape, bool)
    for axis in range(ids.ndim):
        before, after = [slice(None)] * ids.ndim, [slice(None)] * ids.ndim
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        differ = ids[tuple(after)] != ids[tuple(before)]
        boundary[tuple(after)] |= differ
        boundary[tuple(before)] |= differ
    return boundary


def _cells(rng, ids, min_area=MIN_CELL_AREA):
    """Instance labels int32 after carving membranes out of the tessellation."""
    boundary = _boundary(ids)
    half_width = 2.25 + 1.25 * np.tanh(_smooth_field(rng, ids.shape, 48))  # 1-3.5 px
    cells = ndimage.distance_transform_edt(~boundary) >= half_width
    labels = label_cells(cells)  # 8-connected, as weight_map(mask) labels the mask
    area = np.bincount(labels.ravel())
    small = area < min_area
    small[0] = False
    if small.any():
        labels = label_cells(cells & ~small[labels])
    return labels


def _organelles(rng, labels):
    """Darkening (H, W) float32 from mitochondria-like ellipses and vesicle dots in cells."""
    h, w = labels.shape
    inside = ndimage.distance_transform_edt(labels > 0)  # distance to the nearest membrane
    dark = np.zeros(labels.shape, np.float32)
    # mitochondria: dark ellipses with a lighter rim, kept 3 px away from the membrane
    n_mito = rng.poisson(12 * h * w / 512**2)
    yx = np.argwhere(inside > 10)
    for _ in range(n_mito if len(yx) else 0):
        cy, cx = yx[rng.integers(len(yx))]
        a, b = rng.uniform(8, 20), rng.uniform(5, 10)
        theta = rng.uniform(0, np.pi)
        r = int(np.ceil(a)) + 1
        y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, h), max(cx - r, 0), min(cx + r + 1, w)
        dy, dx = np.mgrid[y0 - cy:y1 - cy, x0 - cx:x1 - cx]
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        ellipse = (u * u + v * v <= 1) & (labels[y0:y1, x0:x1] == labels[cy, cx]) & (inside[y0:y1, x0:x1] > 3)
        dark[y0:y1, x0:x1] += ellipse * rng.uniform(60, 90)
    # vesicles: clusters of small dark dots
    n_vesicles = rng.poisson(400 * h * w / 512**2)
    centres = rng.integers(0, [h, w], size=(max(1, n_vesicles // 12), 2))
    dots = (centres[rng.integers(len(centres), size=n_vesicles)] + rng.normal(0, 7, (n_vesicles, 2))).astype(int)
    dots = dots[(dots >= 0).all(1) & (dots[:, 0] < h) & (dots[:, 1] < w)]
    impulses = np.zeros(labels.shape, np.float32)
    np.add.at(impulses, (dots[:, 0], dots[:, 1]), 1.0)
    impulses *= inside > 2
    dark += 500 * ndimage.gaussian_filter(impulses, 1.5)
    return dark


def synthetic_sample(size=512, seed=None):
    """One synthetic EM-like image with its binary mask and instance labels.

    Parameters
    ----------
    size : int or (int, int)
        Height and width in px (at least 16). ISBI slices are 512 x 512.
    seed : int, None or numpy.random.Generator
        The same int gives the same sample; a Generator is drawn from (and advanced).

    Returns
    -------
    image : (H, W) uint8
        Gray EM-like image: bright grainy cells, dark membranes.
    mask : (H, W) uint8
        255 = cell, 0 = membrane (the ISBI convention); equals (labels > 0) * 255.
    labels : (H, W) int32
        0 = membrane, cells 1..n. Every cell is one 8-connected component and no two cells
        are 8-adjacent, so labelling `mask` with 8-connectivity returns `labels` exactly.

    Examples
    --------
    >>> image, mask, labels = synthetic_sample(128, seed=0)
    >>> image.dtype, mask.dtype, labels.dtype, image.shape
    (dtype('uint8'), dtype('uint8'), dtype('int32'), (128, 128))
    >>> bool(np.array_equal(mask, (labels > 0) * 255))
    True
    """
    shape = _shape(size)
    rng = _rng(seed)
    labels = _cells(rng, _tessellation(rng, shape))
    n = int(labels.max())
    cells = labels > 0
    # gray levels: per cell, plus slow illumination change and grainy texture
    cell_level = np.concatenate([[150.0], rng.normal(150, 8, n)]).astype(np.float32)  # [0]: membrane
    image = cell_level[labels] + 15 * _smooth_field(rng, shape, 160)
    grain = rng.standard_normal(shape).astype(np.float32)
    image += 30 * ndimage.gaussian_filter(grain, 0.9) + 120 * ndimage.gaussian_filter(grain, 2.5)
    image -= _organelles(rng, labels)
    # membranes: dark, with soft edges (the membrane profile in ISBI is blurred by a few px)
    membrane = ndimage.gaussian_filter((~cells).astype(np.float32), 1.2)
    image = image * (1 - 0.5 * membrane) + 10 * membrane * _smooth_field(rng, shape, 32)
    image = ndimage.gaussian_filter(image, 0.8) + rng.normal(0, 7, shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    mask = cells.astype(np.uint8) * np.uint8(255)
    return image, mask, labels


def touching_cells_sample(size=256, seed=None):
    """Cells touching along long borders, separated only by a faint boundary: the case the
    paper's border weight was made for (its Fig. 3, HeLa cells in DIC microscopy).

    Clusters of large cells (about 40-70 px across) on a darker background: a warped
    Voronoi partition of smooth blobs. Where two cells touch, the image shows only a faint
    dark line (about a quarter of the cell/background contrast, under noise) while the
    label has a 2 px gap of background (like the paper's generated masks), which the
    network must learn to draw.

    Returns (image uint8, mask uint8 {0, 255}, labels int32) as `synthetic_sample`; every
    cell is one 8-connected component of the mask and no two cells are 8-adjacent.

    >>> image, mask, labels = touching_cells_sample(96, seed=0)
    >>> bool(np.array_equal(mask, (labels > 0) * 255)), int(labels.max()) > 1
    (True, True)
    """
    shape = _shape(size)
    rng = _rng(seed)
    h, w = shape
    blobs = _smooth_field(rng, shape, 64) > -0.15  # ~55 % of the image covered by cell clusters
    n_seeds = max(2, rng.poisson(h * w / 45**2))
    flat = rng.choice(h * w, size=n_seeds, replace=False)
    seeds = np.ones(shape, bool)
    seeds.flat[flat] = False
    iy, ix = ndimage.distance_transform_edt(seeds, return_distances=False, return_indices=True)
    ids = np.zeros(shape, np.int32)
    ids.flat[flat] = np.arange(1, n_seeds + 1, dtype=np.int32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    warp = [yy + 5 * _smooth_field(rng, shape, 32), xx + 5 * _smooth_field(rng, shape, 32)]
    ids = ndimage.map_coordinates(ids[iy, ix], warp, order=0, mode="nearest") * blobs
    # a 2 px gap between touching cells: both sides of every 4-adjacent pair of two cells
    differ_y = (ids[1:] != ids[:-1]) & (ids[1:] > 0) & (ids[:-1] > 0)
    differ_x = (ids[:, 1:] != ids[:, :-1]) & (ids[:, 1:] > 0) & (ids[:, :-1] > 0)
    gap = np.zeros(shape, bool)
    gap[1:] |= differ_y
    gap[:-1] |= differ_y
    gap[:, 1:] |= differ_x
    gap[:, :-1] |= differ_x
    labels = label_cells((ids > 0) & ~gap)
    area = np.bincount(labels.ravel())
    small = area < 4 * MIN_CELL_AREA
    small[0] = False
    labels = label_cells((labels > 0) & ~small[labels])
    cells = labels > 0
    # image: bright textured cells on a dark smooth background, a crisp cell/background
    # edge, and between touching cells only a faint line
    clusters = (ids > 0) & ndimage.binary_dilation(cells, iterations=2)  # cells and the gaps between them
    body = ndimage.gaussian_filter(clusters.astype(np.float32), 2.0)
    level = np.concatenate([[0.0], rng.normal(0, 6, int(labels.max()))]).astype(np.float32)  # per cell
    image = 70 + 10 * _smooth_field(rng, shape, 128) + (80 + level[labels]) * body
    image += 12 * ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.0) * body
    image -= 30 * ndimage.gaussian_filter((gap & clusters).astype(np.float32), 0.7)  # the faint boundary
    image += rng.normal(0, 7, shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, cells.astype(np.uint8) * np.uint8(255), labels


def synthetic_volume(shape=(32, 64, 64), seed=None):
    """One synthetic EM-like volume with its binary mask and instance labels.

    A 3-D warped Voronoi tessellation (cells about 20 voxels across) with membranes carved
    along its faces (as `synthetic_sample` does in 2-D, with a half-width of 1.1-1.6
    voxels: above 1, so that no two cells touch even across a corner, and 26-connected
    labelling separates them), each cell its own gray level, grainy texture, dark blurred
    membranes and noise. No organelles: a cell never looks like membrane, so a small 3-D
    network learns it quickly.

    Parameters
    ----------
    shape : (int, int, int)
        (D, H, W) in voxels, each at least 16.
    seed : int, None or numpy.random.Generator

    Returns
    -------
    image : (D, H, W) uint8
    mask : (D, H, W) uint8, 255 = cell, 0 = membrane
    labels : (D, H, W) int32, 0 = membrane; the 26-connected components of the mask

    Examples
    --------
    >>> image, mask, labels = synthetic_volume((16, 32, 32), seed=0)
    >>> image.shape, labels.dtype, bool(np.array_equal(mask, (labels > 0) * 255))
    ((16, 32, 32), dtype('int32'), True)
    """
    if (not isinstance(shape, (tuple, list)) or len(shape) != 3
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape)):
        raise TypeError(f"shape must be a (depth, height, width) triple of ints, got {shape!r}")
    if min(shape) < 16:
        raise ValueError(f"shape must be at least 16 voxels on every axis, got {tuple(shape)}")
    shape = tuple(int(s) for s in shape)
    rng = _rng(seed)
    n_seeds = max(2, rng.poisson(np.prod(shape) / 20**3))
    flat = rng.choice(int(np.prod(shape)), size=n_seeds, replace=False)
    seeds = np.ones(shape, bool)
    seeds.flat[flat] = False
    nearest = ndimage.distance_transform_edt(seeds, return_distances=False, return_indices=True)
    ids = np.zeros(shape, np.int32)
    ids.flat[flat] = np.arange(1, n_seeds + 1, dtype=np.int32)
    grid = np.indices(shape, dtype=np.float32)
    warped = [axis + 2.0 * _smooth_field(rng, shape, 16) for axis in grid]  # wavy faces
    ids = ndimage.map_coordinates(ids[tuple(nearest)], warped, order=0, mode="nearest")
    boundary = _boundary(ids)
    half_width = 1.35 + 0.25 * np.tanh(_smooth_field(rng, shape, 24))  # 1.1-1.6 voxels
    labels = label_cells(ndimage.distance_transform_edt(~boundary) >= half_width)
    small = np.bincount(labels.ravel()) < 4 * MIN_CELL_AREA
    small[0] = False
    labels = label_cells((labels > 0) & ~small[labels])
    cells = labels > 0
    level = np.concatenate([[150.0], rng.normal(150, 10, int(labels.max()))]).astype(np.float32)
    image = level[labels] + 12 * _smooth_field(rng, shape, 48)
    image += 25 * ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 0.9)
    membrane = ndimage.gaussian_filter((~cells).astype(np.float32), 1.0)
    image = image * (1 - 0.45 * membrane)
    image = ndimage.gaussian_filter(image, 0.7) + rng.normal(0, 8, shape)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, cells.astype(np.uint8) * np.uint8(255), labels


def synthetic_volumes(count, shape=(32, 64, 64), seed=0):
    """`count` synthetic volumes as stacks (images (N, D, H, W) uint8, labels (N, D, H, W)
    int32); volume i is `synthetic_volume(shape, seed=numpy.random.default_rng([seed, i]))`,
    prefix-stable like `synthetic_dataset`."""
    count = check_int(count, "count", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    volumes = [synthetic_volume(shape, seed=np.random.default_rng([seed, i])) for i in range(count)]
    return np.stack([v[0] for v in volumes]), np.stack([v[2] for v in volumes])


KINDS = {"em": synthetic_sample, "touching": touching_cells_sample}


def synthetic_dataset(count, size=512, seed=0, kind="em"):
    """`count` synthetic samples as stacks: (images (N, H, W) uint8, labels (N, H, W) int32).

    Sample i is `KINDS[kind](size, seed=numpy.random.default_rng([seed, i]))`: "em"
    (`synthetic_sample`, the default data) or "touching" (`touching_cells_sample`), so a
    larger `count` with the same seed extends the dataset without changing its first
    images. Masks are `labels > 0` (the sample functions give them as uint8 {0, 255}).
    """
    count = check_int(count, "count", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    samples = [KINDS[kind](size, seed=np.random.default_rng([seed, i])) for i in range(count)]
    return np.stack([s[0] for s in samples]), np.stack([s[2] for s in samples])
