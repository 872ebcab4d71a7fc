"""Specification of the plain training tile (unet_ref.tiles): the cells of the mirrored
labels, the weights of the whole warped image, and nothing compiled on its path."""
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage import measure

from unet_ref import reference
from unet_ref.augment import random_transform, sample_positions
from unet_ref.sizes import output_size
from unet_ref.synthetic import synthetic_dataset
from unet_ref.tiles import mirrored_cells, training_tile


def far_mirrored_cells(labels, positions):
    """The oracle: the labels mirrored 5 image lengths beyond every position (np.pad
    "reflect"), skimage's connected regions of equal id there, read at the nearest sample."""
    pad = 5 * max(labels.shape) + 2
    far = measure.label(np.pad(labels, pad, mode="reflect"), background=0, connectivity=labels.ndim)
    return far[tuple(np.rint(positions).astype(int) + pad)]


def assert_same_partition(ours, expected):
    assert np.array_equal(ours == 0, expected == 0)
    pairs = set(zip(ours[ours > 0].tolist(), expected[expected > 0].tolist()))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


@st.composite
def labels_and_positions(draw):
    """Small 2-D or 3-D labels with few ids, and positions across several mirrored copies
    of the image on either side, a third of them half-way between two samples."""
    ndim = draw(st.sampled_from([2, 3]))
    shape = draw(st.tuples(*[st.integers(1, 6)] * ndim))
    labels = draw(arrays(np.int32, shape, elements=st.integers(0, 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    positions = np.stack([rng.uniform(-3 * n, 4 * n, (4, 5, 6)[:ndim]) for n in shape])
    ties = rng.random(positions.shape) < 1 / 3
    positions[ties] = np.floor(positions[ties]) + 0.5
    return labels, positions


@settings(max_examples=150, deadline=None)
@given(labels_and_positions())
def test_mirrored_cells_are_the_regions_of_the_labels_mirrored_far_beyond_every_position(case):
    labels, positions = case
    assert_same_partition(mirrored_cells(labels, positions), far_mirrored_cells(labels, positions))


def test_a_mirror_image_of_a_cell_is_one_cell_where_it_joins_beyond_the_positions():
    # a U whose arms end 1 px from the left border: beyond that border its mirror image is a
    # U too, whose arms (x = -1, -2) join only at x = -3, further out than any position
    u_opening_left = np.array([[0, 1, 1, 1, 0, 0],
                               [0, 0, 0, 1, 0, 0],
                               [0, 1, 1, 1, 0, 0]], np.int32)
    positions = np.array([[0.0, 2.0, 0.0, 2.0], [-2.0, -2.0, 2.0, 2.0]])[:, None, :]  # (2, 1, 4)
    cells = mirrored_cells(u_opening_left, positions)[0]
    assert cells[0] == cells[1] != cells[2] == cells[3] > 0  # the mirror image's arms: one cell, not the U
    assert_same_partition(cells, far_mirrored_cells(u_opening_left, positions)[0])


@pytest.mark.parametrize("spacing", [None, (1.0, 2.0)])
def test_the_weights_are_those_of_a_much_larger_warped_region(spacing):
    # the context band makes the tile's weights those of the whole warped image, to 1e-6:
    # oracle, the same cells read over a region 40 px wider on every side
    images, labels = synthetic_dataset(1, size=96, seed=4)
    image, labels = images[0] / 255.0, labels[0]
    n, m = 92, output_size(92, 2)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        corner = tuple(int(v) for v in rng.integers(0, 96 - m + 1, 2))
        transform = random_transform(labels.shape, rng, spacing=spacing)
        _, cells, weights = training_tile(image, labels, corner, (n, n), (m, m), transform, spacing=spacing)
        band = [math.ceil(reference.weight_context() / s) + 40 for s in (spacing or (1.0, 1.0))]
        wide = mirrored_cells(labels, sample_positions(transform, [k - b for k, b in zip(corner, band)],
                                                        [m + 2 * b for b in band]))
        expected = reference.weight_map(labels=wide, spacing=spacing,
                                        class_weights=reference.balanced_class_weights(labels > 0))
        expected = np.rot90(expected[band[0]:band[0] + m, band[1]:band[1] + m], transform.rot90)
        expected = expected[:, ::-1] if transform.flip else expected
        np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-6)
        assert np.array_equal(cells, (np.rot90(wide[band[0]:band[0] + m, band[1]:band[1] + m], transform.rot90)
                                      [:, ::-1 if transform.flip else 1] > 0).astype(np.int32))


def test_the_plain_tile_imports_nothing_compiled_and_nothing_of_the_fast_path():
    code = ("import sys, unet_ref.tiles; "
            "print(sorted(m for m in sys.modules if m.startswith('unet_ref'))); "
            "print(sorted(n for n, m in sys.modules.items() if (getattr(m, '__file__', None) or '').endswith("
            "('.so', '.pyd')) and n.startswith('unet_ref')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert eval(out[0]) == ["unet_ref", "unet_ref.augment", "unet_ref.checks", "unet_ref.images",
                            "unet_ref.reference", "unet_ref.tiles"]
    assert eval(out[1]) == []


def test_bad_tile_arguments_are_refused_with_the_shapes():
    image, labels = np.zeros((20, 20)), np.zeros((20, 20), np.int32)
    with pytest.raises(ValueError, match=r"labels \(20, 21\)"):
        training_tile(image, np.zeros((20, 21), np.int32), (0, 0), (44, 44), (28, 28))
    with pytest.raises(ValueError, match=r"corner \(0,\)"):
        training_tile(image, labels, (0,), (44, 44), (28, 28))
