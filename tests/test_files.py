"""Output files: written atomically, read back equal, never left half-written."""
import json

import numpy as np
import pytest
import tifffile
from skimage import io

from unet_ref.files import atomic_write, write_array, write_csv, write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write('{"a": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("name, array, read", [
    ("w.npy", np.arange(12, dtype=np.float32).reshape(3, 4), np.load),
    ("w.tif", np.arange(12, dtype=np.float32).reshape(3, 4), tifffile.imread),
    ("w.tiff", np.arange(24, dtype=np.uint16).reshape(2, 3, 4), tifffile.imread),
    ("m.png", np.array([[0, 255], [7, 1]], np.uint8), io.imread),
])
def test_write_array_round_trips_by_suffix(tmp_path, name, array, read):
    path = write_array(tmp_path / name, array)
    back = read(path)
    assert back.dtype == array.dtype and np.array_equal(back, array)


def test_write_array_writes_a_bool_png_as_0_255_and_refuses_what_it_cannot_write(tmp_path):
    write_array(tmp_path / "m.png", np.array([[True, False]]))
    assert np.array_equal(io.imread(tmp_path / "m.png"), [[255, 0]])
    with pytest.raises(TypeError, match="uint8 or bool"):
        write_array(tmp_path / "f.png", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="suffix"):
        write_array(tmp_path / "f.jpg", np.zeros((2, 2), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]


def test_write_csv_writes_the_rows_in_order(tmp_path):
    write_csv(tmp_path / "t.csv", [{"name": "a", "x": 1}, {"name": "mean", "x": 0.5}])
    assert (tmp_path / "t.csv").read_text().splitlines() == ["name,x", "a,1", "mean,0.5"]


def test_written_files_get_the_mode_of_any_new_file_and_no_temporary_file_stays(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        write_array(tmp_path / "w.npy", np.zeros(3))
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "w.npy").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o640
    with pytest.raises(KeyboardInterrupt):  # an interrupt mid-write (Ctrl-C) removes the temporary file
        with atomic_write(tmp_path / "x.json", "w") as f:
            f.write("{")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "w.npy"]
