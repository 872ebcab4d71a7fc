"""Loading segmentation data: ISBI 2012 (PNG folders or TIFF stacks) and image/mask folders.

Every loader returns `(images, labels)`:

- images: (N, H, W) or (N, H, W, C) array as read (uint8, uint16, ...), or a list of
  arrays when the images differ in size; `normalize_image` scales them later, once.
- labels: instance labels int32 of the same (N, H, W), 0 = membrane/background. Binary
  masks (the ISBI convention: 255 = cell, 0 = membrane; any 0 / one-value mask or bool,
  the rule of `unet_ref.masks`) become instance labels by 8-connected components, as in
  `weight_map(mask)`; label images with other values (e.g. uint16 instance TIFFs) are
  kept as instance ids (`unet_ref.masks.to_instance_labels`).

Volumes (`ndim=3`, the 3-D U-Net): image/label folders of TIFF (or .npy) files holding
one (D, H, W) volume each; labels are binary masks (cells: 26-connected components) or
instance ids, as in 2-D.

Errors name the file or folder: missing, empty, unreadable, count or shape mismatch,
non-binary where a binary mask is expected, an image where a volume is expected.
"""
import pathlib
import re

import numpy as np

from unet_ref.masks import to_instance_labels

__all__ = ["read_image", "image_files", "read_images", "to_gray", "load_isbi", "load_image_folders",
           "load_dataset", "train_val_split", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".npy")
# folder pairs tried by load_dataset, in this order
FOLDER_PAIRS = (("image", "label"), ("images", "masks"),
                ("image", "mask"), ("images", "labels"))


def read_image(path):
    """Read one image file (PNG, TIFF incl. multi-page stacks, JPEG, BMP, .npy) as an array."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(path)
        from skimage import io

        return io.imread(path)
    except Exception as error:  # every decoder has its own exception types
        raise ValueError(f"cannot read image {path}: {type(error).__name__}: {error}") from error


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
    """An RGB(A) image (H, W, 3 or 4) -> gray (H, W), the mean of its colour channels in
    its own dtype; any other array unchanged. Training and prediction read colour files
    the same way."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return array[..., :3].mean(axis=-1).astype(array.dtype)
    return array


def read_images(files, what="input", volumes=False):
    """Image files -> list of (name, array (H, W) or (H, W, C)). A multi-page TIFF or an
    .npy stack (N, H, W) gives one entry per page, named `stem_0000`, ...; an RGB(A) PNG
    or JPEG becomes gray (`to_gray`). With `volumes=True` a 3-D TIFF or .npy is one
    (D, H, W) volume instead. Names must be unique (outputs are named after them, and
    `evaluate` pairs files by them): x.png beside x.tif is refused."""
    images, sources = [], {}
    for path in map(pathlib.Path, files):
        try:
            array = read_image(path)
        except ValueError as error:  # unreadable or corrupt file: name it, one line
            raise ValueError(f"cannot read {what} {path}: {error}") from error
        stacked = path.suffix.lower() in (".tif", ".tiff", ".npy")
        if volumes and stacked and array.ndim == 3:
            pages = [(path.stem, array)]  # one (D, H, W) volume
        elif array.ndim == 3 and stacked and array.shape[-1] > 4:
            pages = [(f"{path.stem}_{i:04d}", page) for i, page in enumerate(array)]  # a stack (N, H, W)
        elif array.ndim == 3 and not stacked:
            pages = [(path.stem, to_gray(array))]
        elif array.ndim in (2, 3):
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


def _pair(images, labels, image_names, label_names, binary, threshold=None, ndim=2):
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images ({image_names}) but {len(labels)} labels ({label_names})")
    out = []
    for i, (image, label) in enumerate(zip(images, labels)):
        label_name = label_names[i] if isinstance(label_names, list) else f"{label_names}[{i}]"
        image_name = image_names[i] if isinstance(image_names, list) else f"{image_names}[{i}]"
        if ndim == 3 and image.ndim not in (3, 4):
            raise ValueError(f"image {image_name} has shape {image.shape}; expected a (D, H, W) volume, one per file")
        if image.shape[:ndim] != np.shape(label)[:ndim]:
            raise ValueError(f"image {image_name} is {image.shape[:ndim]} but its labels {label_name} are "
                             f"{np.shape(label)[:ndim]}")
        out.append(to_instance_labels(label, binary=binary, threshold=threshold, ndim=ndim, name=str(label_name)))
    return _stack(list(images)), _stack(out)


def load_image_folders(image_dir, label_dir, *, binary=None, threshold=None, ndim=2):
    """Images and labels from two folders, matched by file name without suffix.

    `binary=True` demands binary masks (the ISBI PNG labels); None accepts instance labels
    too (see `to_instance_labels`). `threshold` reads masks that are not binary as cell =
    value >= threshold; JPEG label files (lossy: gray values at every edge) need one.
    `ndim=3`: every file is one (D, H, W) volume (a TIFF stack). Returns (images, labels)
    as described in the module.
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
    # colour files become gray, as for prediction; a volume is never colour
    images = [to_gray(read_image(p)) if ndim == 2 else read_image(p) for p in image_files]
    labels = [read_image(p) for p in label_files]
    return _pair(images, labels, [str(p) for p in image_files], [str(p) for p in label_files], binary, threshold,
                 ndim)


def load_isbi(path):
    """ISBI 2012 training data: `train/image/N.png` + `train/label/N.png` folders, or the
    challenge's multi-page TIFFs `train-volume.tif` + `train-labels.tif` (in `path`, or
    `path` is the volume itself). PNG labels must be binary (255 = cell); a TIFF labels
    stack may be binary or hold instance ids."""
    path = pathlib.Path(path)
    if path.is_dir() and (path / "train" / "image").is_dir():
        return load_image_folders(path / "train" / "image", path / "train" / "label", binary=True)
    volume = path if path.is_file() else path / "train-volume.tif"
    label_file = volume.with_name(volume.name.replace("volume", "labels"))
    if not volume.is_file() or volume == label_file:
        raise FileNotFoundError(f"no ISBI data at {path}: expected train/image + train/label folders "
                                f"or train-volume.tif + train-labels.tif")
    images, labels = read_image(volume), read_image(label_file)
    if images.ndim == 2:  # a single page
        images, labels = images[None], labels[None]
    # binary=None: a labels stack may also hold instance ids (uint16 instance TIFFs)
    return _pair(images, labels, str(volume), str(label_file), binary=None)


def load_dataset(path, *, threshold=None, ndim=2):
    """Whatever `path` holds: the ISBI layout (`load_isbi`: train/image + train/label PNG
    folders, binary masks; or train-volume.tif + train-labels.tif), or image/label folders
    (one of `FOLDER_PAIRS`, binary masks or instance labels, e.g. uint16 TIFFs; `threshold`
    for masks that are not binary, see `load_image_folders`). `ndim=3`: image/label
    folders of volumes, one (D, H, W) TIFF stack per file."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data path {path} does not exist")
    if ndim == 3:
        for image_dir, label_dir in FOLDER_PAIRS:
            if (path / image_dir).is_dir() and (path / label_dir).is_dir():
                return load_image_folders(path / image_dir, path / label_dir, threshold=threshold, ndim=3)
        raise FileNotFoundError(f"no volumes found in {path}: expected one of the folder pairs "
                                f"{[f'{a} + {b}' for a, b in FOLDER_PAIRS]}, one (D, H, W) TIFF stack per file")
    if ndim != 2:
        raise ValueError(f"ndim must be 2 (images) or 3 (volumes), got {ndim!r}")
    if path.is_file() or (path / "train-volume.tif").is_file() or (path / "train" / "image").is_dir():
        if path.is_file() and "volume" not in path.name:
            raise ValueError(f"{path} is a file but not an ISBI '*volume*.tif' stack")
        return load_isbi(path)
    for image_dir, label_dir in FOLDER_PAIRS:
        if (path / image_dir).is_dir() and (path / label_dir).is_dir():
            return load_image_folders(path / image_dir, path / label_dir, binary=None, threshold=threshold)
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
