"""The synthetic EM-like data: deterministic, ISBI-like, masks and instance labels agree."""
import numpy as np
import pytest
from scipy import ndimage

from unet_ref.synthetic import synthetic_dataset, synthetic_sample
from unet_ref.weights import weight_map

EIGHT = np.ones((3, 3), bool)


def test_same_seed_gives_the_same_sample_and_other_seeds_differ():
    a, b, c = synthetic_sample(96, seed=3), synthetic_sample(96, seed=3), synthetic_sample(96, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_is_labels_and_labels_are_the_8_connected_components_of_the_mask(seed):
    image, mask, labels = synthetic_sample((160, 224), seed=seed)
    assert image.shape == mask.shape == labels.shape == (160, 224)
    assert (image.dtype, mask.dtype, labels.dtype) == (np.uint8, np.uint8, np.int32)
    assert np.array_equal(mask, (labels > 0).astype(np.uint8) * 255)
    # what weight_map(mask) sees (scipy's 8-connected labelling) is exactly these cells
    relabelled, n = ndimage.label(mask > 0, structure=EIGHT)
    assert np.array_equal(relabelled, labels) and n == labels.max()
    assert np.array_equal(weight_map(mask), weight_map(labels=labels))


def test_a_512_slice_has_isbi_like_cells_membranes_and_contrast():
    # ISBI 2012 slices: ~100-136 cells, 18-27 % membrane, membranes darker than cells
    image, mask, labels = synthetic_sample(512, seed=0)
    assert 90 <= labels.max() <= 170
    assert 0.15 <= np.mean(mask == 0) <= 0.30
    assert np.median(image[mask == 0]) + 30 < np.median(image[mask > 0])
    assert 20 < image.std() < 60  # textured, not flat


def test_synthetic_dataset_is_prefix_stable_and_stacks_labels():
    images, labels = synthetic_dataset(3, size=64, seed=5)
    more_images, more_labels = synthetic_dataset(4, size=64, seed=5)
    assert images.shape == labels.shape == (3, 64, 64) and labels.dtype == np.int32
    assert np.array_equal(more_images[:3], images) and np.array_equal(more_labels[:3], labels)
    image, _, sample_labels = synthetic_sample(64, seed=np.random.default_rng([5, 1]))
    assert np.array_equal(images[1], image) and np.array_equal(labels[1], sample_labels)


@pytest.mark.parametrize("kwargs, error", [
    (dict(size=8), ValueError), (dict(size=(32,)), TypeError), (dict(size=32.0), TypeError),
    (dict(size=32, seed=-1), ValueError), (dict(size=32, seed="a"), TypeError),
])
def test_bad_arguments_raise_clear_errors(kwargs, error):
    with pytest.raises(error, match="size|seed"):
        synthetic_sample(**kwargs)


def test_bad_dataset_count_raises():
    with pytest.raises(ValueError, match="count"):
        synthetic_dataset(0)


def test_touching_cells_touch_along_long_borders_separated_by_a_thin_gap():
    from unet_ref.masks import label_cells
    from unet_ref.synthetic import touching_cells_sample

    image, mask, labels = touching_cells_sample(192, seed=3)
    assert np.array_equal(label_cells(mask > 0), labels)  # the mask's 8-connected cells are the labels
    # many cells have a neighbour within 2 px (a gap, not a wide membrane) ...
    near = ndimage.grey_dilation(labels, size=(5, 5))
    touching = {int(k) for k in np.unique(labels[(labels > 0) & (near > labels)])}
    assert len(touching) >= labels.max() // 2
    # ... and the gap is faint in the image: much weaker than the cell/background edge
    # the gap: background pixels with two different cells within 2 px
    lowest = ndimage.grey_erosion(np.where(labels > 0, labels, labels.max() + 1), size=(5, 5))
    gap = (labels == 0) & (lowest <= labels.max()) & (lowest != near)
    background = ndimage.binary_erosion(labels == 0, iterations=6)
    cells = ndimage.binary_erosion(labels > 0, iterations=3)
    assert image[cells].mean() - image[gap].mean() < 0.3 * (image[cells].mean() - image[background].mean())


def test_synthetic_volumes_are_deterministic_and_labels_are_the_26_connected_cells_of_the_mask():
    from unet_ref.masks import label_cells
    from unet_ref.synthetic import synthetic_volume, synthetic_volumes

    image, mask, labels = synthetic_volume((20, 40, 48), seed=1)
    assert image.shape == mask.shape == labels.shape == (20, 40, 48) and image.dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip((image, mask, labels), synthetic_volume((20, 40, 48), seed=1)))
    assert not np.array_equal(image, synthetic_volume((20, 40, 48), seed=2)[0])
    assert np.array_equal(mask, (labels > 0) * 255) and np.array_equal(label_cells(mask > 0), labels)
    assert labels.max() >= 3 and 0.15 < np.mean(mask == 0) < 0.5
    assert np.median(image[mask == 0]) + 25 < np.median(image[mask > 0])  # dark membranes
    images, stack = synthetic_volumes(2, shape=(16, 24, 24), seed=3)
    assert images.shape == stack.shape == (2, 16, 24, 24)
    assert np.array_equal(stack[1], synthetic_volume((16, 24, 24), seed=np.random.default_rng([3, 1]))[2])


@pytest.mark.parametrize("shape, error", [((32, 32), TypeError), ((8, 32, 32), ValueError), ((16.0, 32, 32), TypeError)])
def test_bad_volume_shapes_raise_clear_errors(shape, error):
    from unet_ref.synthetic import synthetic_volume

    with pytest.raises(error, match="shape"):
        synthetic_volume(shape)
