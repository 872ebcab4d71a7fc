"""Fast path of the training tile's cells: what `unet_ref.tiles.training_tile` gets by
labelling the mirrored labels (skimage.measure.label) and reading them at the warped
positions, without labelling a mirrored image per sample.

Equal to the plain rule: tests/test_fast.py (the warped cells against skimage's regions of
the far-mirrored labels, as partitions; `split_regions` against skimage.measure.label).

How. The cells of the mirrored image are copies of the image's connected regions of equal
id, numbered once per image (`split_regions`, the run-based labelling of ext/_regions.pyx).
Beyond an image border the copy of a region is connected to it only if the region crosses
that border (`border_crossings`), so a cell of the mirrored image is a region plus its copy
number per axis, joined across the borders it crosses: `warp_cells` numbers them that way
while it samples, in one pass of ext/_warp.pyx. Only the pixels within the weight map's
context of the output crop are sampled (`context_spans`): no farther pixel is the nearest or
second nearest cell of a crop pixel whose border term reaches the tolerance.
"""
import numpy as np

from unet_ref import _regions, _warp
from unet_ref.fast.warp import PositionField
from unet_ref.masks import connectivity_structure, check_labels

__all__ = ["split_regions", "border_crossings", "warp_cells", "context_spans"]


def split_regions(labels, connectivity=None):
    """Instance labels whose ids are connected: each id's connected regions become
    separate ids (int32, 1..n in raster order of their first pixels, 0 stays background).

    After a warp or a mirror, one id can cover pieces that do not touch (a cell and its
    mirror image beyond the image border); the network sees them as two cells, and so
    must the weight map. `labels`: an integer or bool array of 1, 2 or 3 axes;
    `connectivity` as `label_cells`. The run-based labelling of ext/_regions.pyx
    (skimage.measure.label(labels, background=0) computes the same partition).
    """
    labels = check_labels(labels)
    if not 1 <= labels.ndim <= 3:
        raise ValueError(f"labels must have 1, 2 or 3 axes, got shape {labels.shape}")
    connectivity_structure(labels.ndim, connectivity)  # validates
    volume = np.ascontiguousarray(labels.reshape((1,) * (3 - labels.ndim) + labels.shape))
    regions = np.zeros(volume.shape, np.int32)
    _regions.split_regions(volume, connectivity or labels.ndim, regions)
    return regions.reshape(labels.shape)


def border_crossings(regions, connectivity=None):
    """Which regions cross which image borders into their mirror image.

    Mirrored beyond its border (numpy's "reflect": the edge sample not repeated), an image
    shows a copy of each region beyond each border. A region crosses the border at the low
    end of axis a when it holds neighbouring pixels at indices 0 and 1 along a: its copy
    beyond that border is then connected to it (the pixel at -1 mirrors the one at 1).
    Otherwise the copy is a region of its own. The high end likewise, with indices L - 1
    and L - 2; an axis of length 1 is crossed at both ends (its copies are one region).

    Parameters
    ----------
    regions : int array of 1, 2 or 3 axes
        Connected regions numbered 1..n (0 = background), e.g. from `split_regions`.
    connectivity : int or None
        As `label_cells`, the one `regions` was split with.

    Returns
    -------
    (n + 1,) uint8: bit 2 a for the low end of axis a, bit 2 a + 1 for its high end,
    axis 0 = regions' first axis; entry 0 (background) is 0.
    """
    regions = np.asarray(regions)
    structure = connectivity_structure(regions.ndim, connectivity)  # validates
    crossings = np.zeros(int(regions.max(initial=0)) + 1, np.uint8)
    centre = (1,) * regions.ndim
    for axis, length in enumerate(regions.shape):
        if length == 1:
            crossings[1:] |= 3 << (2 * axis)
            continue
        for bit, (edge, inner) in enumerate([(0, 1), (length - 1, length - 2)]):
            on_edge, next_to_it = regions.take(edge, axis=axis), regions.take(inner, axis=axis)
            # every neighbour of an edge pixel one step inside: offsets along the other axes
            for offset in np.argwhere(structure.take(0, axis=axis)) - np.delete(centre, axis):
                a = tuple(slice(max(-d, 0), n - max(d, 0)) for d, n in zip(offset, on_edge.shape))
                b = tuple(slice(max(d, 0), n + min(d, 0)) for d, n in zip(offset, on_edge.shape))
                same = (on_edge[a] == next_to_it[b]) & (on_edge[a] > 0)
                crossings[on_edge[a][same]] |= 1 << (2 * axis + bit)
    return crossings


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
