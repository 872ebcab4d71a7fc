"""Loaders: ISBI PNG folders and TIFF stacks, image/label folders, and their error messages."""
import numpy as np
import pytest
import tifffile
from skimage import io

from unet_ref.datasets import (image_files, load_dataset, load_image_folders, load_isbi, read_image, read_images,
                               train_val_split)
from unet_ref.masks import to_instance_labels


def two_cells(value=255):
    """8 x 8 mask with two cells that touch only diagonally (one 8-connected cell)."""
    mask = np.zeros((8, 8), np.uint8)
    mask[1:4, 1:4] = value
    mask[4:7, 4:7] = value  # diagonal contact at (3, 3)-(4, 4)
    mask[1:3, 6:8] = value  # a second, separate cell
    return mask


def write_isbi(root, count=12, shape=(8, 8)):
    (root / "train" / "image").mkdir(parents=True)
    (root / "train" / "label").mkdir(parents=True)
    for i in range(count):
        io.imsave(root / "train" / "image" / f"{i}.png", np.full(shape, i, np.uint8), check_contrast=False)
        io.imsave(root / "train" / "label" / f"{i}.png", two_cells(), check_contrast=False)
    return root


def test_isbi_png_folders_load_in_numeric_order_with_8_connected_cells(tmp_path):
    images, labels = load_dataset(write_isbi(tmp_path))
    assert images.shape == labels.shape == (12, 8, 8) and images.dtype == np.uint8 and labels.dtype == np.int32
    assert [int(image[0, 0]) for image in images] == list(range(12))  # 10.png after 9.png
    # the diagonally touching squares are one cell, as skimage.measure.label(connectivity=2) says
    assert labels[0].max() == 2 and labels[0][1, 1] == labels[0][5, 5] != labels[0][1, 6]
    assert np.array_equal(labels[0] > 0, two_cells() > 0)


def test_isbi_tiff_stacks_and_instance_label_tiffs(tmp_path):
    volume = np.arange(3 * 8 * 8, dtype=np.uint8).reshape(3, 8, 8)
    tifffile.imwrite(tmp_path / "train-volume.tif", volume, photometric="minisblack")
    tifffile.imwrite(tmp_path / "train-labels.tif", np.stack([two_cells()] * 3), photometric="minisblack")
    images, labels = load_dataset(tmp_path)
    assert np.array_equal(images, volume) and labels.shape == (3, 8, 8) and labels[1].max() == 2
    # uint16 instance ids are kept: touching cells 300 and 301 stay two cells
    instances = np.zeros((3, 8, 8), np.uint16)
    instances[:, :4], instances[:, 4:] = 300, 301
    tifffile.imwrite(tmp_path / "train-labels.tif", instances, photometric="minisblack")
    images, labels = load_isbi(tmp_path / "train-volume.tif")
    assert labels.dtype == np.int32 and set(np.unique(labels)) == {300, 301}


def test_image_and_mask_folders_match_by_file_name(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name, value in (("b", 7), ("a", 3)):
        io.imsave(tmp_path / "images" / f"{name}.png", np.full((8, 8), value, np.uint8), check_contrast=False)
        mask = two_cells() if name == "a" else np.zeros((8, 8), np.uint8)
        tifffile.imwrite(tmp_path / "masks" / f"{name}.tif", mask)  # another suffix, same stem
    images, labels = load_dataset(tmp_path)
    assert [int(image[0, 0]) for image in images] == [3, 7]  # a, b
    assert labels[0].max() == 2 and labels[1].max() == 0


def test_images_of_different_sizes_come_as_lists(tmp_path):
    for folder in ("image", "label"):
        (tmp_path / folder).mkdir()
    for i, size in enumerate((8, 12)):
        io.imsave(tmp_path / "image" / f"{i}.png", np.zeros((size, size), np.uint8), check_contrast=False)
        io.imsave(tmp_path / "label" / f"{i}.png", np.full((size, size), 255, np.uint8), check_contrast=False)
    images, labels = load_image_folders(tmp_path / "image", tmp_path / "label")
    assert isinstance(images, list) and [a.shape for a in labels] == [(8, 8), (12, 12)]


def test_missing_and_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no data found"):
        load_dataset(tmp_path)
    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="train-volume.tif"):
        load_isbi(tmp_path)


def test_count_name_and_shape_mismatches_are_named(tmp_path):
    root = write_isbi(tmp_path, count=3)
    (root / "train" / "label" / "2.png").unlink()
    with pytest.raises(ValueError, match=r"no label for \['2.png'\]"):
        load_dataset(root)
    io.imsave(root / "train" / "label" / "2.png", np.zeros((9, 8), np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match=r"2.png is \(8, 8\) but its labels .*2.png are \(9, 8\)"):
        load_dataset(root)
    tifffile.imwrite(tmp_path / "train-volume.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "train-labels.tif", np.zeros((2, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(ValueError, match="3 images .* but 2 labels"):
        load_isbi(tmp_path / "train-volume.tif")


def test_non_binary_isbi_masks_and_unreadable_files_are_named(tmp_path):
    root = write_isbi(tmp_path, count=2)
    io.imsave(root / "train" / "label" / "1.png", np.arange(64, dtype=np.uint8).reshape(8, 8), check_contrast=False)
    with pytest.raises(ValueError, match=r"1.png is not a binary mask"):
        load_dataset(root)
    (root / "train" / "label" / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cannot read image .*1.png"):
        load_dataset(root)


def test_to_instance_labels_rules():
    assert to_instance_labels(two_cells(1)).max() == 2  # {0, 1} is a mask
    assert to_instance_labels(two_cells() > 0).max() == 2  # bool too
    assert to_instance_labels(two_cells(), binary=False).max() == 255  # ids kept when asked
    assert np.array_equal(to_instance_labels(np.array([[0, 5], [7, 7]])), [[0, 5], [7, 7]])
    with pytest.raises(ValueError, match="negative"):
        to_instance_labels(np.array([[0, -1], [2, 2]]))
    with pytest.raises(TypeError, match="integer"):
        to_instance_labels(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        to_instance_labels(np.zeros((2, 2, 2), int))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image("missing.png")


def test_train_val_split_holds_out_the_last_images():
    train_x, train_y, val_x, val_y = train_val_split(np.arange(25), np.arange(25) + 100)
    assert list(val_x) == [20, 21, 22, 23, 24] and len(train_x) == 20 and list(val_y)[0] == 120
    with pytest.raises(ValueError, match="val_count"):
        train_val_split(np.arange(3), np.arange(3), val_count=3)


def test_the_isbi_2012_subset_loads_as_25_slices_of_about_130_cells(isbi_dir):
    images, labels = load_isbi(isbi_dir)
    assert images.shape == labels.shape == (25, 512, 512) and images.dtype == np.uint8
    cells = [int(label.max()) for label in labels]
    assert 80 <= min(cells) and max(cells) <= 160


def test_image_files_and_read_images_list_folders_split_stacks_and_gray_colour(tmp_path):
    # what the command line reads: files and folders of images, stacks split into pages
    folder = tmp_path / "slices"
    folder.mkdir()
    for i in (10, 2, 1):
        io.imsave(folder / f"{i}.png", np.full((4, 5), i, np.uint8), check_contrast=False)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
    io.imsave(tmp_path / "rgb.png", rgb, check_contrast=False)
    stack = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    np.save(tmp_path / "one.npy", np.ones((4, 5), np.float32))
    files = image_files([folder, tmp_path / "rgb.png", tmp_path / "stack.tif", tmp_path / "one.npy"])
    assert [f.name for f in files] == ["1.png", "2.png", "10.png", "rgb.png", "stack.tif", "one.npy"]
    named = dict(read_images(files))
    assert list(named) == ["1", "2", "10", "rgb", "stack_0000", "stack_0001", "stack_0002", "one"]
    assert named["10"].shape == (4, 5) and (named["10"] == 10).all()
    assert named["rgb"].shape == (4, 5) and (named["rgb"] == 60).all()  # mean of the colours
    assert np.array_equal(named["stack_0001"], stack[1])
    assert named["one"].dtype == np.float32


def test_image_files_and_read_images_name_what_is_wrong(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(FileNotFoundError, match="label .*missing.png does not exist"):
        image_files([tmp_path / "missing.png"], "label")
    with pytest.raises(ValueError, match="label folder .*empty holds no images"):
        image_files([tmp_path / "empty"], "label")
    with pytest.raises(ValueError, match="no label given"):
        image_files([], "label")
    with pytest.raises(ValueError, match="cannot read label .*broken.png"):
        read_images([tmp_path / "broken.png"], "label")


def test_folders_refuse_lossy_masks_unless_thresholded_and_read_colour_images_as_gray(tmp_path):
    (tmp_path / "images").mkdir(), (tmp_path / "masks").mkdir()
    mask = two_cells()
    rgb = np.stack([mask // 2, mask // 4, mask], axis=-1).astype(np.uint8)
    for name in ("a", "b"):
        io.imsave(tmp_path / "images" / f"{name}.png", rgb, check_contrast=False)
        io.imsave(tmp_path / "masks" / f"{name}.jpg", mask, check_contrast=False, quality=70)
    with pytest.raises(ValueError, match="JPEG.*mask threshold"):
        load_dataset(tmp_path)
    images, labels = load_dataset(tmp_path, threshold=128)
    assert images.shape == (2, 8, 8)  # colour -> gray, as prediction reads it
    assert np.array_equal(images[0], rgb[..., :3].mean(axis=-1).astype(np.uint8))
    assert np.array_equal(labels[0], to_instance_labels(mask))
    # a PNG mask with gray edges (e.g. resized) is refused, not read as ~dozens of "cells"
    gray_edges = mask.copy()
    gray_edges[1, 1:4] = 128
    with pytest.raises(ValueError, match="gray values at its edges.*threshold"):
        to_instance_labels(gray_edges, name="a.png")


def test_names_must_be_unique(tmp_path):
    io.imsave(tmp_path / "x.png", two_cells(), check_contrast=False)
    tifffile.imwrite(tmp_path / "x.tif", two_cells())
    with pytest.raises(ValueError, match="both give the name 'x'"):
        read_images(image_files([tmp_path]))
    (tmp_path / "image").mkdir(), (tmp_path / "label").mkdir()
    for p in ("x.png", "x.tif"):
        (tmp_path / p).rename(tmp_path / "label" / p)
    io.imsave(tmp_path / "image" / "x.png", two_cells(), check_contrast=False)
    with pytest.raises(ValueError, match="same name but different suffixes"):
        load_dataset(tmp_path)


def _write_volumes(root, volumes, labels, label_folder="label"):
    (root / "image").mkdir(parents=True)
    (root / label_folder).mkdir()
    for i, (volume, label) in enumerate(zip(volumes, labels)):
        tifffile.imwrite(root / "image" / f"v{i}.tif", volume, photometric="minisblack")
        tifffile.imwrite(root / label_folder / f"v{i}.tif", label, photometric="minisblack")
    return root


def test_volume_folders_give_one_volume_per_tiff_with_26_connected_cells(tmp_path):
    from unet_ref.synthetic import synthetic_volume

    samples = [synthetic_volume((16, 24, 24), seed=i) for i in range(2)]
    # image/ + mask/ with binary masks, image/ + label/ with instance ids: the same volumes
    images, labels = load_dataset(_write_volumes(tmp_path / "a", [s[0] for s in samples], [s[1] for s in samples],
                                                 "mask"), ndim=3)
    assert images.shape == labels.shape == (2, 16, 24, 24)
    assert all(np.array_equal(label, s[2]) for label, s in zip(labels, samples))
    images, ids = load_dataset(_write_volumes(tmp_path / "b", [s[0] for s in samples],
                                              [s[2].astype(np.uint16) for s in samples]), ndim=3)
    assert np.array_equal(ids, labels) and np.array_equal(images[1], samples[1][0])


def test_a_2d_file_where_a_volume_is_expected_and_mismatched_shapes_are_named(tmp_path):
    volume = np.zeros((4, 8, 8), np.uint8)
    _write_volumes(tmp_path / "flat", [volume[0]], [np.full((8, 8), 255, np.uint8)])
    with pytest.raises(ValueError, match=r"v0.tif has shape \(8, 8\); expected a \(D, H, W\) volume"):
        load_dataset(tmp_path / "flat", ndim=3)
    _write_volumes(tmp_path / "odd", [volume], [np.full((4, 8, 9), 255, np.uint8)])
    with pytest.raises(ValueError, match=r"is \(4, 8, 8\) but its labels .* are \(4, 8, 9\)"):
        load_dataset(tmp_path / "odd", ndim=3)
    _write_volumes(tmp_path / "labels2d", [volume], [np.full((4, 8, 8, 2), 255, np.uint8)])
    with pytest.raises(ValueError, match=r"must be a 3-D \(D, H, W\) label image"):
        load_dataset(tmp_path / "labels2d", ndim=3)
    with pytest.raises(FileNotFoundError, match="no volumes found"):
        load_dataset(tmp_path, ndim=3)


def test_every_page_of_a_tiff_is_read_and_pages_are_never_channels(tmp_path):
    pages = np.random.default_rng(0).integers(0, 256, (3, 6, 7), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "series.tif") as tif:  # page by page: one series per page
        for page in pages:
            tif.write(page)
    narrow = pages[..., :3].copy()  # pages 3 px wide: not a colour axis
    tifffile.imwrite(tmp_path / "narrow.tif", narrow, photometric="minisblack")
    named = dict(read_images([tmp_path / "series.tif", tmp_path / "narrow.tif"]))
    assert [named[f"series_{i:04d}"].tolist() for i in range(3)] == pages.tolist()
    assert [named[f"narrow_{i:04d}"].tolist() for i in range(3)] == narrow.tolist()
    assert np.array_equal(read_image(tmp_path / "series.tif"), pages)
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(pages[0])
        tif.write(pages[0, :3])
    with pytest.raises(ValueError, match=r"mixed.tif: it holds 2 images of different shapes"):
        read_images([tmp_path / "mixed.tif"])
    tifffile.imwrite(tmp_path / "channels.tif", np.zeros((4, 2, 6, 7), np.uint8), imagej=True,
                     metadata={"axes": "ZCYX"})
    with pytest.raises(ValueError, match=r"channels.tif: it has channels \(axes ZCYX"):
        read_images([tmp_path / "channels.tif"])


def test_a_corrupt_tiff_is_one_line_of_ours_and_nothing_from_tifffile(tmp_path, capfd):
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 100)
    with pytest.raises(ValueError, match=r"^cannot read input .*corrupt.tif: not a readable TIFF") as error:
        read_images([tmp_path / "corrupt.tif"])
    assert "\n" not in str(error.value) and "(0,)" not in str(error.value)
    assert capfd.readouterr().err == ""


def test_colour_is_read_alike_in_every_format_images_gray_labels_one_id_per_colour(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :4] = [200, 0, 0]  # two touching cells of different colours
    rgb[:, 4:] = [0, 0, 200]
    rgb[0] = 0
    io.imsave(tmp_path / "c.png", rgb, check_contrast=False)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    png, tif = (dict(read_images([tmp_path / f"c.{s}"]))["c"] for s in ("png", "tif"))
    assert np.array_equal(png, tif) and np.array_equal(png, rgb.mean(axis=-1).astype(np.uint8))
    for suffix in ("png", "tif"):
        [(_, ids)] = read_images([tmp_path / f"c.{suffix}"], labels=True)
        # never averaged: the two colours are two ids, black is background
        red, blue = ids[rgb[..., 0] > 0], ids[rgb[..., 2] > 0]
        assert len(set(red)) == len(set(blue)) == 1 and red[0] != blue[0] and (ids[0] == 0).all()
        assert to_instance_labels(ids).max() == 2


def test_a_class_map_is_refused_where_instances_or_a_mask_are_expected_but_few_instances_are_read(tmp_path):
    from unet_ref.datasets import check_not_class_map

    classes = np.zeros((12, 12), np.uint8)  # 0 background, 1 cell, 2 border: two cells with borders
    classes[1:5, 1:5], classes[7:11, 7:11] = 2, 2
    classes[2:4, 2:4], classes[8:10, 8:10] = 1, 1
    with pytest.raises(ValueError, match=r"map.png holds 0 and the values 1, 2, and value 1 covers 2 separate regions: "
                                         r"a class map .* segmentation here is binary"):
        check_not_class_map(classes, "map.png")
    two_cells_ids = np.zeros((12, 12), np.uint8)  # instance ids of two cells: each one region
    two_cells_ids[1:5, 1:5], two_cells_ids[7:11, 7:11] = 1, 2
    assert check_not_class_map(two_cells_ids) is two_cells_ids
    many = np.kron(np.arange(1, 26, dtype=np.uint16).reshape(5, 5), np.ones((3, 3), np.uint16))  # 25 ids
    many[::3] = 0
    check_not_class_map(np.where(many % 2, many, many + 100).astype(np.uint16))  # uint16 instance TIFFs still work
    (tmp_path / "image").mkdir(), (tmp_path / "label").mkdir()
    io.imsave(tmp_path / "image" / "a.png", np.zeros((12, 12), np.uint8), check_contrast=False)
    io.imsave(tmp_path / "label" / "a.png", classes, check_contrast=False)
    with pytest.raises(ValueError, match="a.png holds 0 and the values 1, 2"):
        load_dataset(tmp_path)


def test_loaders_apply_the_runs_intensity_rule_and_name_the_file(tmp_path):
    (tmp_path / "image").mkdir(), (tmp_path / "label").mkdir()
    np.save(tmp_path / "image" / "a.npy", np.arange(64).reshape(8, 8))  # int64
    io.imsave(tmp_path / "label" / "a.png", two_cells(), check_contrast=False)
    with pytest.raises(ValueError, match=r"a.npy is int64 .* --normalize range:0,255"):
        load_dataset(tmp_path, normalize="dtype")
    images, _ = load_dataset(tmp_path, normalize="range:0,255")
    assert np.allclose(images[0], np.arange(64).reshape(8, 8) / 255)
