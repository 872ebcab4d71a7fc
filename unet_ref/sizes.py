"""Size arithmetic of the valid-convolution U-Net, in one place, per spatial axis.

Every 3x3 convolution is *valid* (no padding), so it removes one pixel on each side.
Per level of the contracting path: two convolutions (-4), then a 2x2 max-pool (/2), which
needs an even size. At the bottom: two convolutions (-4). Per level of the expanding
path: a 2x2 up-convolution (x2), then two convolutions (-4). For the paper's network
(depth 4): 572 -> 568 -> 284 -> 280 -> 140 -> 136 -> 68 -> 64 -> 32 -> 28 (bottom)
-> 56 -> 52 -> 104 -> 100 -> 200 -> 196 -> 392 -> 388.

The axes are independent, so one walk serves images and volumes. A volume may pool each
axis by its own factor per level (`pool_sizes`, e.g. ((1, 2, 2), (1, 2, 2), (2, 2, 2))
for an EM stack whose sections are thicker than its pixels): along an axis with factor
p at a level, the size must be a multiple of p before that pool, is divided by p, and
multiplied by p again by the up-convolution of the same level. With factors p_1..p_d
(P_l = p_1 ... p_l, P_0 = 1, S = P_0 + ... + P_(d-1)) an axis loses
margin = 4 S + 2 P_d px per side, and its valid input sizes are P_d apart; for p = 2
everywhere that is 6 * 2**depth - 4 and 2**depth.

Every function takes a size as an int (the same on every axis; the answer is an int) or
one size per axis (the answer is a tuple). The model, the training tiles, the overlap-tile
predictor and the command line all take their sizes from here.
"""
import math
import numbers

from unet_ref.checks import check_int, per_axis

__all__ = ["output_size", "valid_input_size", "input_size_for_output", "margin", "is_valid_input_size",
           "pool_factors", "MAX_DEPTH"]

# The smallest valid input, 12 * 2**depth - 4 px (depth >= 2), fits a signed 64-bit integer
# up to this depth; deeper networks have no input any array could hold.
MAX_DEPTH = 59


def pool_factors(pool_sizes=None, depth=None, ndim=1):
    """The max-pooling factors of every level, one tuple of `ndim` ints per level.

    `pool_sizes`: None (2 on every axis at every level: the paper) or one entry per level,
    an int (the same on every axis) or one int >= 1 per axis. `depth`: None means
    len(pool_sizes), or 4 without pool_sizes; given both, they must agree.

    >>> pool_factors(depth=2, ndim=3)
    ((2, 2, 2), (2, 2, 2))
    >>> pool_factors(((1, 2, 2), 2), ndim=3)
    ((1, 2, 2), (2, 2, 2))
    """
    if pool_sizes is None:
        depth = check_int(4 if depth is None else depth, "depth", minimum=0, maximum=MAX_DEPTH)
        return ((2,) * ndim,) * depth
    if isinstance(pool_sizes, (str, bytes)) or not hasattr(pool_sizes, "__len__"):
        raise TypeError(f"pool_sizes must be None or one entry per level, got {pool_sizes!r}")
    if depth is not None and check_int(depth, "depth", minimum=0, maximum=MAX_DEPTH) != len(pool_sizes):
        raise ValueError(f"depth {depth} does not match pool_sizes, which has {len(pool_sizes)} levels: {pool_sizes!r}")
    check_int(len(pool_sizes), "depth", maximum=MAX_DEPTH)
    levels = []
    for level, pool in enumerate(pool_sizes):
        try:
            pool = per_axis(pool, ndim, f"pool_sizes[{level}]")
        except ValueError:
            what = "an int" if ndim == 1 else f"an int or {ndim} ints (one per axis)"
            raise ValueError(f"pool_sizes[{level}] must be {what}, got {pool!r}") from None
        levels.append(tuple(check_int(p, f"pool_sizes[{level}]", minimum=1) for p in pool))
    return tuple(levels)


def _axes(size, name, depth, pool_sizes):
    """(sizes, per-axis pooling factors from the top level down, scalar): `size` as a tuple
    of ints, each axis's factors, and whether the answer is one int."""
    scalar = isinstance(size, numbers.Integral) and not isinstance(size, bool)
    if scalar or isinstance(size, bool) or not isinstance(size, (tuple, list)) or not size:
        sizes = (check_int(size, name, minimum=1),)
    else:
        sizes = tuple(check_int(n, name, minimum=1) for n in size)
    if scalar and isinstance(pool_sizes, (tuple, list)) and any(isinstance(p, (tuple, list)) for p in pool_sizes):
        raise ValueError(f"{name} is one int but pool_sizes gives a factor per axis ({pool_sizes!r}): "
                         f"give {name} as one size per axis")
    levels = pool_factors(pool_sizes, depth, len(sizes))
    return sizes, tuple(zip(*levels)) if levels else ((),) * len(sizes), scalar


def _answer(values, scalar):
    return values[0] if scalar else tuple(values)


def _grid_and_sum(pools):
    """(P_d, S) of one axis: its pooling grid and the sum of the partial products P_0..P_(d-1)."""
    partial = [math.prod(pools[:level]) for level in range(len(pools) + 1)]
    return partial[-1], sum(partial[:-1])


def _output_or_reason(n, pools):
    """(output size, None) for a valid input size n along an axis pooled by `pools`, else
    (None, reason): the layer-by-layer walk."""
    for level, p in enumerate(pools):
        n -= 4  # two valid 3x3 convolutions
        if n < p:
            return None, f"the feature map shrinks below {p} px before max-pool {level + 1}"
        if n % p:
            kind = "an odd size" if p == 2 else f"a size that is not a multiple of {p}"
            return None, f"max-pool {level + 1} would see {kind} ({n} px)"
        n //= p  # max-pooling by p
    n -= 4  # the two convolutions at the bottom
    if n < 1:
        return None, "the feature map shrinks below 1 px at the bottom of the network"
    for level, p in enumerate(reversed(pools)):
        n = p * n - 4  # up-convolution by p, then two valid 3x3 convolutions
        if n < 1:
            return None, f"the feature map shrinks below 1 px in up-level {level + 1}"
    return n, None


def _smallest_bottom(pools):
    """Smallest bottom feature map b (after its two convolutions) whose way up stays >= 1 px.
    Up-level l gives p_l u - 4 px from u, so walk the bound up from the 1 px output: for p = 2
    everywhere b >= 1 (depth 0), 3 (depth 1), 4 (deeper)."""
    bound = 1
    for p in pools:
        bound = max(1, -(-(bound + 4) // p))  # ceil division
    return bound


def _input_for_bottom(bottom, pools):
    """The input size whose bottom feature map is `bottom` px: undo "two convolutions, then
    a max-pool by p" per level, n = P_d (bottom + 4) + 4 S."""
    grid, total = _grid_and_sum(pools)
    return grid * (bottom + 4) + 4 * total


def _valid_at_or_above(size, pools):
    grid, total = _grid_and_sum(pools)
    bottom = max(-(-(size - 4 * total) // grid) - 4, _smallest_bottom(pools))  # ceil division
    return _input_for_bottom(bottom, pools)


def _margin(pools):
    grid, total = _grid_and_sum(pools)
    return 4 * total + 2 * grid


def is_valid_input_size(input_size, depth=None, pool_sizes=None):
    """True if an input of `input_size` px (an int, or one per axis) passes through a U-Net
    of `depth` (default 4) or with `pool_sizes`."""
    sizes, pools, _ = _axes(input_size, "input_size", depth, pool_sizes)
    return all(_output_or_reason(n, p)[0] is not None for n, p in zip(sizes, pools))


def valid_input_size(size, depth=None, pool_sizes=None):
    """Smallest valid input size >= `size` (per axis) for a U-Net of `depth` max-pooling
    levels (default 4) or with `pool_sizes`; the valid sizes are P_d (2**depth) apart.

    >>> valid_input_size(500)
    508
    >>> valid_input_size((20, 100, 100), pool_sizes=((1, 2, 2), (1, 2, 2), (2, 2, 2)))
    (34, 100, 100)
    """
    sizes, pools, scalar = _axes(size, "size", depth, pool_sizes)
    return _answer([_valid_at_or_above(n, p) for n, p in zip(sizes, pools)], scalar)


def output_size(input_size, depth=None, pool_sizes=None):
    """Output size of the valid-convolution U-Net for `input_size` (an int: the same on every
    axis; or one size per axis, answered per axis), `depth` max-pools (default 4) or
    `pool_sizes`. ValueError naming the nearest valid sizes when a max-pool would see a
    size that is not a multiple of its factor or a feature map would shrink below 1 px.

    >>> output_size(572)
    388
    >>> output_size((34, 132, 132), pool_sizes=((1, 2, 2), (1, 2, 2), (2, 2, 2)))
    (2, 44, 44)
    """
    sizes, pools, scalar = _axes(input_size, "input_size", depth, pool_sizes)
    outputs = []
    for axis, (n, p) in enumerate(zip(sizes, pools)):
        out, reason = _output_or_reason(n, p)
        if out is None:
            above = _valid_at_or_above(n, p)
            grid, total = _grid_and_sum(p)
            bottom = (n - 1 - 4 * total) // grid - 4  # the largest bottom whose input is below n
            below = _input_for_bottom(bottom, p) if bottom >= _smallest_bottom(p) else None
            nearest = f"{below} or {above}" if below else f"{above} (the smallest valid size)"
            where = "" if scalar else f" on axis {axis}"
            network = f"of depth {len(p)}" if pool_sizes is None else f"with pool factors {p}"
            raise ValueError(f"input size {n}{where} is not valid for a U-Net {network}: {reason}; "
                             f"the nearest valid input sizes are {nearest}")
        outputs.append(out)
    return _answer(outputs, scalar)


def margin(depth=None, pool_sizes=None):
    """Pixels lost on *each* side of the input: (input - output) / 2 = 4 S + 2 P_d, e.g. 92
    for depth 4. An int, or a tuple (one per axis) when `pool_sizes` gives factors per axis.

    >>> margin(4)
    92
    >>> margin(pool_sizes=((1, 2, 2), (1, 2, 2), (2, 2, 2)))
    (16, 44, 44)
    """
    per_axis_pools = [p for p in (pool_sizes or ()) if isinstance(p, (tuple, list))]
    ndim = len(per_axis_pools[0]) if per_axis_pools else 1
    levels = pool_factors(pool_sizes, depth, ndim)
    pools = tuple(zip(*levels)) if levels else ((),) * ndim
    return _answer([_margin(p) for p in pools], not per_axis_pools)


def input_size_for_output(size, depth=None, pool_sizes=None):
    """Smallest valid input whose output covers at least `size` px per axis (the inverse of
    `output_size`).

    >>> input_size_for_output(388)
    572
    >>> output_size(input_size_for_output(390))
    404
    """
    sizes, pools, scalar = _axes(size, "size", depth, pool_sizes)
    return _answer([_valid_at_or_above(n + 2 * _margin(p), p) for n, p in zip(sizes, pools)], scalar)
