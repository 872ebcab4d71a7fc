"""One training tile, the plain way: the definition the training pipeline is held to.

The overlap-tile geometry at training time (paper, Fig. 2): an output crop of m px per axis
(m = output_size(n, ...)) placed at `corner` of the image, and the input tile of n px per
axis centred on it, mirrored where it leaves the image. Step by step:

1. where each pixel comes from: the transform's sample positions (`augment`) for the input
   window and for the label region, the output crop plus a context band around it;
2. the image, read there with cubic splines (mirrored beyond its borders);
3. the cells, read there with the nearest sample: the connected regions of equal id of the
   labels mirrored beyond their borders, as the network sees them (a cell's mirror image
   beyond a border the cell does not cross is another cell; one that leaves the region and
   comes back is one cell);
4. the weight map of the crop from the warped cells, with the context band around it
   (the per-cell definition of `unet_ref.reference`): the border term is below 1e-6
   wherever one of a pixel's two nearest cells lies beyond `weight_context`, so the
   weights are those of the whole warped image, to 1e-6;
5. the image tile, the crop's cells and weights flipped / turned alike, then the gray values.

Steps 3-4 run in the image's orientation, where `spacing` holds, and the small crop is
turned afterwards. w_c (the class weights) come from the whole un-warped image, not the
tile: a small tile inside one big cell would otherwise swing w_c from tile to tile.

This module imports nothing compiled: numpy, scipy, skimage and the per-cell weight map.
`unet_ref.pipeline.TileSampler` draws the random parts of a tile and makes it here
(sampler="plain") or on the fast path (`unet_ref.fast.tile`, sampler="fast"), which
tests/test_fast.py holds equal to this one.
"""
import math

import numpy as np
from skimage.measure import label

from unet_ref import reference
from unet_ref.augment import dihedral, identity_transform, sample_positions, vary_gray_values, warp
from unet_ref.checks import check_spacing

__all__ = ["training_tile", "mirrored_cells"]


def mirrored_cells(labels, positions):
    """The cells of the mirrored `labels` at `positions` ((ndim, *size) float, the nearest
    sample): int ids, 0 = background.

    The labels are mirrored by whole copies of the image until every position lies inside,
    so that the edge of the padding is a mirror line: a path that leaves the padded image
    and comes back has a mirror image inside, and the connected regions of the padded image
    are those of the endlessly mirrored one."""
    nearest = np.rint(positions).astype(np.int64)  # rounded half to even, like augment.warp
    pad = []
    for index, length in zip(nearest, labels.shape):
        copy = max(length - 1, 1)  # px from one mirror line to the next
        pad.append((-(-max(0, -index.min()) // copy) * copy, -(-max(0, index.max() - length + 1) // copy) * copy))
    regions = label(np.pad(labels, pad, mode="reflect"), background=0, connectivity=labels.ndim)
    return regions[tuple(index + before for index, (before, _) in zip(nearest, pad))]


def training_tile(image, labels, corner, tile_shape, output_shape, transform=None, gray=None, *, w0=10.0,
                  sigma=5.0, spacing=None, class_balance=True):
    """The training tile (image, cells, weights) whose output crop starts at `corner`.

    Parameters
    ----------
    image : (*S) or (*S, C) float array in [0, 1], S = (H, W) or (D, H, W)
        Normalised as `unet_ref.images.normalize_image` does.
    labels : (*S) int array
        Instance labels or a binary mask: the cells are their connected regions of equal
        value (8-connected in 2-D, 26 in 3-D).
    corner : tuple of int
        The output crop's first pixel in the image.
    tile_shape, output_shape : tuple of int
        The network's input tile n and output m per axis (`unet_ref.sizes.output_size`).
    transform : augment.Transform, optional
        The random deformation, shift and flip/rotation; None: none, and the image is read
        at whole pixels as it is (a validation tile).
    gray : tuple, optional
        A `augment.random_gray_values` draw; None: none.
    w0, sigma, spacing : as in `unet_ref.weight_map` (sigma and the context band in the
        units of `spacing`).
    class_balance : bool
        w_c balances the two classes' frequencies in `labels` (paper); False: w_c = 1.

    Returns
    -------
    image (*n, C) float32, cells (*m) int32 (1 = cell), weights (*m) float32
    """
    image, labels = np.asarray(image, np.float32), np.asarray(labels)
    ndim = labels.ndim
    image = image[..., None] if image.ndim == ndim else image
    n, m = tuple(tile_shape), tuple(output_shape)
    if ndim not in (2, 3) or image.shape[:-1] != labels.shape or not len(corner) == len(n) == len(m) == ndim:
        raise ValueError(f"expected an image (*S[, C]) and labels (*S), S = (H, W) or (D, H, W), and corner, "
                         f"tile_shape and output_shape of one entry per axis, got image {image.shape}, labels "
                         f"{labels.shape}, corner {corner}, tile_shape {n}, output_shape {m}")
    spacing = check_spacing(spacing, ndim)
    band = tuple(math.ceil(reference.weight_context(w0, sigma) / s) for s in spacing)  # px per axis
    elastic = transform is not None
    transform = transform or identity_transform(labels.shape)

    # 1-2. the input window, centred on the crop
    window = tuple(k - (nk - mk) // 2 for k, nk, mk in zip(corner, n, m))
    image_tile = warp(image, transform, order=3 if elastic else 0, top_left=window, size=n)  # (*n, C), turned

    # 3. the cells of the label region: the crop and its context band
    region = tuple(mk + 2 * c for mk, c in zip(m, band))
    positions = sample_positions(transform, tuple(k - c for k, c in zip(corner, band)), region, elastic)
    cells = mirrored_cells(labels, positions)  # (*region), in the image's orientation

    # 4. the weight map of the crop, the whole region as context
    crop = tuple(slice(c, c + mk) for c, mk in zip(band, m))
    class_weights = reference.balanced_class_weights(labels > 0) if class_balance else (1.0, 1.0)
    weights = reference.weight_map(labels=cells, w0=w0, sigma=sigma, spacing=spacing,
                                   class_weights=class_weights)[crop]

    # 5. turn the crop like the image tile; vary the gray values
    turn = dict(rot90=transform.rot90, flip=transform.flip, axes=(ndim - 2, ndim - 1))
    cells = np.ascontiguousarray(dihedral((cells[crop] > 0).astype(np.int32), **turn))
    weights = np.ascontiguousarray(dihedral(weights, **turn))
    if gray is not None:
        image_tile = vary_gray_values(image_tile, gray)
    return image_tile.astype(np.float32, copy=False), cells, weights
