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

__all__ = ["output_size", "valid_input_size", "input_size_for_output", "margin", "is_valid_input_size", "MAX_DEPTH"]


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


# The smallest valid input, 12 * 2**depth - 4 px (depth >= 2), fits a signed 64-bit integer
# up to this depth; deeper networks have no input any array could hold.
MAX_DEPTH = 59


def _check_depth(depth):
    return check_int(depth, "depth", minimum=0, maximum=MAX_DEPTH)


def _smallest_bottom(depth):
    """Smallest bottom feature map b (after its two convolutions) whose way up stays >= 1 px:
    up-level l has 2**l (b - 4) + 4 px, so b >= 1 (depth 0), 3 (depth 1), 4 (deeper)."""
    return 1 if depth == 0 else 3 if depth == 1 else 4


def _input_for_bottom(bottom, depth):
    """The input size whose bottom feature map is `bottom` px: undo "two convolutions, then
    a 2x2 max-pool" per level, n = 2**depth (bottom + 4) + 4 (2**depth - 1)."""
    return 2**depth * (bottom + 4) + 4 * (2**depth - 1)


def _bottom_at_most(size, depth):
    """The largest bottom size whose input is <= size (may be below the smallest)."""
    return (size - 4 * (2**depth - 1)) // 2**depth - 4


def is_valid_input_size(input_size, depth=4):
    """True if a square input of `input_size` px passes through a U-Net of `depth`."""
    input_size = check_int(input_size, "input_size", minimum=1)
    depth = _check_depth(depth)
    return _output_or_reason(input_size, depth)[0] is not None


def valid_input_size(size, depth=4):
    """Smallest valid input size >= `size` for a U-Net of `depth` max-pooling levels.

    Closed form: the valid sizes are 2**depth apart (`_input_for_bottom`).

    >>> valid_input_size(500)
    508
    >>> valid_input_size(572)
    572
    """
    size = check_int(size, "size", minimum=1)
    depth = _check_depth(depth)
    bottom = max(-(-(size - 4 * (2**depth - 1)) // 2**depth) - 4, _smallest_bottom(depth))  # ceil division
    return _input_for_bottom(bottom, depth)


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
    depth = _check_depth(depth)
    out, reason = _output_or_reason(input_size, depth)
    if out is None:
        above = valid_input_size(input_size, depth)
        bottom = _bottom_at_most(input_size - 1, depth)
        below = _input_for_bottom(bottom, depth) if bottom >= _smallest_bottom(depth) else None
        nearest = f"{below} or {above}" if below else f"{above} (the smallest valid size)"
        raise ValueError(
            f"input size {input_size} is not valid for a U-Net of depth {depth}: {reason}; "
            f"the nearest valid input sizes are {nearest}"
        )
    return out


def margin(depth=4):
    """Pixels lost on *each* side of the input: (input - output) / 2 = 6 * 2**depth - 4,
    e.g. 92 for depth 4."""
    depth = _check_depth(depth)
    return 6 * 2**depth - 4


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
