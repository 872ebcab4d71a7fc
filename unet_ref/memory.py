"""How much memory a batch of tiles needs: the estimate behind default tile and batch sizes,
and the check that refuses a tile no machine could hold.

A forward pass keeps, per input pixel, feature maps whose size grows with the base filter
count; `tile_bytes` estimates it from that count, and a training step keeps about three
times as much (the activations for the backward pass and their gradients). The constants
are upper bounds of what benchmarks/test_tiling.py and benchmarks/test_model.py measure
(peak memory over tile area x filters), with some headroom.
"""
import math
import os

from unet_ref.reference import weight_context

__all__ = ["tile_bytes", "check_memory", "check_label_region", "DEFAULT_MEMORY_BUDGET"]

# Activation memory allowed for one batch of tiles (bytes) when choosing the prediction tile:
# the paper's network (64 base filters) then takes ~700 px tiles, one with 16 base filters
# ~1400 px; it fits beside other jobs on a laptop or a GPU.
DEFAULT_MEMORY_BUDGET = 2**30

# Peak memory of a forward pass per input pixel and base filter (bytes), an upper bound of
# the measured values with headroom (benchmarks/test_tiling.py).
_BYTES_PER_PIXEL_PER_FILTER = 32

# a training step keeps the activations for the backward pass and their gradients
TRAINING_FACTOR = 3


def tile_bytes(tile_shape, base_filters, in_channels):
    """Estimated activation memory (bytes) of one input tile of `tile_shape` px: the one
    formula behind the default tile and batch sizes."""
    return (_BYTES_PER_PIXEL_PER_FILTER * base_filters + 4 * in_channels) * math.prod(tile_shape)


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform: no check
        return None


def check_memory(tile_shape, base_filters, in_channels, batch_size=1, *, training=False, what="tile_size"):
    """ValueError, before anything is allocated, if a batch of tiles needs more memory than
    this machine has (a typo such as tile_size=57200 would need terabytes)."""
    needed = tile_bytes(tile_shape, base_filters, in_channels) * batch_size * (TRAINING_FACTOR if training else 1)
    available = _physical_memory()
    if available and needed > available:
        raise ValueError(f"{what} {'x'.join(map(str, tile_shape))} with {base_filters} base filters and batch "
                         f"{batch_size} needs about {needed / 2**30:,.0f} GiB for "
                         f"{'a training step' if training else 'its activations'}; this machine has "
                         f"{available / 2**30:,.0f} GiB: use a smaller {what}")


# bytes per voxel of a training tile's label region: its cell ids (int64), the weight
# kernel's distances and labels, and the positions of one row, with headroom
_REGION_BYTES_PER_VOXEL = 64


def check_label_region(output_shape, spacing, w0, sigma):
    """ValueError, before anything is allocated, if the label region of a training tile
    (the output crop plus the weight map's context band, `weight_context(w0, sigma)` in
    the units of `spacing`) needs more memory than this machine has: a spacing in the wrong
    units, such as (1e-30, 1, 1), asks for a band of 10^31 px."""
    spacing = spacing or (1.0,) * len(output_shape)
    band = [math.ceil(weight_context(w0, sigma) / s) for s in spacing]
    needed = math.prod(m + 2 * b for m, b in zip(output_shape, band)) * _REGION_BYTES_PER_VOXEL
    available = _physical_memory()
    if available and needed > available:
        raise ValueError(f"spacing {tuple(spacing)} makes the weight map's context band "
                         f"({', '.join(f'{b:.3g}' for b in band)}) px per axis "
                         f"(sigma sqrt(2 ln(w0 / 1e-6)) = {weight_context(w0, sigma)} in the units of spacing), "
                         f"about {needed / 2**30:,.3g} GiB per training tile; this machine has "
                         f"{available / 2**30:,.0f} GiB: give spacing relative to the finest axis (e.g. 5,1,1)")
