"""Training tiles and the tf.data pipeline: overlap-tile geometry, exact weights, reproducibility."""
import numpy as np
import pytest
from skimage import io, measure

from unet_ref import reference
from unet_ref.pipeline import TileSampler, make_dataset
from unet_ref.reference import weight_context
from unet_ref.sizes import margin, output_size
from unet_ref.synthetic import synthetic_dataset, synthetic_sample
from unet_ref.images import mirror_pad
from unet_ref.weights import balanced_class_weights


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(3, size=96, seed=0)


@pytest.mark.parametrize("tile_size, depth", [(44, 1), (92, 2), (124, 3)])
def test_tile_shapes_follow_output_size(data, tile_size, depth):
    sampler = TileSampler(*data, tile_size, depth)
    image, label, weight = sampler.sample(0)
    m = output_size(tile_size, depth)
    assert image.shape == (tile_size, tile_size, 1) and label.shape == weight.shape == (m, m)
    assert (image.dtype, label.dtype, weight.dtype) == (np.float32, np.int32, np.float32)
    assert set(np.unique(label)) <= {0, 1} and 0 <= image.min() and image.max() <= 1 and weight.min() > 0


@pytest.mark.parametrize("sampler", ["plain", "fast"])
def test_unaugmented_tile_is_the_mirror_padded_image_around_its_output_crop(sampler):
    # an image exactly as large as the output crop: the crop is the image, the input tile
    # is the image mirror-padded by the margin, as the overlap-tile predictor pads it
    tile, depth = 92, 2
    m, pad = output_size(tile, depth), margin(depth)
    image, mask, labels = synthetic_sample(m, seed=1)
    tiles = TileSampler([image], [labels], tile, depth, augment=False, w0=10, sigma=5, sampler=sampler)
    tile_image, tile_label, tile_weight = tiles.sample(7)
    assert np.array_equal(tile_image[..., 0], mirror_pad(image, (pad, pad), (pad, pad)) / np.float32(255))
    assert np.array_equal(tile_label, (labels > 0).astype(np.int32))
    # oracle: the per-cell reference d1/d2 on the mirrored labels (mirrored copies are
    # cells of their own), the class weights of the un-padded image, the paper's formula
    c = weight_context(10, 5)
    region = measure.label(mirror_pad(labels, (c, c), (c, c)), background=0, connectivity=2)
    d1, d2 = (d.astype(np.float64) for d in reference.d1_d2(region))
    w_background, w_cell = balanced_class_weights(labels > 0)
    expected = np.where(region > 0, w_cell, w_background) + 10 * np.exp(-((d1 + d2) ** 2) / (2 * 5.0**2))
    np.testing.assert_allclose(tile_weight, expected[c:c + m, c:c + m], rtol=1e-6)


@pytest.mark.parametrize("sampler", ["plain", "fast"])
def test_augmented_image_and_label_tiles_are_aligned(sampler):
    # image = a function of the mask: after warp, flip and gray values the dark pixels of
    # the output crop must still be the membrane of the label tile
    _, mask, labels = synthetic_sample(128, seed=2)
    image = np.where(mask > 0, 200, 40).astype(np.uint8)
    tiles = TileSampler([image], [labels], 92, 2, augment=True, seed=3, sampler=sampler)
    pad = margin(2)
    for index in range(5):
        tile_image, tile_label, _ = tiles.sample(index)
        crop = tile_image[pad:-pad, pad:-pad, 0]
        threshold = (crop[tile_label == 1].mean() + crop[tile_label == 0].mean()) / 2
        assert np.mean((crop > threshold) == (tile_label == 1)) > 0.97


def test_same_seed_gives_the_same_batches_with_parallel_calls(data):
    def batches(seed, parallel):
        data_set = make_dataset(*data, tile_size=44, depth=1, batch_size=3, seed=seed, num_parallel_calls=parallel)
        return [[t.numpy() for t in batch] for batch in data_set.take(2)]

    a, b, c = batches(0, 2), batches(0, 1), batches(1, 2)
    assert all(np.array_equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))
    assert not np.array_equal(a[0][0], c[0][0])
    assert [t.shape for t in a[0]] == [(3, 44, 44, 1), (3, 28, 28), (3, 28, 28)]
    assert all(not np.array_equal(a[0][0][i], a[0][0][j]) for i in range(3) for j in range(i))


def test_num_tiles_cycles_a_fixed_set_of_tiles(data):
    batches = [[t.numpy() for t in b] for b in make_dataset(*data, tile_size=44, depth=1, batch_size=2,
                                                            augment=False, num_tiles=4).take(4)]
    for first, again in ((0, 2), (1, 3)):
        assert all(np.array_equal(x, y) for x, y in zip(batches[first], batches[again]))
    assert not np.array_equal(batches[0][0], batches[1][0])
    with pytest.raises(ValueError, match="num_tiles"):
        make_dataset(*data, tile_size=44, depth=1, batch_size=2, num_tiles=3)


def test_dataset_has_static_shapes_for_keras(data):
    spec = make_dataset(*data, tile_size=44, depth=1, batch_size=2).element_spec
    assert [tuple(s.shape) for s in spec] == [(2, 44, 44, 1), (2, 28, 28), (2, 28, 28)]
    assert [s.dtype.name for s in spec] == ["float32", "int32", "float32"]


def test_images_from_files_with_and_without_cache(tmp_path, data):
    images, labels = data
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        io.imsave(tmp_path / f"{i}.png", image, check_contrast=False)
        io.imsave(tmp_path / f"{i}_mask.png", ((label > 0) * 255).astype(np.uint8), check_contrast=False)
        paths.append((tmp_path / f"{i}.png", tmp_path / f"{i}_mask.png"))
    from_memory = TileSampler(images, (labels > 0).astype(np.uint8) * 255, 44, 1, seed=5)
    for cache in (True, False):
        from_files = TileSampler([p for p, _ in paths], [q for _, q in paths], 44, 1, seed=5, cache=cache)
        for index in range(3):
            assert all(np.array_equal(x, y) for x, y in zip(from_files.sample(index), from_memory.sample(index)))
        assert bool(from_files._prepared) == cache


def test_bad_arguments_raise_clear_errors(data):
    images, labels = data
    with pytest.raises(ValueError, match="nearest valid input sizes"):
        TileSampler(images, labels, 45, 1)
    with pytest.raises(ValueError, match="equal length"):
        TileSampler(images, labels[:2], 44, 1)
    with pytest.raises(ValueError, match=r"images\[0\]"):
        TileSampler([images[0][:50]], [labels[0]], 44, 1)
    with pytest.raises(TypeError, match=r"labels\[0\]"):
        TileSampler([images[0]], [labels[0].astype(float)], 44, 1)
    negative = labels[0].astype(np.int32)
    negative[:4] = -1
    with pytest.raises(ValueError, match=r"labels\[0\] has negative values"):
        TileSampler([images[0]], [negative], 44, 1)  # at once, not inside a tf.data worker later
    big_endian = labels[0].astype(">i4")  # e.g. read from a TIFF written on another machine
    swapped, native = (TileSampler([images[0]], [ids], 44, 1).sample(2) for ids in (big_endian, labels[0]))
    for a, b in zip(swapped, native):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(images, labels, tile_size=44, depth=1, batch_size=0)
    with pytest.raises(ValueError, match="context band"):  # before any tile is made
        TileSampler(images, labels, 44, 1, spacing=(1e-30, 1.0))


@pytest.mark.parametrize("w0, class_balance", [(10.0, True), (0.0, True), (0.0, False)])
def test_the_three_weightings_of_the_ablation(data, w0, class_balance):
    # (a) the paper's map, (b) class balance only, (c) no weights: every pixel weighs 1
    images, labels = data[0][:1], data[1][:1]  # one image: its class weights are known
    w_membrane, w_cell = balanced_class_weights(labels[0] > 0) if class_balance else (1.0, 1.0)
    sampler = TileSampler(images, labels, 44, 1, w0=w0, class_balance=class_balance)
    for index in range(3):
        _, cells, weights = sampler.sample(index)
        w_c = np.where(cells == 1, w_cell, w_membrane).astype(np.float32)
        if w0 == 0:
            assert np.array_equal(weights, w_c)
        else:  # the border term adds to w_c, somewhere a lot
            assert np.all(weights >= w_c) and weights.max() > w_c.max() + 1


@pytest.mark.parametrize("sampler", ["plain", "fast"])
def test_volumes_give_cubic_tiles_with_exact_3d_weight_maps(sampler):
    from unet_ref.weights import weight_map

    labels = np.kron(np.arange(1, 9).reshape(2, 2, 2), np.ones((12, 12, 12), int))  # 8 touching blocks
    labels[labels % 3 == 0] = 0
    volume = (labels * 20).astype(np.uint8)
    plain = TileSampler([volume], [labels], 44, 1, augment=False, sampler=sampler)
    image, cells, weights = plain.sample(0)
    assert (plain.ndim, image.shape, cells.shape, weights.shape) == (3, (44, 44, 44, 1), (28, 28, 28), (28, 28, 28))
    # un-augmented: the mirrored volume around the output crop, weighed with the whole region as context
    c = weight_context(10, 5)  # the 28 px crop is larger than the 24 px volume: it starts at 0, mirrored beyond
    region = measure.label(mirror_pad(labels, (c,) * 3, (28 + c - 24,) * 3)[:28 + 2 * c, :28 + 2 * c, :28 + 2 * c],
                           background=0, connectivity=3)
    expected = weight_map(labels=region, window=(slice(c, c + 28),) * 3,
                          class_weights=balanced_class_weights(labels > 0))
    assert np.array_equal(cells, (region[c:c + 28, c:c + 28, c:c + 28] > 0).astype(np.int32))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    augmented = TileSampler([volume], [labels], 44, 1, sampler=sampler)
    image, cells, weights = augmented.sample(3)
    assert image.shape == (44, 44, 44, 1) and set(np.unique(cells)) <= {0, 1} and weights.min() > 0


@pytest.mark.parametrize("sampler", ["plain", "fast"])
def test_anisotropic_pooling_gives_tiles_of_one_size_per_axis_with_exact_weight_maps(sampler):
    from unet_ref.weights import weight_map

    labels = np.kron(np.arange(1, 9).reshape(2, 2, 2), np.ones((4, 12, 12), int))  # (8, 24, 24): thin in z
    labels[labels % 3 == 0] = 0
    volume = (labels * 20).astype(np.uint8)
    # pooling (1, 2, 2): z never pooled, so its valid sizes are 1 apart and its margin 6 px, not 8
    plain = TileSampler([volume], [labels], (20, 44, 44), 1, pool_sizes=((1, 2, 2),), augment=False, sampler=sampler)
    image, cells, weights = plain.sample(0)
    assert (image.shape, cells.shape, weights.shape) == ((20, 44, 44, 1), (8, 28, 28), (8, 28, 28))
    c, m = weight_context(10, 5), (8, 28, 28)
    padded = mirror_pad(labels, (c,) * 3, tuple(k + c - n for k, n in zip(m, labels.shape)))
    region = measure.label(padded[:8 + 2 * c, :28 + 2 * c, :28 + 2 * c], background=0, connectivity=3)
    crop = tuple(slice(c, c + k) for k in m)
    expected = weight_map(labels=region, window=crop, class_weights=balanced_class_weights(labels > 0))
    assert np.array_equal(cells, (region[crop] > 0).astype(np.int32))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    image, cells, _ = TileSampler([volume], [labels], (20, 44, 44), 1, pool_sizes=((1, 2, 2),), sampler=sampler).sample(3)
    assert image.shape == (20, 44, 44, 1) and cells.shape == (8, 28, 28)
    with pytest.raises(ValueError, match="input size 45 on axis 1"):
        TileSampler([volume], [labels], 45, 1, pool_sizes=((1, 2, 2),))  # 45 is valid along z only
    with pytest.raises(ValueError, match="tile_size must be one number or 3 \(one per axis\)"):
        TileSampler([volume], [labels], (44, 44), 1)


@pytest.mark.parametrize("sampler", ["plain", "fast"])
def test_thick_sections_get_weight_maps_in_physical_units_and_a_thinner_context_along_z(sampler):
    from unet_ref.weights import weight_map

    labels = np.kron(np.arange(1, 9).reshape(2, 2, 2), np.ones((4, 12, 12), int))  # (8, 24, 24)
    labels[labels % 3 == 0] = 0
    spacing = (4.0, 1.0, 1.0)  # sections 4 px thick: sigma and the context band are in px of the plane
    plain = TileSampler([labels.astype(np.uint8)], [labels], (20, 44, 44), 1, pool_sizes=((1, 2, 2),),
                        spacing=spacing, augment=False, sampler=sampler)
    c = (8, 29, 29)  # the context band: ceil(29 / 4) = 8 sections, 29 px in the plane
    _, cells, weights = plain.sample(0)
    m = (8, 28, 28)
    padded = mirror_pad(labels, c, tuple(k + ck - n for k, ck, n in zip(m, c, labels.shape)))
    region = measure.label(padded[tuple(slice(0, k + 2 * ck) for k, ck in zip(m, c))], background=0, connectivity=3)
    crop = tuple(slice(ck, ck + k) for k, ck in zip(m, c))
    expected = weight_map(labels=region, window=crop, spacing=spacing, class_weights=balanced_class_weights(labels > 0))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert np.array_equal(cells, (region[crop] > 0).astype(np.int32))
    with pytest.raises(ValueError, match="spacing must be one number per axis"):
        TileSampler([labels.astype(np.uint8)], [labels], (20, 44, 44), 1, pool_sizes=((1, 2, 2),), spacing=(4.0, 1.0))


@pytest.mark.parametrize("ndim, spacing", [(2, (1.0, 3.0)), (3, (2.0, 1.0, 3.0))])
@pytest.mark.parametrize("rot90, flip", [(1, False), (3, True), (2, True)])
@pytest.mark.parametrize("sampler", ["plain", "fast"])
def test_a_turned_tile_is_the_turned_tile_of_the_image_orientation_with_its_spacing(monkeypatch, ndim, spacing,
                                                                                    rot90, flip, sampler):
    """Pixels wider than tall (spacing differs within the plane): the weights are computed
    where the spacing holds, in the image's orientation, and then turned with the tile, so a
    tile turned by 90 degrees is the un-turned tile (checked against the reference above),
    turned."""
    from unet_ref import pipeline
    from unet_ref.augment import Transform, dihedral
    from unet_ref.synthetic import synthetic_volumes

    if ndim == 2:
        images, labels = synthetic_dataset(1, size=96, seed=1)
        tile, depth = 92, 2
    else:
        images, labels = synthetic_volumes(1, shape=(20, 48, 48), seed=1)
        tile, depth = (36, 44, 44), 1
    plain = TileSampler(images, labels, tile, depth, spacing=spacing, augment=False, seed=5, sampler=sampler)
    expected = [plain.sample(index) for index in range(3)]

    def turn_only(shape, rng, **options):  # no deformation, no shift: only the tile's turn
        return Transform(np.zeros((ndim,) + (3,) * ndim), tuple(shape), (0.0,) * ndim, rot90, flip)

    monkeypatch.setattr(pipeline, "random_transform", turn_only)
    turned = TileSampler(images, labels, tile, depth, spacing=spacing, seed=5, sampler=sampler)
    axes = (ndim - 2, ndim - 1)
    for index, (_, cells, weights) in enumerate(expected):
        _, turned_cells, turned_weights = turned.sample(index)
        assert np.array_equal(turned_cells, dihedral(cells, rot90, flip, axes))
        np.testing.assert_array_equal(turned_weights, dihedral(weights, rot90, flip, axes))


def test_the_plain_sampler_gives_the_fast_batches_through_tf_data(data):
    def batches(sampler):
        stream = make_dataset(*data, tile_size=44, depth=1, batch_size=2, seed=4, sampler=sampler)
        return [[t.numpy() for t in batch] for batch in stream.take(2)]

    for plain, fast in zip(batches("plain"), batches("fast")):
        np.testing.assert_allclose(plain[0], fast[0], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(plain[1], fast[1])
        np.testing.assert_allclose(plain[2], fast[2], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="sampler must be 'fast' or 'plain'"):
        make_dataset(*data, tile_size=44, depth=1, sampler="quick")


def test_the_tutorial_preset_trains_a_few_steps_on_the_plain_tiles(tmp_path):
    from unet_ref.train import resolve_config, train

    config = resolve_config("tutorial", dict(sampler="plain", epochs=1, steps_per_epoch=3, validation_steps=1,
                                             synthetic_count=4, val_count=1, val_pixel_error=False, verbose=0,
                                             out=str(tmp_path / "run")))
    _, history = train(config)
    assert np.isfinite(history.history["loss"]).all() and (tmp_path / "run" / "model.keras").exists()
