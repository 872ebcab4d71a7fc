"""Zarr arrays and OME-Zarr (NGFF) images in and out, for the blockwise commands.

An OME-Zarr image is a zarr group whose `multiscales` metadata names its axes (each with a
type: "space", "channel", "time") and, per resolution level, the array that holds it and
its coordinate transformations (the voxel size as a "scale", an optional "translation").
`open_image` reads the full-resolution level of such an image (its metadata through
ome-zarr-py's reader), or a plain zarr array whose axes are spatial, (y, x) or (z, y, x),
unless its zarr v3 `dimension_names` say otherwise ("c" is a channel axis).
`create_image` writes a result: one float32 array "0" whose chunks are the blocks that
the tasks write, with the input's spatial axes, units and transformations written by
ome-zarr-py (the library's current format, NGFF 0.5 on zarr v3), so that napari and
ome-zarr-py read it with its scale.

zarr and ome-zarr-py come with the zarr extra; nothing here is imported by
`import unet_ref` or by the commands that read image files.
"""
import dataclasses
import math
import os

try:
    import zarr
    from ome_zarr.format import CurrentFormat, FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader
    from ome_zarr.writer import write_multiscales_metadata
except ImportError as error:  # the one place that says which extra to install
    raise ImportError(f'reading and writing zarr needs the zarr extra ({error.name} is missing): '
                      f'pip install -e ".[zarr]"') from error

__all__ = ["ZarrImage", "open_image", "create_image"]

SPATIAL_NAMES = {2: ("y", "x"), 3: ("z", "y", "x")}


@dataclasses.dataclass(frozen=True)
class ZarrImage:
    """The full-resolution array of a zarr or OME-Zarr image and what its axes mean.

    path: the zarr array; shape, dtype: its own; axes: one NGFF axis dict per array axis
    ({"name": "z", "type": "space", "unit": ...}); transforms: the level's coordinate
    transformations (a "scale" and maybe a "translation", one value per array axis), or
    None for a plain array.
    """
    path: str
    shape: tuple
    dtype: object
    axes: tuple
    transforms: tuple = None

    @property
    def spatial(self):
        """Indices of the spatial axes, in array order."""
        return tuple(i for i, axis in enumerate(self.axes) if axis.get("type") == "space")

    @property
    def channel(self):
        """Index of the channel axis, or None."""
        return next((i for i, axis in enumerate(self.axes) if axis.get("type") == "channel"), None)

    @property
    def spatial_shape(self):
        return tuple(self.shape[i] for i in self.spatial)

    @property
    def spacing(self):
        """The voxel size per spatial axis from the "scale" transformation, or None."""
        scale = next((t["scale"] for t in self.transforms or () if t.get("type") == "scale"), None)
        return None if scale is None else tuple(float(scale[i]) for i in self.spatial)

    def open(self):
        """The zarr array, for reading."""
        return zarr.open_array(self.path, mode="r")


def _plain_axes(array, where):
    names = array.metadata.dimension_names if array.metadata.zarr_format == 3 else None
    if not names or any(n is None for n in names):
        if array.ndim not in SPATIAL_NAMES:
            raise ValueError(f"{where} is a zarr array of shape {array.shape}: expected 2 or 3 spatial axes, (y, x) or "
                             f"(z, y, x); save images with more axes as OME-Zarr, whose metadata names them")
        names = SPATIAL_NAMES[array.ndim]
    kinds = {"c": "channel", "t": "time"}
    return tuple({"name": n, "type": kinds.get(n, "space")} for n in names)


def open_image(path, name="input"):
    """The `ZarrImage` at `path`: an OME-Zarr image (its first, full-resolution level) or a
    zarr array. ValueError naming `name` if it is neither, or if its axes are not 2 or 3
    spatial ones with at most a channel axis beside them; FileNotFoundError if missing."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name} {path} does not exist")
    try:
        node = zarr.open(path, mode="r")
    except Exception as error:  # zarr raises several types for a folder that is not zarr
        raise ValueError(f"{name} {path} is not a zarr array or group ({type(error).__name__}: {error})") from None
    if isinstance(node, zarr.Array):
        image = ZarrImage(path, node.shape, node.dtype, _plain_axes(node, f"{name} {path}"))
    else:
        # NGFF 0.4 lives in zarr v2, 0.5 in zarr v3: ask for the one the group has
        location = parse_url(path, fmt=FormatV04() if node.metadata.zarr_format == 2 else CurrentFormat())
        nodes = [n for n in Reader(location)() if n.load(Multiscales)] if location else []
        if not nodes:
            raise ValueError(f"{name} {path} is a zarr group without OME-Zarr multiscales metadata; give the path "
                             f"of the image's group or of one zarr array")
        node, multiscales = nodes[0], nodes[0].load(Multiscales)
        level = os.path.join(path, multiscales.datasets[0])
        array = zarr.open_array(level, mode="r")
        transforms = (node.metadata.get("coordinateTransformations") or [None])[0]
        image = ZarrImage(level, array.shape, array.dtype, tuple(node.metadata["axes"]),
                          tuple(transforms or ()) or None)
    other = [a["name"] for a in image.axes if a.get("type") not in ("space", "channel")]
    channels = [a["name"] for a in image.axes if a.get("type") == "channel"]
    if other or len(channels) > 1 or len(image.spatial) not in SPATIAL_NAMES:
        raise ValueError(f"{name} {path} has axes {[a['name'] for a in image.axes]} ({len(image.spatial)} spatial): "
                         f"expected 2 or 3 spatial axes, (y, x) or (z, y, x), and at most one channel axis; "
                         f"give one time point or one image at a time")
    if math.prod(image.shape) == 0:
        raise ValueError(f"{name} {path} is empty (shape {image.shape})")
    return image


def create_image(path, like, chunks, name="prediction"):
    """Create the OME-Zarr image `path` for a float32 result on the spatial axes of the
    `ZarrImage` `like` (its axes, units and transformations), one chunk per block of
    `chunks` voxels, filled with NaN until a block is written. Returns the `ZarrImage`
    of its array "0" (for writing: ``zarr.open_array(image.path, mode="r+")``)."""
    spatial = like.spatial
    axes = [dict(like.axes[i]) for i in spatial]
    transforms = [dict(t, **{t["type"]: [t[t["type"]][i] for i in spatial]}) for t in like.transforms or ()
                  if t.get("type") in ("scale", "translation")] or [{"type": "scale", "scale": [1.0] * len(spatial)}]
    group = zarr.open_group(os.fspath(path), mode="w-")
    group.create_array("0", shape=like.spatial_shape, chunks=tuple(chunks), dtype="float32", fill_value=float("nan"),
                       dimension_names=[a["name"] for a in axes])
    write_multiscales_metadata(group, datasets=[{"path": "0", "coordinateTransformations": transforms}], axes=axes,
                               name=name)
    return ZarrImage(os.path.join(os.fspath(path), "0"), like.spatial_shape, "float32", tuple(axes), tuple(transforms))
