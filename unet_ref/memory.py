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

__all__ = ["tile_bytes", "check_memory", "DEFAULT_MEMORY_BUDGET"]

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
