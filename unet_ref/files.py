"""Writing output files: atomically, so that a reader never sees half a file.

Every file the project writes (models, checkpoints, configurations, metrics, weight maps,
probability maps, figures) goes through `atomic_write`: the content is written to a
temporary file in the destination folder and then renamed into place with `os.replace`,
which is atomic on POSIX and Windows. A run killed in the middle of a write leaves the
previous file (or none), never a truncated one. `write_json`, `write_csv` and
`write_array` are the writers built on it. A SIGKILL can still leave the temporary file
(`.tmp-NAME-*`); `remove_temporaries` deletes those of a folder whose only writer is us
(a locked run folder, `unet_ref.runs`).

Before writing, a command checks its outputs: `output_folder` (an --out that names a
folder) and `refuse_overwriting` (no output is one of the command's inputs, by path or
through a link: checked for every output before the first is written).
"""
import csv
import io
import json
import os
import pathlib
import tempfile

import numpy as np

__all__ = ["atomic_write", "write_json", "read_json", "write_csv", "write_array", "ARRAY_SUFFIXES",
           "remove_temporaries", "output_folder", "refuse_overwriting"]

ARRAY_SUFFIXES = (".npy", ".tif", ".tiff", ".png")
TEMPORARY_PREFIX = ".tmp-"  # atomic_write's temporary files: .tmp-NAME-RANDOM.SUFFIX


def _umask():
    """The process's umask (read from /proc on Linux; elsewhere set and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class atomic_write:
    """Context manager: write a file through a temporary file in the same folder, then
    `os.replace` it into place, so that readers never see a half-written file.

    >>> with atomic_write(path, "w") as f:  # doctest: +SKIP
    ...     f.write("text")

    `atomic_write(path)` without a mode yields the temporary *path* instead of an open
    file, for writers that take a file name (matplotlib, tifffile, keras).
    """

    def __init__(self, path, mode=None, suffix=None):
        # absolute and normalised: os.replace cannot walk "a/../b" while a does not exist
        self.path = os.path.abspath(os.fspath(path))
        self.mode = mode
        self.suffix = os.path.splitext(self.path)[1] if suffix is None else suffix

    def __enter__(self):
        folder = os.path.dirname(self.path)
        os.makedirs(folder, exist_ok=True)
        # named after its target, so that a file left by a killed process says what it was
        prefix = f"{TEMPORARY_PREFIX}{os.path.basename(self.path)}-"
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=self.suffix)
        # mkstemp creates the file readable by its owner only (0600); give it the mode any
        # new file gets (0666 minus the umask), as open() would
        os.chmod(self.tmp, 0o666 & ~_umask())
        if self.mode is None:
            os.close(fd)
            return self.tmp
        self.file = os.fdopen(fd, self.mode, **({"newline": "", "encoding": "utf-8"} if "b" not in self.mode else {}))
        return self.file

    def __exit__(self, exc_type, exc, tb):
        if self.mode is not None:
            self.file.close()
        try:
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:  # a failed write, or a failed rename (a read-only or full disk): no stray file
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
        return False


def _plain(value):
    """numpy arrays and scalars as lists and Python numbers, for JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json(path, data):
    """Write `data` as indented JSON (NaN allowed; numpy arrays as lists), atomically."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, allow_nan=True, default=_plain)
        f.write("\n")


def read_json(path):
    """The JSON in `path`; a ValueError naming the file when it is missing, truncated or
    not JSON (a run's config.json, best.json, ...)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read as JSON ({type(error).__name__}: {error}); it may be truncated: "
                         f"delete or repair it") from error


def write_csv(path, rows, fieldnames=None):
    """Write a list of dicts as CSV (columns: `fieldnames`, default the first row's keys),
    atomically."""
    rows = list(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames or (rows[0] if rows else [])))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path, "w") as f:
        f.write(buffer.getvalue())


def write_array(path, array):
    """Write an image-like array by the file's suffix, atomically: .npy (any array),
    .tif/.tiff (tifffile, dtype kept, e.g. float32 maps), .png (uint8 or bool, gray)."""
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    array = np.asarray(array)
    if suffix == ".npy":
        with atomic_write(path, "wb") as f:
            np.save(f, array)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        with atomic_write(path) as tmp:
            tifffile.imwrite(tmp, array)
    elif suffix == ".png":
        if array.dtype == bool:
            array = array.astype(np.uint8) * np.uint8(255)
        if array.dtype != np.uint8:
            raise TypeError(f"a PNG is written from uint8 or bool, got dtype {array.dtype} for {path}")
        from skimage import io as skio

        with atomic_write(path) as tmp:
            skio.imsave(tmp, array, check_contrast=False)
    else:
        raise ValueError(f"cannot write {path}: expected a suffix in {ARRAY_SUFFIXES}")
    return path


def remove_temporaries(folder):
    """Delete the temporary files `atomic_write` left in `folder` when its process was
    killed (SIGKILL runs no clean-up). Only for a folder no other process writes to: a
    run folder under its lock."""
    folder = pathlib.Path(folder)
    for path in folder.glob(TEMPORARY_PREFIX + "*") if folder.is_dir() else ():
        if path.is_file():
            path.unlink(missing_ok=True)


def output_folder(out, option="--out"):
    """`out` as the Path of an output folder: not empty text (that would be the working
    directory), not an existing file; "a/../b" resolved as the system would once `a`
    existed (it cannot walk through a missing `a`). ValueError naming `option`."""
    if not str(out).strip():
        raise ValueError(f"{option} is empty; expected the name of a folder for the outputs")
    path = pathlib.Path(out)
    if ".." in path.parts:
        path = pathlib.Path(os.path.realpath(path))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {out} is a file; expected a folder for the outputs")
    return path


def refuse_overwriting(outputs, inputs):
    """ValueError naming the file if any of `outputs` (paths about to be written) is one of
    `inputs`: the same path, or the same file through a symbolic link, a hard link or "..".
    Call it with every output before writing the first, so that nothing is written."""
    def identity(path):
        try:
            status = os.stat(path)
        except OSError:  # not there (yet): it can only clash by name
            return None
        return status.st_dev, status.st_ino

    by_identity, by_name = {}, {}
    for path in inputs:
        by_name[os.path.realpath(path)] = path
        key = identity(path)
        if key is not None:
            by_identity[key] = path
    for path in outputs:
        key = identity(path)
        source = by_identity.get(key) if key is not None else None
        source = source or by_name.get(os.path.realpath(path))
        if source is not None:
            link = "" if os.path.abspath(source) == os.path.abspath(path) else " (the same file, through a link)"
            raise ValueError(f"output {path} would replace the input {source}{link}; choose another --out")
