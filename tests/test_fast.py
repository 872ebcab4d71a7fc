"""The fast path equals the plain one: each speed-up of unet_ref.fast against the plain
function it accelerates (unet_ref.augment, unet_ref.tiles) or against skimage / scipy."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import measure
from test_augment import identity, sampling_cases
from test_tiles import assert_same_partition, labels_and_positions

from unet_ref import augment, reference
from unet_ref.fast import warp as fast
from unet_ref.fast.cells import border_crossings, context_spans, split_regions, warp_cells
from unet_ref.fast.tile import FastTiles
from unet_ref.pipeline import TileSampler
from unet_ref.synthetic import synthetic_dataset, synthetic_sample, synthetic_volumes
from unet_ref.tiles import mirrored_cells


# --- the elastic deformation (unet_ref.fast.warp = unet_ref.augment) --------------------------


@pytest.mark.parametrize("shape, top_left, size", [((50, 30), (-7, 4), (70, 20)),
                                                  ((21, 17, 13), (-5, 0, 3), (31, 17, 16))])
@pytest.mark.parametrize("elastic", [True, False])
def test_a_position_field_holds_the_sample_positions(shape, top_left, size, elastic):
    t = augment.random_transform(shape, np.random.default_rng(4))
    field = fast.position_field(t, top_left, size, elastic)
    np.testing.assert_allclose(np.asarray(field), augment.sample_positions(t, top_left, size, elastic), rtol=0,
                               atol=1e-9)


@pytest.mark.parametrize("shape, size, window", [((50, 30), (70, 20), np.s_[3:60, 5:17]),
                                                 ((21, 17, 13), (31, 17, 16), np.s_[2:30, 0:17, 7:9])])
def test_a_position_field_window_gives_the_window_of_the_positions(shape, size, window):
    # oracle: the written-out positions of the whole window, sliced
    t = augment.random_transform(shape, np.random.default_rng(5))
    field = fast.position_field(t, (-4,) * len(shape), size)
    everything = np.asarray(field)
    assert np.array_equal(np.asarray(field.window(window)), everything[(slice(None),) + window])
    image = np.random.default_rng(6).random(shape)
    # the loops read a window of the field as they read the sliced array, bit for bit
    assert np.array_equal(fast.warp(image, t, order=3, positions=field.window(window)),
                          fast.warp(image, t, order=3, positions=everything[(slice(None),) + window]))
    with pytest.raises(ValueError, match="step 1"):
        field.window(tuple(slice(0, n, 2) for n in size))


def test_prefiltered_coefficients_give_the_plain_warp():
    image = synthetic_sample(64, seed=0)[0] / 255.0
    t = augment.random_transform(image.shape, np.random.default_rng(4))
    plain = augment.warp(image, t, order=3, top_left=(-10, 7), size=(50, 70))
    from_coefficients = fast.warp(fast.spline_coefficients(image), t, order=3, top_left=(-10, 7), size=(50, 70),
                                  prefiltered=True)
    np.testing.assert_allclose(from_coefficients, plain, rtol=0, atol=1e-6)


@settings(max_examples=300, deadline=None)
@given(sampling_cases())
def test_the_cubic_loop_equals_the_plain_warp(case):
    # ext/_warp.pyx against scipy's spline interpolation (augment.warp), channel by channel
    image, positions = case
    t = identity(image.shape[:-1])
    ours = fast.warp(image, t, order=3, positions=positions)
    np.testing.assert_allclose(ours, augment.warp(image, t, order=3, positions=positions), rtol=0, atol=1e-6)


@settings(max_examples=300, deadline=None)
@given(sampling_cases())
def test_the_nearest_loop_equals_the_plain_warp(case):
    image, positions = case
    labels = (image[..., 0] * 1e6).astype(np.int64)
    t = identity(labels.shape)
    np.testing.assert_array_equal(fast.warp(labels, t, order=0, positions=positions),
                                  augment.warp(labels, t, order=0, positions=positions))
    np.testing.assert_array_equal(fast.warp(image, t, order=0, positions=positions),  # float, channels
                                  augment.warp(image, t, order=0, positions=positions))


@pytest.mark.parametrize("shape", [(8, 8), (4, 8, 8)])
def test_the_loops_refuse_positions_that_are_not_finite(shape):
    positions = np.zeros((len(shape), 3, 4, 4)[-len(shape) - 1:])
    positions[(-1,) + (1,) * len(shape)] = np.nan
    for order in (0, 3):
        with pytest.raises(ValueError, match="positions must be a finite"):
            fast.warp(np.zeros(shape), identity(shape), order=order, positions=positions)
    with pytest.raises(ValueError, match="order must be 0 or 3"):
        fast.warp(np.zeros(shape), identity(shape), order=1)


# --- the cells of the mirrored image (unet_ref.fast.cells = tiles.mirrored_cells) -------------


@settings(max_examples=80, deadline=None)
@given(labels_and_positions())
def test_warped_cells_are_the_plain_mirrored_cells(case):
    labels, positions = case
    cells = split_regions(labels)
    ours = warp_cells(cells, border_crossings(cells), positions)
    assert_same_partition(ours, mirrored_cells(labels, positions))


def test_warped_cells_refuse_positions_that_are_not_finite_or_far_away():
    cells = split_regions(np.array([[1, 0], [0, 2]]))
    positions = np.zeros((2, 3, 3))
    positions[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        warp_cells(cells, border_crossings(cells), positions)
    positions[1, 1, 1] = 1e6
    with pytest.raises(ValueError, match="image lengths"):
        warp_cells(cells, border_crossings(cells), positions)
    positions[1, 1, 1] = 1.0
    with pytest.raises(ValueError, match="one entry of crossings each"):  # never read past crossings
        warp_cells(cells, border_crossings(cells)[:1], positions)
    with pytest.raises(ValueError, match="start <= stop <= 3"):  # never write past a row
        warp_cells(cells, border_crossings(cells), positions, spans=np.full((3, 2), [0, 99]))
    with pytest.raises(ValueError, match=r"\(2, \*size\)"):
        warp_cells(cells, border_crossings(cells), positions[:1])


def test_split_regions_gives_each_piece_of_an_id_its_own_id():
    labels = np.array([[5, 5, 0, 5], [0, 0, 0, 5], [2, 0, 2, 2]])
    regions = split_regions(labels)
    assert regions.max() == 4  # 5 -> two pieces, 2 -> two pieces
    for piece in range(1, 5):
        assert len(np.unique(labels[regions == piece])) == 1


def same_partition(a, b):
    """a and b split the pixels into the same groups (whatever the numbers)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@st.composite
def id_arrays(draw):
    """Small 1-, 2- and 3-D id arrays with few ids (so that equal ids touch often) and a connectivity."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.int64, np.uint64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ids = rng.integers(0, draw(st.integers(1, 5)), shape).astype(dtype)
    return ids, draw(st.sampled_from([None, *range(1, ndim + 1)]))


@settings(max_examples=400, deadline=None)
@given(id_arrays())
def test_split_regions_equals_skimage_label_as_a_partition_numbered_in_raster_order(case):
    ids, connectivity = case
    regions = split_regions(ids, connectivity)
    expected = measure.label(ids, background=0, connectivity=connectivity or ids.ndim)
    assert regions.dtype == np.int32 and regions.shape == ids.shape
    assert regions.max() == expected.max() and same_partition(regions, expected)
    assert np.array_equal(regions == 0, ids == 0)
    flat = regions.ravel()
    firsts = [int(np.argmax(flat == k)) for k in range(1, flat.max() + 1)]
    assert firsts == sorted(firsts)  # 1..n in raster order of their first pixels


def test_split_regions_of_a_training_tile_volume_equal_skimage():
    from unet_ref.synthetic import synthetic_volumes

    _, labels = synthetic_volumes(1, shape=(24, 64, 64), seed=3)
    cells = labels[0]
    # a mirrored copy one empty plane away: every cell twice, under the same id
    twice = np.concatenate([cells, np.zeros_like(cells[:1]), cells[::-1]])
    regions = split_regions(twice)
    assert same_partition(regions, measure.label(twice, background=0))
    assert regions.max() == 2 * cells.max() >= 10


def test_split_regions_rejects_what_it_cannot_label():
    with pytest.raises(ValueError, match="1, 2 or 3 axes"):
        split_regions(np.zeros((2, 2, 2, 2), np.int32))
    with pytest.raises(ValueError, match="connectivity"):
        split_regions(np.zeros((2, 2), np.int32), connectivity=3)
    with pytest.raises(ValueError, match="negative"):
        split_regions(np.array([[-1, 0]]))


@pytest.mark.parametrize("shape, crop, reach, spacing", [
    ((70, 78, 78), (slice(29, 41), slice(29, 49), slice(29, 49)), 29, None),
    ((30, 40), (slice(10, 20), slice(5, 30)), 7.5, (2.0, 0.5)),
    ((9, 12, 7), (slice(4, 5), slice(0, 12), slice(6, 7)), 3, (3.0, 1.0, 1.0)),
])
def test_context_spans_are_the_pixels_within_reach_of_the_crop(shape, crop, reach, spacing):
    # oracle: the distance of every pixel to the crop box, brute force
    steps = np.ones(len(shape)) if spacing is None else np.asarray(spacing)
    squared = sum((steps[a] * np.maximum(np.maximum(crop[a].start - index, index - (crop[a].stop - 1)), 0)) ** 2
                  for a, index in enumerate(np.indices(shape)))
    spans = context_spans(shape, crop, reach, spacing)
    j = np.arange(shape[-1])
    inside = (j >= spans[..., :1]) & (j < spans[..., 1:])
    assert np.array_equal(inside, squared <= reach**2)


# --- the training tile (unet_ref.fast.tile = unet_ref.tiles.training_tile) ---------------------


def u_shaped_cell(ndim):
    """A U-shaped cell whose arms reach the top of a 200 x 200 image while its bottom bar lies
    180 px down, and a block beside it: a crop at the top sees the arms as two pieces that
    join beyond the label region (extruded along z in 3-D)."""
    labels = np.zeros((200, 200), np.int32)
    labels[0:185, 60:72] = labels[0:185, 100:112] = labels[170:185, 60:112] = 1  # arms and bar
    labels[0:40, 130:150] = 2
    labels = labels if ndim == 2 else np.repeat(labels[None], 12, axis=0)
    return (labels * 100).astype(np.uint8), labels


def cases():
    """(name, images, labels, tile, depth, pool_sizes, spacing): dense and sparse cells, 2-D and
    3-D, anisotropic spacing, a cell that leaves the label region and comes back."""
    images, labels = synthetic_dataset(2, size=96, seed=0)
    yield "2d-dense", images, labels, 92, 2, None, None
    yield "2d-spacing", images, labels, 92, 2, None, (1.0, 2.5)
    image, labels = u_shaped_cell(2)
    yield "2d-leaves-and-returns", [image], [labels], 92, 2, None, None
    volumes, volume_labels = synthetic_volumes(1, shape=(16, 40, 40), seed=1)
    yield "3d-dense-spacing", volumes, volume_labels, (20, 44, 44), 1, ((1, 2, 2),), (4.0, 1.0, 1.0)
    sparse = np.zeros((24, 48, 48), np.int32)  # 3 px cubes 20 px apart: second nearest cells far away
    for n, corner in enumerate(np.ndindex(1, 2, 2)):
        z, y, x = (8 + 20 * np.array(corner)).tolist()
        sparse[z:z + 3, y:y + 3, x:x + 3] = n + 1
    yield "3d-sparse", [np.random.default_rng(0).random(sparse.shape)], [sparse], (20, 44, 44), 1, ((1, 2, 2),), None
    image, labels = u_shaped_cell(3)
    yield "3d-leaves-and-returns", [image], [labels], (16, 44, 44), 1, ((1, 2, 2),), None


@pytest.mark.parametrize("augment_tiles", [False, True])
@pytest.mark.parametrize("case", list(cases()), ids=lambda case: case[0])
def test_the_fast_tiles_are_the_plain_tiles(case, augment_tiles):
    """For the same draws: the cells exactly, the image to float32 rounding (the cubic taps are
    summed in another order), the weights exactly where the border term exceeds 1e-5 and to
    1e-6 elsewhere (the fast path samples only the region's pixels within the context of the
    crop), to 1 float32 ulp of d1, d2 with a spacing that is not whole."""
    _, images, labels, tile, depth, pools, spacing = case
    options = dict(pool_sizes=pools, spacing=spacing, augment=augment_tiles, seed=3)
    plain = TileSampler(images, labels, tile, depth, sampler="plain", **options)
    quick = TileSampler(images, labels, tile, depth, sampler="fast", **options)
    for index in range(3):
        i, corner, _, _ = quick.draw(index)
        assert plain.draw(index)[:2] == (i, corner)
        (image, cells, weights), (fast_image, fast_cells, fast_weights) = plain.sample(index), quick.sample(index)
        np.testing.assert_allclose(fast_image, image, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(fast_cells, cells)
        np.testing.assert_allclose(fast_weights, weights, rtol=1e-6, atol=1e-6)
        if spacing is None or all(float(s).is_integer() for s in spacing):
            w_background, w_cell = reference.balanced_class_weights(quick._read(i)[1] > 0)
            border = weights > np.where(cells == 1, w_cell, w_background) + 1e-5
            assert np.array_equal(fast_weights[border], weights[border])


def test_the_weights_of_a_cell_that_leaves_the_region_and_comes_back_are_those_of_the_whole_image():
    # un-augmented, the tile's weights are the whole image's weight map, cropped: the U is one
    # cell, with no border term between its arms
    image, labels = u_shaped_cell(2)
    for sampler in ("plain", "fast"):
        tiles = TileSampler([image], [labels], 92, 2, augment=False, sampler=sampler, seed=0)
        for index in range(4):
            _, corner, _, _ = tiles.draw(index)
            whole = reference.weight_map(labels=labels, class_weights=reference.balanced_class_weights(labels > 0))
            crop = tuple(slice(k, k + 52) for k in corner)
            np.testing.assert_allclose(tiles.sample(index)[2], whole[crop], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", [c for c in cases() if c[0] in ("2d-dense", "3d-dense-spacing", "3d-sparse")],
                         ids=lambda case: case[0])
def test_a_wider_context_band_changes_the_fast_weights_by_less_than_1e_6(case):
    # the band and the spans it samples make the weights those of a much larger warped region
    _, images, labels, tile, depth, pools, spacing = case
    sampler = TileSampler(images, labels, tile, depth, pool_sizes=pools, spacing=spacing, seed=5)
    wide = FastTiles(sampler.tile_shape, sampler.output_shape, spacing=sampler.spacing,
                     context=sampler._fast.context + 40)
    for index in range(3):
        i, corner, transform, gray = sampler.draw(index)
        a, b = sampler.sample(index), wide.tile(sampler._load(i), corner, transform, gray)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        np.testing.assert_allclose(a[2], b[2], rtol=0, atol=2e-6)
