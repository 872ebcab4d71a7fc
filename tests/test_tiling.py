"""Overlap-tile prediction: seam-free, aligned with the input, any size, TTA, clear errors.

The oracle is one forward pass of the model over the whole image, mirrored here with
np.pad by the margin (and up to the next valid size), then cropped to the image.
"""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from unet_ref.model import build_unet  # noqa: E402
from unet_ref.sizes import margin, output_size, valid_input_size  # noqa: E402
from unet_ref.memory import DEFAULT_MEMORY_BUDGET  # noqa: E402
from unet_ref.tiling import choose_tile_size, predict_cells, predict_tiled  # noqa: E402


def _unet(depth, in_channels=1, n_classes=2, base_filters=4):
    keras.utils.set_random_seed(0)
    return build_unet(base_filters=base_filters, depth=depth, n_classes=n_classes, in_channels=in_channels)


@pytest.fixture(scope="module")
def unet3():
    """Depth 3 (margin 44 px, pooling grid 8 px): deep enough that tile origins off the
    grid would change the result (output sizes are 4 mod 8)."""
    return _unet(depth=3)


@pytest.fixture(scope="module")
def unet_rgb():
    return _unet(depth=2, in_channels=3, n_classes=3)


def one_pass_over_mirrored_image(model, image, depth):
    """Oracle: mirror (numpy 'reflect') to a valid size, one forward pass, crop, softmax."""
    image = image if image.ndim == 3 else image[..., None]
    h, w = image.shape[:2]
    m = margin(depth)
    hp, wp = valid_input_size(h + 2 * m, depth), valid_input_size(w + 2 * m, depth)
    padded = np.pad(image, ((m, hp - h - m), (m, wp - w - m), (0, 0)), mode="reflect")
    logits = keras.ops.convert_to_numpy(model(padded[None].astype(np.float32), training=False))[0]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True))[:h, :w]


def _image(*shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_result_does_not_depend_on_tile_size_and_equals_one_pass_over_mirrored_image(unet3):
    image = _image(97, 83)  # odd sizes: last tiles reach into the mirrored border
    small = predict_tiled(unet3, image, tile_size=100)  # 12 px output tiles, 8x7 tiles
    large = predict_tiled(unet3, image, tile_size=(140, 116))
    default = predict_tiled(unet3, image)
    oracle = one_pass_over_mirrored_image(unet3, image, depth=3)
    assert small.shape == (97, 83, 2) and small.dtype == np.float32
    np.testing.assert_allclose(small, large, atol=1e-5)
    np.testing.assert_allclose(small, oracle, atol=1e-5)
    np.testing.assert_allclose(default, oracle, atol=1e-5)
    np.testing.assert_allclose(small.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 300), (300, 7), (45, 1)])
def test_tiny_and_flat_images_get_mirrored_context_wider_than_themselves(unet3, shape):
    # a 1 x 1 image needs 44 px of context per side: np.pad reflects repeatedly
    image = _image(*shape, seed=1)
    result = predict_tiled(unet3, image, tile_size=100)
    assert result.shape == shape + (2,)
    np.testing.assert_allclose(result, one_pass_over_mirrored_image(unet3, image, depth=3), atol=1e-5)


def test_multichannel_images_and_stacks_are_predicted_image_by_image(unet_rgb):
    stack = _image(3, 30, 41, 3)
    result = predict_tiled(unet_rgb, stack, tile_size=44)
    assert result.shape == (3, 30, 41, 3)
    for image, probabilities in zip(stack, result):
        np.testing.assert_allclose(probabilities, one_pass_over_mirrored_image(unet_rgb, image, depth=2), atol=1e-5)


def test_a_3d_grayscale_array_is_one_image_unless_stack_is_true(unet3):
    stack = _image(3, 21, 26)
    with pytest.raises(ValueError, match="stack=True"):
        predict_tiled(unet3, stack)  # read as (H, W, C) with C = 26 != 1: an error, not a guess
    result = predict_tiled(unet3, stack, stack=True)
    assert result.shape == (3, 21, 26, 2)
    np.testing.assert_allclose(result[2], predict_tiled(unet3, stack[2]), atol=1e-6)
    one = predict_tiled(unet3, stack[0][..., None])  # (H, W, 1) is one image
    np.testing.assert_allclose(one, result[0], atol=1e-6)


def test_integer_images_are_normalised_like_the_training_pipeline(unet3):
    image8 = np.random.default_rng(2).integers(0, 256, (40, 37), dtype=np.uint8)
    image16 = image8.astype(np.uint16) * 257  # same intensities on the 16-bit scale
    expected = predict_tiled(unet3, image8.astype(np.float32) / 255)
    np.testing.assert_allclose(predict_tiled(unet3, image8), expected, atol=1e-6)
    np.testing.assert_allclose(predict_tiled(unet3, image16), expected, atol=1e-5)


def test_tta_averages_the_eight_flips_and_rotations(unet3):
    image = _image(29, 45, seed=3)
    dihedral = [(k, f) for k in range(4) for f in (False, True)]
    expected = np.mean([
        np.rot90(p, -k)[:, ::-1] if f else np.rot90(p, -k)
        for k, f in dihedral
        for p in [predict_tiled(unet3, np.rot90(image[:, ::-1] if f else image, k).copy())]
    ], axis=0)
    np.testing.assert_allclose(predict_tiled(unet3, image, tta=True), expected, atol=1e-6)


@pytest.mark.parametrize("transform", [np.fliplr, np.flipud, np.rot90, np.transpose], ids=lambda f: f.__name__)
def test_tta_prediction_of_a_transformed_image_is_the_transformed_prediction(unet3, transform):
    image = _image(29, 45, seed=4)
    with_tta = predict_tiled(unet3, image, tta=True)
    np.testing.assert_allclose(predict_tiled(unet3, transform(image), tta=True),
                               _apply(transform, with_tta), atol=1e-5)
    # without TTA a random network is not equivariant, so the check above can fail
    plain = predict_tiled(unet3, image)
    assert np.abs(predict_tiled(unet3, transform(image)) - _apply(transform, plain)).max() > 1e-3


def _apply(transform, probabilities):  # (H, W, K): transform the spatial axes only
    return np.stack([transform(probabilities[..., c]) for c in range(probabilities.shape[-1])], axis=-1)


def test_memory_is_bounded_by_the_tile_batch_not_the_image(unet3, monkeypatch):
    seen = []
    predict_on_batch = unet3.predict_on_batch

    def spy(x):
        seen.append(np.shape(x))
        return predict_on_batch(x)

    monkeypatch.setattr(unet3, "predict_on_batch", spy)
    budget = 2**22  # 4 MiB: two 124 px tiles of a 4-filter network
    tile = choose_tile_size(unet3, 301, 256, batch_size=2, memory_budget=budget)
    result = predict_tiled(unet3, _image(301, 256, seed=5), memory_budget=budget, batch_size=2)
    monkeypatch.undo()
    assert max(tile) < 301 and all(s[1:3] == tile and s[0] <= 2 for s in seen)
    assert len(seen) > 4  # many batches, none holding the image
    np.testing.assert_allclose(result, one_pass_over_mirrored_image(unet3, _image(301, 256, seed=5), 3), atol=1e-5)


def test_default_tile_shrinks_to_cover_small_images_with_one_tile(unet3):
    assert choose_tile_size(unet3, 7, 300) == (valid_input_size(8 + 2 * 44, 3), valid_input_size(300 + 88, 3))
    rows, cols = choose_tile_size(unet3, 4096, 4096)  # large image: the budget decides
    assert rows == cols and output_size(rows, 3) < 4096
    assert choose_tile_size(unet3, 4096, 4096, memory_budget=DEFAULT_MEMORY_BUDGET // 16)[0] < rows


def test_progress_bar_can_be_forced_and_disabled(unet3, capsys):
    predict_tiled(unet3, _image(50, 50), tile_size=100, progress=True)
    assert "predict_tiled" in capsys.readouterr().err
    predict_tiled(unet3, _image(50, 50), tile_size=100, progress=False)
    assert "predict_tiled" not in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, image, error, message", [
    ({"tile_size": 101}, (30, 30), ValueError, r"tile_size.*nearest valid input sizes are \d+ or \d+"),
    ({"tile_size": 92}, (30, 30), ValueError, "pooling grid"),
    ({"tile_size": (100,)}, (30, 30), ValueError, r"tile_size must be one number or 2 \(one per axis\)"),
    ({"tile_size": 100.0}, (30, 30), TypeError, "tile_size"),
    ({"batch_size": 0}, (30, 30), ValueError, "batch_size"),
    ({"memory_budget": -1}, (30, 30), ValueError, "memory_budget"),
    ({}, (0, 30), ValueError, "empty"),
    ({}, (30,), ValueError, "1-D"),
    ({}, (2, 2, 30, 30, 1), ValueError, "5-D"),
    ({}, (30, 30, 3), ValueError, "3 channels but the model takes 1"),
    ({"stack": True}, (30, 30), ValueError, r"\(N, H, W\)"),
    ({"stack": False}, (2, 30, 30, 1), ValueError, "4-D"),
])
def test_bad_input_gets_a_clear_error(unet3, kwargs, image, error, message):
    with pytest.raises(error, match=message):
        predict_tiled(unet3, np.zeros(image, np.float32), **kwargs)


def test_nan_and_unsupported_dtypes_are_rejected(unet3):
    image = _image(20, 20)
    image[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_tiled(unet3, image)
    with pytest.raises(TypeError, match="dtype"):
        predict_tiled(unet3, np.zeros((20, 20), np.complex64))


def test_predict_cells_yields_the_cell_channel_of_each_image_by_name(unet3):
    rng = np.random.default_rng(5)
    images = [rng.random((30, 41), dtype=np.float32), rng.random((17, 9), dtype=np.float32)]
    named = list(predict_cells(unet3, [("a", images[0]), ("b", images[1])]))
    assert [name for name, _ in named] == ["a", "b"]
    for (_, cell), image in zip(named, images):
        assert np.array_equal(cell, predict_tiled(unet3, image)[..., 1])
    assert [n for n, _ in predict_cells(unet3, images)] == ["image_0", "image_1"]
    with pytest.raises(ValueError, match="^b: image of shape .* has 3 channels"):
        list(predict_cells(unet3, [images[0], np.zeros((17, 9, 3))], ["a", "b"]))


# --- volumes: the same tiler for a 3-D model ---


@pytest.fixture(scope="module")
def unet3d():
    keras.utils.set_random_seed(0)
    return build_unet(base_filters=2, depth=2, ndim=3)


def test_3d_result_does_not_depend_on_tile_size_and_equals_one_pass_over_the_mirrored_volume(unet3d):
    volume = _image(9, 23, 30, seed=7)
    m, depth = margin(2), 2
    sizes = [valid_input_size(n + 2 * m, depth) for n in volume.shape]
    padded = np.pad(volume, [(m, p - n - m) for n, p in zip(volume.shape, sizes)], mode="reflect")
    logits = keras.ops.convert_to_numpy(unet3d(padded[None, ..., None], training=False))[0]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    whole = (e / e.sum(-1, keepdims=True))[:9, :23, :30]
    for tile in (valid_input_size(2**depth + 2 * m, depth), (52, 60, 44), None):
        np.testing.assert_allclose(predict_tiled(unet3d, volume, tile_size=tile), whole, atol=1e-5)


def test_3d_tta_averages_the_eight_in_plane_symmetries(unet3d):
    from unet_ref.augment import DIHEDRAL, dihedral, dihedral_inverse

    volume = _image(6, 11, 14, seed=8)
    expected = np.mean([dihedral_inverse(predict_tiled(unet3d, dihedral(volume, k, f, axes=(1, 2)).copy()), k, f,
                                         axes=(1, 2)) for k, f in DIHEDRAL], axis=0)
    np.testing.assert_allclose(predict_tiled(unet3d, volume, tta=True), expected, atol=1e-6)
    assert predict_tiled(unet3d, np.stack([volume, volume]), stack=True, tile_size=44).shape == (2, 6, 11, 14, 2)
    with pytest.raises(ValueError, match=r"\(D, H, W\) or \(D, H, W, C\)"):
        predict_tiled(unet3d, volume[0])


def test_a_tile_that_needs_more_memory_than_the_machine_has_is_refused_before_allocating(unet3):
    huge = valid_input_size(200_000, 3)  # a typo's worth of zeros: ~5 TB of activations
    with pytest.raises(ValueError, match=r"tile_size .* needs about [\d,]+ GiB .* this machine has"):
        predict_tiled(unet3, _image(20, 20), tile_size=huge)


ANISOTROPIC = ((1, 2, 2), (2, 2, 2))  # z pooled once, y and x twice: pooling grids 2, 4, 4 px


@pytest.fixture(scope="module")
def unet3d_anisotropic():
    keras.utils.set_random_seed(1)
    return build_unet(base_filters=2, depth=2, ndim=3, pool_sizes=ANISOTROPIC, dropout=0.0)


def test_anisotropic_3d_tiling_takes_margins_and_grids_per_axis_from_the_model(unet3d_anisotropic):
    from unet_ref.tiling import plan_tiles

    model, volume = unet3d_anisotropic, _image(13, 21, 26, seed=9)
    m = margin(pool_sizes=ANISOTROPIC)  # (z, y, x) = (14, 20, 20)
    sizes = valid_input_size(tuple(n + 2 * g for n, g in zip(volume.shape, m)), pool_sizes=ANISOTROPIC)
    padded = np.pad(volume, [(g, p - n - g) for n, p, g in zip(volume.shape, sizes, m)], mode="reflect")
    logits = keras.ops.convert_to_numpy(model(padded[None, ..., None], training=False))[0]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    whole = (e / e.sum(-1, keepdims=True))[:13, :21, :26]
    smallest = valid_input_size((1, 1, 1), pool_sizes=ANISOTROPIC)
    plan = plan_tiles(volume.shape, (32, 56, 60), pool_sizes=ANISOTROPIC)
    assert plan.margin == m and plan.stride[0] % 2 == 0 and plan.stride[1] % 4 == 0 and plan.n_tiles > 1
    for tile in ((32, 56, 60), (36, 52, 64), None):
        np.testing.assert_allclose(predict_tiled(model, volume, tile_size=tile), whole, atol=1e-5)
    with pytest.raises(ValueError, match=r"tile_size \(axis 0\): input size 27 .* with pool factors \(1, 2\)"):
        predict_tiled(model, volume, tile_size=(smallest[0] + 1, 56, 60))
    with pytest.raises(ValueError, match="tta .* same pooling"):
        predict_tiled(build_unet(base_filters=1, depth=1, ndim=3, pool_sizes=((2, 1, 2),)), volume, tta=True)


def test_batch_norm_is_a_per_voxel_affine_map_at_inference_so_tiles_still_agree():
    keras.utils.set_random_seed(2)
    model = build_unet(base_filters=2, depth=1, ndim=3, pool_sizes=((1, 2, 2),), batch_norm=True, dropout=0.0)
    rng = np.random.default_rng(2)
    for layer in model.layers:  # statistics as after training, not the identity of a fresh layer
        if isinstance(layer, keras.layers.BatchNormalization):
            for weight in layer.weights:
                weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))
    volume = _image(30, 61, 70, seed=10)  # several tiles along every axis
    one = predict_tiled(model, volume, tile_size=(24, 44, 44))
    np.testing.assert_allclose(predict_tiled(model, volume, tile_size=(40, 64, 60)), one, atol=1e-5)
