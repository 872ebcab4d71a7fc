"""Argument checks shared by every public function: one wording for every message.

A wrong type raises TypeError, a value out of range ValueError; both name the argument,
what was expected and what was given. bool is not accepted as a number (True is an int
in Python, but `depth=True` is a mistake, not a depth of 1).
"""
import math
import numbers

__all__ = ["check_int", "check_real", "check_threshold", "per_axis", "check_spacing"]


def _range_text(minimum, maximum, above, below):
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum}")
    if above is not None:
        parts.append(f"> {above}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    if below is not None:
        parts.append(f"< {below}")
    return " and ".join(parts)


def check_int(value, name, minimum=None, maximum=None):
    """`value` as an int, if it is an integer (Python or numpy, not bool) in
    [minimum, maximum]; else TypeError / ValueError naming `name`.

    >>> check_int(3, "depth", minimum=1)
    3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {_range_text(minimum, maximum, None, None)}, got {value}")
    return int(value)


def check_real(value, name, minimum=None, maximum=None, *, above=None, below=None):
    """`value` as a float, if it is a finite real number (not bool) with value >= minimum,
    <= maximum, > above and < below (each bound optional); else TypeError / ValueError.

    >>> check_real(0.5, "dropout", minimum=0, below=1)
    0.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum) or (above is not None and value <= above) \
            or (below is not None and value >= below):
        bounds = _range_text(minimum, maximum, above, below)
        raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}")
    return value


def check_threshold(value, name="threshold"):
    """A cell probability threshold: a finite number strictly between 0 and 1 (at 0 or 1, or
    beyond, every pixel would be cell or none). The command line's --threshold and the
    metrics of `unet_ref.evaluate` check it here.

    >>> check_threshold(0.5)
    0.5
    """
    return check_real(value, name, above=0, below=1)


def per_axis(value, ndim, name):
    """"An int or one value per axis" as a tuple of `ndim` values (MONAI's
    `ensure_tuple_rep`): a single number is repeated, a sequence must have `ndim` entries.

    >>> per_axis(5, 3, "tile_size"), per_axis([1, 2], 2, "pool")
    ((5, 5, 5), (1, 2))
    """
    if isinstance(value, numbers.Number) or isinstance(value, bool):
        return (value,) * ndim
    try:
        values = tuple(value)
    except TypeError:
        values = None
    if isinstance(value, (str, bytes)) or values is None or len(values) != ndim:
        raise ValueError(f"{name} must be one number or {ndim} (one per axis), got {value!r}")
    return values


def check_spacing(spacing, ndim):
    """The pixel (voxel) spacing as `ndim` positive finite floats: None is 1 on every axis,
    one number applies to every axis. ValueError naming `spacing` otherwise."""
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, (str, bytes)):
        raise ValueError(f"spacing values must be finite numbers > 0, got {spacing!r}")
    try:
        values = per_axis(spacing, ndim, "spacing")
    except ValueError:
        axes = {2: " (H, W)", 3: " (D, H, W)"}.get(ndim, "")
        raise ValueError(f"spacing must be one number per axis ({ndim} for a {ndim}-D{axes} image) or a single number, "
                         f"got {spacing!r}") from None
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"spacing values must be finite numbers > 0, got {spacing!r}")
        if not 1e-100 < v < 1e100:
            raise ValueError(f"spacing values must lie in (1e-100, 1e100), got {spacing!r}")
    return tuple(float(v) for v in values)
