"""Loading segmentation data: ISBI 2012 (PNG folders or TIFF stacks) and image/mask folders.

Every loader returns `(images, labels)`:

- images: (N, H, W) or (N, H, W, C) array as read (uint8, uint16, ...), or a list of
  arrays when the images differ in size; `normalize_image` scales them later, once (or the
  loaders do, given the run's intensity rule `normalize`, so that errors name the file).
- labels: instance labels int32 of the same (N, H, W), 0 = membrane/background. Binary
  masks (the ISBI convention: 255 = cell, 0 = membrane; any 0 / one-value mask or bool,
  the rule of `unet_ref.masks`) become instance labels by 8-connected components, as in
  `weight_map(mask)`; label images with other values (e.g. uint16 instance TIFFs) are
  kept as instance ids (`unet_ref.masks.to_instance_labels`).

Volumes (`ndim=3`, the 3-D U-Net): image/label folders of TIFF (or .npy) files holding
one (D, H, W) volume each; labels are binary masks (cells: 26-connected components) or
instance ids, as in 2-D.

How files are read (`read_images`): a TIFF's axes come from the file itself (tifffile's
series), so pages are never taken for channels, however narrow; a TIFF written page by
page (one series per page) is read whole, as a stack. Colour (RGB(A) PNG, JPEG, TIFF) is
read alike in every format: an image becomes gray (the mean of its colours), a label
image becomes ids, one per colour (black = 0), never averaged, so touching cells of
different colours stay apart. A label image holding 0 and two to four other values, one
of which covers separate regions, is refused as a class map (e.g. 0 background, 1 cell,
2 border): segmentation here is binary, and instance ids are one connected region each
(`check_not_class_map`); label images with more ids are instance ids.

Errors name the file or folder: missing, empty, unreadable, count or shape mismatch,
non-binary where a binary mask is expected, an image where a volume is expected.
"""
import pathlib
import re

import numpy as np

from unet_ref.images import normalize_image
from unet_ref.masks import to_instance_labels

__all__ = ["read_image", "image_files", "read_images", "to_gray", "colour_ids", "check_not_class_map", "load_isbi",
           "load_image_folders", "load_dataset", "train_val_split", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".npy")
# folder pairs tried by load_dataset, in this order
FOLDER_PAIRS = (("image", "label"), ("images", "masks"),
                ("image", "mask"), ("images", "labels"))


class _Unreadable(ValueError):
    """A file whose decoder succeeded but whose content we cannot use (the message says why)."""


def _read_tiff(path):
    """(array, channels) of a TIFF: every series (a file written page by page holds one per
    page) stacked, and whether its last axis holds colour samples (tifffile's axis S)."""
    import logging

    import tifffile

    class Problems(logging.Handler):  # tifffile logs what it cannot read; we say it in one line
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    problems, logger = Problems(), logging.getLogger("tifffile")
    logger.addHandler(problems)
    propagate, logger.propagate = logger.propagate, False
    try:
        with tifffile.TiffFile(path) as tif:
            series = [(s.asarray(), s.axes) for s in tif.series]
    finally:
        logger.removeHandler(problems)
        logger.propagate = propagate
    if not series or any(a.size == 0 for a, _ in series):
        reason = problems.messages[0].splitlines()[0] if problems.messages else "no image data"
        raise _Unreadable(f"not a readable TIFF ({reason})")
    axes = {a for _, a in series}
    if len(series) > 1 and (len({a.shape for a, _ in series}) > 1 or len(axes) > 1):
        raise _Unreadable(f"it holds {len(series)} images of different shapes or axes "
                         f"({', '.join(sorted({f'{a.shape} {x}' for a, x in series}))}); save one stack of equal pages")
    array, axes = (series[0] if len(series) == 1 else (np.stack([a for a, _ in series]), "I" + series[0][1]))
    if "C" in axes or ("S" in axes and not axes.endswith("S")):
        raise _Unreadable(f"it has channels (axes {axes}, shape {array.shape}); unet_ref reads gray images: save "
                         f"one channel")
    return array, axes.endswith("S")


def _read(path):
    """(array, channels) of an image file; `channels`: the last axis holds colours."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        if path.suffix.lower() == ".npy":  # no axes recorded: a last axis of 2 to 4 values is colour
            array = np.load(path, allow_pickle=False)
            return array, array.ndim == 3 and array.shape[-1] <= 4
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path)
        from skimage import io

        array = io.imread(path)
        return array, array.ndim == 3
    except Exception as error:  # every decoder has its own exception types
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        kind = "" if isinstance(error, _Unreadable) else f"{type(error).__name__}: "
        raise ValueError(f"cannot read image {path}: {kind}{first}") from error


def read_image(path):
    """Read one image file (PNG, TIFF incl. multi-page stacks, JPEG, BMP, .npy) as an array,
    as stored (a colour image keeps its colour axis, last)."""
    return _read(path)[0]


def colour_ids(array):
    """A colour label image (..., 3 or 4) -> int32 ids, one per colour of the first three
    channels (alpha ignored), black = 0: never averaged, so that touching cells of different
    colours stay two cells.

    >>> colour_ids(np.array([[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [255, 0, 0]]], np.uint8))
    array([[0, 2],
           [1, 2]], dtype=int32)
    """
    rgb = np.asarray(array)[..., :3]
    colours, ids = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    ids = ids.reshape(rgb.shape[:-1]).astype(np.int32)
    return ids if not colours[0].any() else ids + 1


def check_not_class_map(labels, name="labels"):
    """Refuse a class map where instance labels or a binary mask are expected.

    A label image holding 0 and one value is a mask; with five or more values it is read as
    instance ids. With two to four values (e.g. {0, 1, 2}) it could be either: instance ids
    of a few cells, or classes (0 background, 1 cell, 2 border). The rule: it is instance
    ids if every value > 0 is one connected region (a cell), and a class map, refused with a
    ValueError naming `name`, if one of them covers separate regions. Segmentation here is
    binary (cell / membrane); give every cell its own id, or save a binary mask.
    """
    from unet_ref.masks import label_cells

    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) or labels.size == 0 or labels.min() < 0:
        return labels  # not label ids at all: the label checks say why
    values = np.unique(labels)
    values = values[values > 0]
    if 2 <= len(values) <= 4:
        for value in values:
            regions = int(label_cells(labels == value).max())
            if regions > 1:
                raise ValueError(f"{name} holds 0 and the values {', '.join(map(str, values.tolist()))}, and value "
                                 f"{value} covers {regions} separate regions: a class map (e.g. 1 cell, 2 border), not "
                                 f"instance ids (one connected region per id) nor a binary mask (0 and one value); "
                                 f"segmentation here is binary: save a mask, or give every cell its own id")
    return labels


def _natural_key(path):
    """'10.png' after '9.png': digits compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]


def _image_files(folder):
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise ValueError(f"folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def image_files(inputs, what="input"):
    """Files and folders -> list of image files; a folder gives its images in natural
    order (2.png before 10.png, as the ISBI slices are numbered). `what` names the inputs
    in error messages ("label", "ground truth", ...)."""
    files = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            try:
                files.extend(_image_files(path))
            except ValueError as error:
                raise ValueError(f"{what} {error}") from None
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{what} {path} does not exist")
    if not files:
        raise ValueError(f"no {what} given")
    return files


def to_gray(array):
    """A colour image (..., C): RGB(A) -> the mean of its colour channels, 2 channels (gray
    and alpha) -> the first, in its own dtype. Training and prediction read colour files the
    same way."""
    array = np.asarray(array)
    return array[..., :3].mean(axis=-1).astype(array.dtype) if array.shape[-1] >= 3 else array[..., 0]


def read_images(files, what="input", volumes=False, labels=False):
    """Image files -> list of (name, array (H, W) or (H, W, C)). A multi-page TIFF or an
    .npy stack (N, H, W) gives one entry per page, named `stem_0000`, ...; colour becomes
    gray (`to_gray`), or with `labels=True` one id per colour (`colour_ids`), in every
    format. With `volumes=True` a 3-D TIFF or .npy is one (D, H, W) volume instead. Names
    must be unique (outputs are named after them, and `evaluate` pairs files by them):
    x.png beside x.tif is refused."""
    images, sources = [], {}
    for path in map(pathlib.Path, files):
        try:
            array, channels = _read(path)
        except ValueError as error:  # unreadable or corrupt file: name it, one line
            reason = str(error).removeprefix(f"cannot read image {path}: ")
            raise ValueError(f"cannot read {what} {path}: {reason}") from error
        if channels:  # (..., C) colour: one gray value, or one id per colour
            array = colour_ids(array) if labels else to_gray(array)
        if volumes and array.ndim == 3:
            pages = [(path.stem, array)]  # one (D, H, W) volume
        elif array.ndim == 3:
            pages = [(f"{path.stem}_{i:04d}", page) for i, page in enumerate(array)]  # a stack (N, H, W)
        elif array.ndim == 2:
            pages = [(path.stem, array)]
        else:
            raise ValueError(f"{what} {path} has shape {array.shape}; expected (H, W), (H, W, C) or a stack (N, H, W)")
        for name, _ in pages:
            if name in sources:
                raise ValueError(f"{what} files {sources[name]} and {path} both give the name {name!r}; outputs and "
                                 f"pairs go by name, so rename one of them")
            sources[name] = path
        images.extend(pages)
    return images


def _stack(arrays):
    """One array if all shapes agree, else the list."""
    return np.stack(arrays) if len({a.shape for a in arrays}) == 1 else list(arrays)


def _read_as(path, labels=False):
    """One file as `read_images` reads it: colour to gray, or to one id per colour."""
    array, channels = _read(path)
    return (colour_ids(array) if labels else to_gray(array)) if channels else array


def _pair(images, labels, image_names, label_names, binary, threshold=None, ndim=2, normalize=None):
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images ({image_names}) but {len(labels)} labels ({label_names})")
    out, normalized = [], []
    for i, (image, label) in enumerate(zip(images, labels)):
        label_name = label_names[i] if isinstance(label_names, list) else f"{label_names}[{i}]"
        image_name = image_names[i] if isinstance(image_names, list) else f"{image_names}[{i}]"
        if ndim == 3 and image.ndim not in (3, 4):
            raise ValueError(f"image {image_name} has shape {image.shape}; expected a (D, H, W) volume, one per file")
        if image.shape[:ndim] != np.shape(label)[:ndim]:
            raise ValueError(f"image {image_name} is {image.shape[:ndim]} but its labels {label_name} are "
                             f"{np.shape(label)[:ndim]}")
        if binary is None and threshold is None:
            check_not_class_map(label, str(label_name))
        out.append(to_instance_labels(label, binary=binary, threshold=threshold, ndim=ndim, name=str(label_name)))
        normalized.append(image if normalize is None else normalize_image(image, str(image_name), normalize=normalize))
    return _stack(normalized), _stack(out)


def load_image_folders(image_dir, label_dir, *, binary=None, threshold=None, ndim=2, normalize=None):
    """Images and labels from two folders, matched by file name without suffix.

    `binary=True` demands binary masks (the ISBI PNG labels); None accepts instance labels
    too (see `to_instance_labels`). `threshold` reads masks that are not binary as cell =
    value >= threshold; JPEG label files (lossy: gray values at every edge) need one.
    `ndim=3`: every file is one (D, H, W) volume (a TIFF stack). `normalize`: an intensity
    rule (`unet_ref.images.normalize_image`) applied to each image, whose errors then name
    its file; None leaves the images as read. Returns (images, labels) as described in the
    module.
    """
    image_files, label_files = _image_files(image_dir), _image_files(label_dir)
    for files in (image_files, label_files):
        stems = [p.stem for p in files]
        twice = sorted({p.name for p in files if stems.count(p.stem) > 1})
        if twice:
            raise ValueError(f"{files[0].parent} holds files with the same name but different suffixes "
                             f"({', '.join(twice[:4])}): images and labels are matched by name")
    lossy = [p.name for p in label_files if p.suffix.lower() in (".jpg", ".jpeg")]
    if lossy and threshold is None:
        raise ValueError(f"label files {lossy[:3]} are JPEG, whose compression leaves gray values at every "
                         f"edge: save masks as PNG or TIFF, or pass a mask threshold (e.g. 128)")
    labels_by_stem = {p.stem: p for p in label_files}
    missing = [p.name for p in image_files if p.stem not in labels_by_stem]
    extra = sorted(set(labels_by_stem) - {p.stem for p in image_files})
    if missing or extra:
        raise ValueError(f"images in {image_dir} and labels in {label_dir} do not match by name: "
                         f"no label for {missing[:5]}, no image for {extra[:5]}")
    label_files = [labels_by_stem[p.stem] for p in image_files]
    # colour images become gray and colour labels ids, as for prediction and weightmap
    images = [_read_as(p) for p in image_files]
    labels = [_read_as(p, labels=True) for p in label_files]
    return _pair(images, labels, [str(p) for p in image_files], [str(p) for p in label_files], binary, threshold,
                 ndim, normalize)


def load_isbi(path, normalize=None):
    """ISBI 2012 training data: `train/image/N.png` + `train/label/N.png` folders, or the
    challenge's multi-page TIFFs `train-volume.tif` + `train-labels.tif` (in `path`, or
    `path` is the volume itself). PNG labels must be binary (255 = cell); a TIFF labels
    stack may be binary or hold instance ids."""
    path = pathlib.Path(path)
    if path.is_dir() and (path / "train" / "image").is_dir():
        return load_image_folders(path / "train" / "image", path / "train" / "label", binary=True,
                                  normalize=normalize)
    volume = path if path.is_file() else path / "train-volume.tif"
    label_file = volume.with_name(volume.name.replace("volume", "labels"))
    if not volume.is_file() or volume == label_file:
        raise FileNotFoundError(f"no ISBI data at {path}: expected train/image + train/label folders "
                                f"or train-volume.tif + train-labels.tif")
    images, labels = _read_as(volume), _read_as(label_file, labels=True)
    if images.ndim == 2:  # a single page
        images, labels = images[None], labels[None]
    # binary=None: a labels stack may also hold instance ids (uint16 instance TIFFs)
    return _pair(images, labels, str(volume), str(label_file), binary=None, normalize=normalize)


def load_dataset(path, *, threshold=None, ndim=2, normalize=None):
    """Whatever `path` holds: the ISBI layout (`load_isbi`: train/image + train/label PNG
    folders, binary masks; or train-volume.tif + train-labels.tif), or image/label folders
    (one of `FOLDER_PAIRS`, binary masks or instance labels, e.g. uint16 TIFFs; `threshold`
    for masks that are not binary, see `load_image_folders`). `ndim=3`: image/label
    folders of volumes, one (D, H, W) TIFF stack per file. `normalize`: the intensity rule
    applied to every image (see `load_image_folders`)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data path {path} does not exist")
    if ndim == 3:
        for image_dir, label_dir in FOLDER_PAIRS:
            if (path / image_dir).is_dir() and (path / label_dir).is_dir():
                return load_image_folders(path / image_dir, path / label_dir, threshold=threshold, ndim=3,
                                          normalize=normalize)
        raise FileNotFoundError(f"no volumes found in {path}: expected one of the folder pairs "
                                f"{[f'{a} + {b}' for a, b in FOLDER_PAIRS]}, one (D, H, W) TIFF stack per file")
    if ndim != 2:
        raise ValueError(f"ndim must be 2 (images) or 3 (volumes), got {ndim!r}")
    if path.is_file() or (path / "train-volume.tif").is_file() or (path / "train" / "image").is_dir():
        if path.is_file() and "volume" not in path.name:
            raise ValueError(f"{path} is a file but not an ISBI '*volume*.tif' stack")
        return load_isbi(path, normalize)
    for image_dir, label_dir in FOLDER_PAIRS:
        if (path / image_dir).is_dir() and (path / label_dir).is_dir():
            return load_image_folders(path / image_dir, path / label_dir, binary=None, threshold=threshold,
                                      normalize=normalize)
    raise FileNotFoundError(f"no data found in {path}: expected train-volume.tif + train-labels.tif or "
                            f"one of the folder pairs {[f'{a} + {b}' for a, b in FOLDER_PAIRS]}")


def train_val_split(images, labels, val_count=5):
    """First N - val_count for training, the last val_count for validation (ISBI: 20 / 5).

    Returns (train_images, train_labels, val_images, val_labels)."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not 1 <= val_count < len(images):
        raise ValueError(f"val_count must be in [1, {len(images) - 1}] for {len(images)} images, got {val_count}")
    n = len(images) - val_count
    return images[:n], labels[:n], images[n:], labels[n:]
