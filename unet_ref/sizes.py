"""Size arithmetic of the valid-convolution U-Net, in one place.

Every 3x3 convolution is *valid* (no padding), so it removes one pixel on each side.
Per level of the contracting path: two convolutions (-4), then a 2x2 max-pool (/2), which
needs an even size. At the bottom: two convolutions (-4). Per level of the expanding
path: a 2x2 up-convolution (x2), then two convolutions (-4). For the paper's network
(depth 4): 572 -> 568 -> 284 -> 280 -> 140 -> 136 -> 68 -> 64 -> 32 -> 28 (bottom)
-> 56 -> 52 -> 104 -> 100 -> 200 -> 196 -> 392 -> 388.

The model, the training tiles, the overlap-tile predictor and the command line all take
their sizes from these functions; nothing else repeats the arithmetic.
"""
from unet_ref.checks import check_int

__all__ = ["output_size", "valid_input_size", "input_size_for_output", "margin", "is_valid_input_size"]


def _output_or_reason(n, depth):
    """Return (output_size, None) for a valid input size n, else (None, reason)."""
    for level in range(depth):
        n -= 4  # two valid 3x3 convolutions
        if n < 2:
            return None, f"the feature map shrinks below 2 px before max-pool {level + 1}"
        if n % 2:
            return None, f"max-pool {level + 1} would see an odd size ({n} px)"
        n //= 2  # 2x2 max-pooling
    n -= 4  # the two convolutions at the bottom
    if n < 1:
        return None, "the feature map shrinks below 1 px at the bottom of the network"
    for level in range(depth):
        n = 2 * n - 4  # 2x2 up-convolution, then two valid 3x3 convolutions
        if n < 1:
            return None, f"the feature map shrinks below 1 px in up-level {level + 1}"
    return n, None


def is_valid_input_size(input_size, depth=4):
    """True if a square input of `input_size` px passes through a U-Net of `depth`."""
    input_size = check_int(input_size, "input_size", minimum=1)
    depth = check_int(depth, "depth", minimum=0)
    return _output_or_reason(input_size, depth)[0] is not None


def valid_input_size(size, depth=4):
    """Smallest valid input size >= `size` for a U-Net of `depth` max-pooling levels.

    >>> valid_input_size(500)
    508
    >>> valid_input_size(572)
    572
    """
    n = check_int(size, "size", minimum=1)
    depth = check_int(depth, "depth", minimum=0)
    while _output_or_reason(n, depth)[0] is None:
        n += 1  # valid sizes are 2**depth apart, so this loop is short
    return n


def output_size(input_size, depth=4):
    """Output size (per spatial axis) of the valid-convolution U-Net for `input_size`.

    Raises ValueError naming the nearest valid sizes when a max-pool would see an odd
    size or a feature map would shrink below one pixel.

    >>> output_size(572)
    388
    >>> output_size(188, depth=4)
    4
    """
    input_size = check_int(input_size, "input_size", minimum=1)
    depth = check_int(depth, "depth", minimum=0)
    out, reason = _output_or_reason(input_size, depth)
    if out is None:
        above = valid_input_size(input_size, depth)
        below = next((n for n in range(input_size - 1, 0, -1) if _output_or_reason(n, depth)[0]), None)
        nearest = f"{below} or {above}" if below else f"{above} (the smallest valid size)"
        raise ValueError(
            f"input size {input_size} is not valid for a U-Net of depth {depth}: {reason}; "
            f"the nearest valid input sizes are {nearest}"
        )
    return out


def margin(depth=4):
    """Pixels lost on *each* side of the input: (input - output) / 2, e.g. 92 for depth 4."""
    depth = check_int(depth, "depth", minimum=0)
    n = valid_input_size(1, depth)
    return (n - output_size(n, depth)) // 2


def input_size_for_output(size, depth=4):
    """Smallest valid input whose output covers at least `size` px (the inverse of
    `output_size`).

    >>> input_size_for_output(388)
    572
    >>> output_size(input_size_for_output(390))
    404
    """
    size = check_int(size, "size", minimum=1)
    return valid_input_size(size + 2 * margin(depth), depth)
