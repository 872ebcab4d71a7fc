"""Specification of unet_ref.masks: one rule for what a mask's cells are, one labelling,
checked against numpy / skimage written out here."""
import numpy as np
import pytest
from skimage import measure

from unet_ref.masks import check_labels, cells_from_mask, is_binary_mask, label_cells, to_instance_labels
from unet_ref.weights import weight_map


@pytest.mark.parametrize("mask", [
    np.array([[0, 255, 255, 0]], np.uint8),
    np.array([[0, 1, 1, 0]], np.uint8),
    np.array([[0, 1, 1, 0]], np.int64),
    np.array([[0, 65535, 65535, 0]], np.uint16),
    np.array([[False, True, True, False]]),
])
def test_every_binary_mask_spelling_gives_the_same_cells(mask):
    assert np.array_equal(cells_from_mask(mask), [[False, True, True, False]])


@pytest.mark.parametrize("mask", [np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8)])
def test_a_mask_of_one_class_is_binary(mask):
    assert is_binary_mask(mask)
    assert np.array_equal(cells_from_mask(mask), mask > 0)


def test_a_jpeg_like_mask_is_refused_unless_a_threshold_is_given():
    mask = np.array([[0, 3, 128, 250, 255]], np.uint8)  # gray values around 0 and 255
    with pytest.raises(ValueError, match="not a binary mask.*5 distinct values.*threshold"):
        cells_from_mask(mask)
    assert np.array_equal(cells_from_mask(mask, threshold=128), [[False, False, True, True, True]])


@pytest.mark.parametrize("mask, error", [
    (np.zeros((2, 2), np.float32), TypeError),  # float without threshold
    (np.array([[0, -1]], np.int8), ValueError),  # negative: not {0, k > 0}
    (np.zeros((0, 3), np.uint8), ValueError),  # empty
    (np.array([["a"]]), TypeError),
])
def test_bad_masks_are_refused_with_a_clear_error(mask, error):
    with pytest.raises(error, match="mask"):
        cells_from_mask(mask)


def test_label_cells_matches_skimage_in_2d_and_3d():
    rng = np.random.default_rng(0)
    for shape in [(30, 40), (8, 12, 10)]:
        cells = rng.random(shape) < 0.45
        for connectivity in range(1, len(shape) + 1):
            ours = label_cells(cells, connectivity)
            theirs = measure.label(cells, connectivity=connectivity)
            assert ours.dtype == np.int32
            # same partition: a one-to-one map between the ids
            pairs = set(zip(ours.ravel().tolist(), theirs.ravel().tolist()))
            assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
        assert label_cells(cells).max() == measure.label(cells).max()  # default: full connectivity


def test_label_cells_rejects_bad_connectivity_and_non_bool():
    with pytest.raises(ValueError, match=r"connectivity must be an integer in \[1, 2\]"):
        label_cells(np.zeros((3, 3), bool), 3)
    with pytest.raises(TypeError, match="cells must be a bool array"):
        label_cells(np.zeros((3, 3), np.uint8))


def test_weight_map_reads_masks_by_the_one_rule():
    rng = np.random.default_rng(1)
    cells = rng.random((40, 40)) < 0.6
    expected = weight_map(cells)
    for spelling in (cells.astype(np.uint8), cells.astype(np.uint8) * 255, cells.astype(np.int32) * 7):
        assert np.array_equal(weight_map(spelling), expected)
    noisy = np.where(cells, 250, 4).astype(np.uint8)
    assert np.array_equal(weight_map(noisy, threshold=128), expected)


def test_to_instance_labels_labels_masks_and_keeps_ids():
    mask = np.array([[255, 0, 255], [255, 0, 0]], np.uint8)
    assert np.array_equal(to_instance_labels(mask), [[1, 0, 2], [1, 0, 0]])
    ids = np.array([[3, 0, 9], [3, 3, 0]], np.uint16)
    assert np.array_equal(to_instance_labels(ids), ids) and to_instance_labels(ids).dtype == np.int32
    with pytest.raises(ValueError, match="not a binary mask"):
        to_instance_labels(ids, binary=True, name="label.png")
    with pytest.raises(ValueError, match="negative"):
        check_labels(np.array([[-1, 0]]))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int32, np.int64, np.uint64])
def test_is_binary_mask_matches_its_definition_by_unique_values(dtype):
    """0 and at most one other value k > 0 (or one value >= 0), as np.unique lists them."""
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    for _ in range(300):
        candidates = np.array([0, 1, 2, 255 if info.max >= 255 else 3, int(info.max)]
                              + ([int(info.min), -1] if info.min < 0 else []), dtype=dtype)
        pool = rng.choice(candidates, size=rng.integers(1, 4))
        array = rng.choice(pool, size=tuple(rng.integers(1, 5, size=rng.integers(1, 4))))
        values = np.unique(array)
        expected = len(values) <= 2 and values[0] >= 0 and (len(values) == 1 or values[0] == 0)
        assert is_binary_mask(array) == expected, (array, values)
