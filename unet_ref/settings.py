"""The kinds of settings a `unet_ref.config.TrainConfig` field can be: how the command line
reads each from text (`parse`, the one place text becomes a value) and which values it
accepts (`check`: (value, name) -> the value as stored, or TypeError / ValueError naming
the setting). The metadata of every field is its help, its choices, its parser and its
check, so the command line and the checks read them from one place.
"""
import dataclasses

from unet_ref.checks import check_int, check_real, check_spacing

__all__ = ["setting", "integer", "real", "boolean", "choice", "text", "per_level", "per_axis_reals",
           "parse_pool_sizes", "parse_spacing", "parse_boolean"]


def setting(default, help, *, parse, check, choices=None, metavar=None):
    """A TrainConfig field: default, help, `parse` (text -> value, for the command line) and
    `check` ((value, name) -> the value as stored, or TypeError / ValueError naming it)."""
    return dataclasses.field(default=default, metadata=dict(help=help, parse=parse, check=check, choices=choices,
                                                            metavar=metavar))


def integer(default, help, minimum=None, maximum=None):
    return setting(default, help, parse=int, check=lambda value, name: check_int(value, name, minimum, maximum))


def real(default, help, **bounds):
    def check(value, name):  # None where the default is None: "chosen by the trainer"
        return None if value is None and default is None else check_real(value, name, **bounds)
    return setting(default, help, parse=float, check=check)


def parse_boolean(text):
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _check_boolean(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {value!r}")
    return value


def boolean(default, help):
    return setting(default, help, parse=parse_boolean, check=_check_boolean, metavar="{true,false}")


def choice(default, help, choices):
    def check(value, name):
        if value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value
    return setting(default, help, parse=str, check=check, choices=choices)


def _check_text(value, name):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    return value


def text(default, help):
    return setting(default, help, parse=str, check=_check_text)


def parse_pool_sizes(text):
    """The command line's pooling factors: "" -> None (2 everywhere), "1x2x2,2x2x2" ->
    ((1, 2, 2), (2, 2, 2)), "2,2" -> (2, 2): one entry per level, an int or one per axis.

    >>> parse_pool_sizes("1x2x2,2")
    ((1, 2, 2), 2)
    """
    if not text.strip():
        return None
    try:
        levels = tuple(tuple(int(p) for p in level.split("x")) for level in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"pool_sizes must be factors per level separated by commas, each one int or one per axis "
                         f"joined by x (e.g. '1x2x2,2x2x2'), got {text!r}") from None
    return tuple(level[0] if len(level) == 1 else level for level in levels)


def per_level(default, help):
    """One entry per level, an int or one int per axis (pooling factors); None = the default."""
    return setting(default, help, parse=parse_pool_sizes, check=_check_pool_sizes)


def _check_pool_sizes(value, name):
    # one entry per level, an int or ints per axis; the axes and depth are checked across fields
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be None or one entry per level, e.g. ((1, 2, 2), (2, 2, 2)), got {value!r}")
    return tuple(tuple(level) if isinstance(level, (tuple, list)) else level for level in value)


def parse_spacing(text):
    """The command line's spacing: "" -> None, "5,1,1" -> (5.0, 1.0, 1.0).

    >>> parse_spacing("5, 1, 1")
    (5.0, 1.0, 1.0)
    """
    if not text.strip():
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"spacing must be numbers separated by commas (e.g. '5,1,1'), got {text!r}") from None


def per_axis_reals(default, help):
    """One positive number per axis (a spacing); None = 1 on every axis."""
    return setting(default, help, parse=parse_spacing, check=_check_spacing)


def _check_spacing(value, name):
    if value is None:
        return None
    return check_spacing(value, len(value) if isinstance(value, (tuple, list)) else 1)
