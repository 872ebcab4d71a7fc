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


def test_an_output_that_is_an_input_is_refused_by_path_link_hard_link_and_dotdot(tmp_path):
    import os

    from unet_ref.files import refuse_overwriting

    (tmp_path / "lab").mkdir()
    label = tmp_path / "lab" / "a.npy"
    np.save(label, np.zeros((2, 2)))
    os.symlink(tmp_path / "lab", tmp_path / "link")
    (tmp_path / "hard").mkdir()
    os.link(label, tmp_path / "hard" / "a.npy")
    for output in (label, tmp_path / "link" / "a.npy", tmp_path / "hard" / "a.npy",
                   tmp_path / "lab" / ".." / "lab" / "a.npy"):
        with pytest.raises(ValueError, match=f"output {output} would replace the input {label}"):
            refuse_overwriting([tmp_path / "new.npy", output], [label])
    refuse_overwriting([tmp_path / "lab" / "b.npy", tmp_path / "missing" / "a.npy"], [label])  # other files: fine


def test_output_folders_are_named_and_dotdot_is_resolved_as_the_system_would(tmp_path, monkeypatch):
    from unet_ref.files import output_folder

    monkeypatch.chdir(tmp_path)
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="--out is empty"):
            output_folder(empty)
    path = output_folder("a/../b")  # a does not exist: the system cannot walk through it
    write_json(path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "b" / "x.json").read_text()) == {"a": 1}
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="--out f is a file"):
        output_folder("f")


def test_atomic_write_renames_into_a_path_through_a_missing_folder(tmp_path):
    write_json(tmp_path / "missing" / ".." / "c.json", [1])  # os.replace cannot walk missing/..
    assert json.loads((tmp_path / "c.json").read_text()) == [1]


def test_temporaries_left_by_a_killed_writer_are_removed_and_nothing_else(tmp_path):
    from unet_ref.files import remove_temporaries

    (tmp_path / ".tmp-last.keras-abc123.keras").write_text("half a model")
    (tmp_path / "last.keras").write_text("a model")
    (tmp_path / ".hidden").write_text("")
    remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "last.keras"]
