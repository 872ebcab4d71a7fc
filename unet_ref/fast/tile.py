"""Fast path of the training tile: what `unet_ref.tiles.training_tile` returns, from tables
made once per image.

Equal to the plain tile for the same draws: tests/test_fast.py (2-D and 3-D, with and
without augmentation, anisotropic spacing, sparse and dense cells, cells that leave the
label region and come back). The image agrees to float32 rounding (the cubic taps are summed
in another order), the cells exactly, and the weights exactly except where the border term
is below 1e-6: only the region's pixels within the context of the crop are sampled
(`context_spans`), the plain tile samples the whole box around it, and a cell further away
changes the border term only where it is below 1e-6.

Per image, once (`prepare`): the image's cubic spline coefficients, its connected regions
(`split_regions`), the borders they cross, and w_c. Per sample (`tile`): one position field
for the larger of the label region and the input window, both centred on the crop, read a
row at a time by the sampling loops; the cells numbered while they are sampled
(`warp_cells`); the one-pass weight map of the crop (`unet_ref.weights.weight_map` with
`window=`), on one thread, since tf.data runs samples in parallel.
"""
import math

import numpy as np

from unet_ref import reference
from unet_ref.augment import dihedral, identity_transform, vary_gray_values
from unet_ref.fast.cells import border_crossings, context_spans, split_regions, warp_cells
from unet_ref.fast.warp import position_field, spline_coefficients, warp
from unet_ref.weights import balanced_class_weights, weight_map

__all__ = ["FastTiles"]


class FastTiles:
    """`training_tile` for one tile and output shape, weight map and spacing.

    context: the reach of the weight map's context band in the units of `spacing`
    (default `reference.weight_context(w0, sigma)`, as the plain tile).
    """

    def __init__(self, tile_shape, output_shape, *, w0=10.0, sigma=5.0, spacing=None, class_balance=True,
                 context=None):
        self.tile_shape, self.output_shape = tuple(tile_shape), tuple(output_shape)
        self.w0, self.sigma, self.spacing, self.class_balance = w0, sigma, spacing, class_balance
        self.context = reference.weight_context(w0, sigma) if context is None else context
        self.band = tuple(math.ceil(self.context / s) for s in (spacing or (1.0,) * len(tile_shape)))
        m, c = self.output_shape, self.band
        self.crop = tuple(slice(ck, ck + mk) for mk, ck in zip(m, c))  # in the label region
        # the pixels of the label region within `context` of the crop: the same for every sample
        self.spans = context_spans(tuple(mk + 2 * ck for mk, ck in zip(m, c)), self.crop, self.context, spacing)

    def prepare(self, image, labels, augment=True):
        """The per-image tables of `tile`: image (*S, C) float32 and labels (*S) as the plain
        tile takes them."""
        cells = split_regions(labels)  # connected regions of equal id, numbered once
        class_weights = balanced_class_weights(labels > 0) if self.class_balance else (1.0, 1.0)
        source = spline_coefficients(image, labels.ndim) if augment else image
        return source, cells, border_crossings(cells), class_weights

    def tile(self, prepared, corner, transform=None, gray=None):
        """`training_tile(image, labels, corner, ..., transform, gray)` of the prepared image."""
        source, cells, crossings, class_weights = prepared
        ndim = cells.ndim
        n, m, c = self.tile_shape, self.output_shape, self.band
        elastic = transform is not None
        transform = transform or identity_transform(cells.shape)  # None: whole pixels, nothing turned
        # one position field for the larger of the label region and the input window; both
        # are centred on the output crop, so flips and rotations keep them aligned
        big = tuple(max(nk, mk + 2 * ck) for nk, mk, ck in zip(n, m, c))
        positions = position_field(transform, tuple(k - (b - mk) // 2 for k, b, mk in zip(corner, big, m)), big,
                                   elastic)  # (ndim, *big), computed a row at a time by the loops
        window = tuple(slice((b - nk) // 2, (b - nk) // 2 + nk) for b, nk in zip(big, n))
        around = tuple(slice((b - mk) // 2 - ck, (b - mk) // 2 + mk + ck) for b, mk, ck in zip(big, m, c))
        image = warp(source, transform, order=3 if elastic else 0, prefiltered=True,
                     positions=positions.window(window))  # (*n, C)
        region = warp_cells(cells, crossings, positions.window(around), self.spans)
        weights = weight_map(labels=region, w0=self.w0, sigma=self.sigma, class_weights=class_weights,
                             window=self.crop, spacing=self.spacing, num_threads=1)  # (*m)
        cells = (region[self.crop] > 0).astype(np.int32)
        turn = dict(rot90=transform.rot90, flip=transform.flip, axes=(ndim - 2, ndim - 1))
        cells, weights = (np.ascontiguousarray(dihedral(a, **turn)) for a in (cells, weights))
        if gray is not None:
            image = vary_gray_values(image, gray)
        return image.astype(np.float32, copy=False), cells, weights
