"""Masks, cells and instance labels: one rule, used everywhere.

A *mask* separates cells (foreground) from membrane / background. Every part of the
project reads a mask with `cells_from_mask`: the weight map, the data loaders, the
training tiles, the metrics and the command line.

- bool: True = cell.
- integers: a binary mask holds 0 and at most one other value k > 0 ({0, 1}, {0, 255},
  {0, 65535}, ...); cell = value > 0. ISBI 2012 labels are uint8 {0, 255}, 255 = cell.
- anything else (a JPEG-saved mask has dozens of gray values near 0 and 255, a float
  image, an instance label image) is not a mask: a ValueError says what was found,
  unless a `threshold` is given, in which case cell = value >= threshold (for any real
  dtype). Guessing a threshold would misread such files silently.

*Cells* are the connected components of the mask, `label_cells(cells, connectivity)`,
with the neighbourhood of `scipy.ndimage.generate_binary_structure(ndim, connectivity)`:
in 2-D connectivity 1 is the 4-neighbourhood and 2 the 8-neighbourhood (the default, as
the notebook's `skimage.measure.label`); in 3-D 1, 2, 3 give 6, 18 and 26 neighbours.

*Instance labels* are integer images with 0 = background and one id > 0 per object;
`check_labels` validates them, and `to_instance_labels` turns either a mask or instance
labels into int32 instance labels.

`unet_ref.reference`, the test oracle, keeps its own skimage labelling so that it stays
independent of this module.
"""
import numbers

import numpy as np
from scipy import ndimage


__all__ = ["cells_from_mask", "label_cells", "connectivity_structure", "check_labels", "to_instance_labels",
           "is_binary_mask", "CELL_CLASS"]

# The network's classes: 0 = membrane / background, 1 = cell (training tiles hold
# labels > 0 as class 1; predictions' channel 1 is P(cell)).
CELL_CLASS = 1


def _values_text(values):
    shown = ", ".join(str(v) for v in values[:6].tolist())
    return f"{len(values)} distinct values ({shown}{', ...' if len(values) > 6 else ''})"


def is_binary_mask(array):
    """True if `array` is bool or holds 0 and at most one other integer value k > 0."""
    array = np.asarray(array)
    if array.dtype == bool:
        return True
    if not np.issubdtype(array.dtype, np.integer) or array.size == 0:
        return False
    # min, max and two counts: a few vectorised passes, where np.unique would sort the array
    low, high = array.min(), array.max()
    if low < 0 or (low != 0 and low != high):
        return False
    return low == high or np.count_nonzero(array) == np.count_nonzero(array == high)


def cells_from_mask(mask, *, threshold=None, name="mask"):
    """The cell pixels of a mask, by the rule of the module docstring.

    Parameters
    ----------
    mask : array of bool or int (any shape), or of any real dtype with `threshold`
    threshold : float, optional
        None: `mask` must be binary (bool, or 0 and one value k > 0). A number: cell =
        mask >= threshold, for masks that are not binary (e.g. 128 for a JPEG-saved
        0/255 mask).
    name : str
        Names the argument (or file) in error messages.

    Returns
    -------
    bool array of the same shape, True = cell

    Examples
    --------
    >>> cells_from_mask(np.array([[0, 255], [255, 0]], dtype=np.uint8))
    array([[False,  True],
           [ True, False]])
    >>> cells_from_mask(np.array([[3, 250, 255]], dtype=np.uint8), threshold=128)
    array([[False,  True,  True]])
    """
    mask = np.asarray(mask)
    if mask.size == 0:
        raise ValueError(f"{name} is empty (shape {mask.shape})")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        if mask.dtype == bool:
            return mask.copy()
        if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
            raise TypeError(f"{name} must be a numeric array, got dtype {mask.dtype}")
        if np.issubdtype(mask.dtype, np.floating) and not np.isfinite(mask).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return mask >= threshold
    if mask.dtype == bool:
        return mask.copy()
    if not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(f"{name} must be a binary mask (bool, or integers 0 and one value > 0), got dtype "
                        f"{mask.dtype}; give a threshold to read it as cell = value >= threshold")
    if not is_binary_mask(mask):
        raise ValueError(f"{name} is not a binary mask: expected 0 (membrane) and one value > 0 (cell), "
                         f"e.g. {{0, 255}} or {{0, 1}}, got {_values_text(np.unique(mask))} (segmentation here is binary); "
                         f"give a threshold (e.g. 128 for a JPEG-saved 0/255 mask), or instance labels as labels")
    return mask > 0


def connectivity_structure(ndim, connectivity):
    """The neighbourhood of `connectivity` (1 .. ndim, None = ndim) as scipy's structuring
    element; ValueError naming `connectivity` otherwise."""
    if connectivity is None:
        return ndimage.generate_binary_structure(ndim, ndim)
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral) \
            or not 1 <= connectivity <= ndim:
        raise ValueError(f"connectivity must be an integer in [1, {ndim}] for {ndim}-D cells (1 = faces only, "
                         f"{ndim} = every neighbour), got {connectivity!r}")
    return ndimage.generate_binary_structure(ndim, int(connectivity))


def label_cells(cells, connectivity=None):
    """Instance labels of the connected components of `cells` (bool, any ndim >= 1).

    `connectivity`: as `scipy.ndimage.generate_binary_structure`, 1 .. ndim; None = ndim
    (8-connected in 2-D, the notebook's rule; 26-connected in 3-D). Returns int32, 0 =
    background, cells numbered 1..n in scan order (scipy's).

    >>> label_cells(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], bool))
    array([[1, 0, 0],
           [0, 1, 0],
           [0, 0, 0]], dtype=int32)
    >>> label_cells(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], bool), connectivity=1).max()
    np.int32(2)
    """
    cells = np.asarray(cells)
    if cells.dtype != bool:
        raise TypeError(f"cells must be a bool array (use cells_from_mask), got dtype {cells.dtype}")
    labels, _ = ndimage.label(cells, structure=connectivity_structure(cells.ndim, connectivity))
    return labels.astype(np.int32, copy=False)


def check_labels(labels, name="labels"):
    """Validate instance labels: integer (or bool) ids >= 0. Returns a native-endian array
    (bool as its uint8 view)."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be an integer (or bool) array of instance ids, got dtype {labels.dtype}; "
                        f"convert it with .astype(np.int32) if its values are whole")
    if not labels.dtype.isnative:
        labels = labels.astype(labels.dtype.newbyteorder("="))
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
        raise ValueError(f"{name} has negative values; expected 0 = background and ids > 0")
    return labels


def to_instance_labels(labels, *, binary=None, threshold=None, connectivity=None, ndim=2, name="labels"):
    """A mask or an instance label image -> int32 instance labels (0 = background).

    Parameters
    ----------
    labels : int or bool array
    binary : bool or None
        True: must be a binary mask, labelled with `label_cells`. None: binary masks are
        labelled, other images are taken as instance ids, except a uint8 image holding 255
        and other values, which is a mask with gray values at its edges (saved as JPEG, or
        resized) far more often than 255 instance ids: refused with a hint to pass a
        `threshold`. False: always instance ids.
    threshold : float, optional
        Read `labels` as a mask that is not binary: cells = value >= threshold, labelled.
    connectivity : int or None
        For `label_cells` (None = every neighbour: 8-connected in 2-D).
    ndim : int or None
        The number of axes expected (2: an (H, W) image); None accepts any.
    name : str
        Names the input (e.g. the file) in error messages.
    """
    labels = np.asarray(labels)
    if ndim is not None and labels.ndim != ndim:
        axes = {2: "(H, W)", 3: "(D, H, W)"}.get(ndim, f"{ndim}-axis")
        raise ValueError(f"{name} must be a {ndim}-D {axes} label image, got shape {labels.shape}")
    if threshold is not None:
        return label_cells(cells_from_mask(labels, threshold=threshold, name=name), connectivity)
    labels = check_labels(labels, name)
    if binary or (binary is None and is_binary_mask(labels)):
        return label_cells(cells_from_mask(labels, name=name), connectivity)
    if binary is None and labels.dtype == np.uint8 and labels.max() == 255:
        raise ValueError(f"{name} looks like a mask with gray values at its edges (uint8 with 255 and "
                         f"{_values_text(np.unique(labels))}), as a JPEG-saved or resized mask has: pass a mask "
                         f"threshold (e.g. 128) to read it as cell = value >= threshold, or save masks without "
                         f"loss (PNG, TIFF); instance labels with 255 ids or more: save them as uint16")
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{name} has label ids above 2**31 - 1")
    return labels.astype(np.int32)
