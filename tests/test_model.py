"""build_unet and unet_depth: the paper's architecture, shapes from unet_ref.sizes, loading."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

from unet_ref.model import build_unet, unet_depth  # noqa: E402
from unet_ref.sizes import output_size, valid_input_size  # noqa: E402


def _conv_params(c_in, c_out, k):
    return k * k * c_in * c_out + c_out  # kernel + bias


def paper_parameter_count(f=64, depth=4, in_channels=1, n_classes=2):
    """By hand from Fig. 1: two 3x3 convs per level and at the bottom, 2x2 up-convs
    halving the channels, two 3x3 convs on the concatenation, a 1x1 conv."""
    widths = [f * 2**i for i in range(depth + 1)]
    n = _conv_params(in_channels, widths[0], 3) + _conv_params(widths[0], widths[0], 3)
    for i in range(1, depth + 1):  # levels 1..depth-1 and the bottom
        n += _conv_params(widths[i - 1], widths[i], 3) + _conv_params(widths[i], widths[i], 3)
    for i in range(depth):  # expanding path
        n += _conv_params(widths[i + 1], widths[i], 2)  # up-conv
        n += _conv_params(2 * widths[i], widths[i], 3) + _conv_params(widths[i], widths[i], 3)
    return n + _conv_params(widths[0], n_classes, 1)


def test_paper_configuration_has_23_conv_layers_31M_parameters_and_maps_572_to_388():
    model = build_unet()
    convs = [layer for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose))]
    assert len(convs) == 23  # the paper: "In total the network has 23 convolutional layers."
    assert sorted(c.kernel_size for c in convs).count((3, 3)) == 18
    assert model.count_params() == paper_parameter_count() == 31_030_658
    assert model.compute_output_shape((1, 572, 572, 1)) == (1, 388, 388, 2)
    assert model.input_shape == (None, None, None, 1)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_output_shape_matches_output_size_for_every_depth(depth):
    model = build_unet(base_filters=2, depth=depth, n_classes=3, in_channels=2, dropout=0.0)
    smallest = valid_input_size(1, depth)
    for n in (smallest, smallest + 2**depth, smallest + 5 * 2**depth):
        m = output_size(n, depth)
        assert model.compute_output_shape((2, n, n + 2**depth, 2)) == (2, m, output_size(n + 2**depth, depth), 3)
    # one real forward pass, a non-square tile
    n = smallest + 2**depth
    out = model(np.random.default_rng(0).random((1, n, smallest, 2), dtype=np.float32))
    assert tuple(out.shape) == (1, output_size(n, depth), output_size(smallest, depth), 3)


def test_invalid_input_size_raises_naming_the_nearest_valid_sizes():
    with pytest.raises(ValueError, match="508"):
        build_unet(base_filters=2, input_size=500)
    fixed = build_unet(base_filters=2, depth=2, input_size=92)
    assert fixed.input_shape == (None, 92, 92, 1) and fixed.output_shape == (None, 52, 52, 2)
    model = build_unet(base_filters=2, depth=2)
    tf = pytest.importorskip("tensorflow")
    bad = np.zeros((1, 94, 94, 1), np.float32)  # a max-pool on an odd size: the copy is 1 px too big
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="Concatenate"):
        model(bad)  # eager
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="Concatenate"):
        model.predict_on_batch(bad)  # traced graph


@pytest.mark.parametrize("kwargs", [
    dict(base_filters=0), dict(base_filters=4.0), dict(depth=0), dict(depth=True), dict(n_classes=1),
    dict(in_channels=0), dict(dropout=1.0), dict(dropout=-0.1), dict(dropout="0.5"), dict(name=""),
])
def test_bad_arguments_raise_naming_the_argument(kwargs):
    with pytest.raises((TypeError, ValueError), match=next(iter(kwargs))):
        build_unet(**kwargs)


def _symmetrise(model):
    """Make every kernel symmetric under flips of both spatial axes."""
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            k = layer.kernel.numpy()
            layer.kernel.assign((k + k[::-1] + k[:, ::-1] + k[::-1, ::-1]) / 4)


def test_crops_are_central_so_the_network_commutes_with_flips():
    # With flip-symmetric kernels a valid U-Net commutes with flipping the tile if and only
    # if every skip connection is cropped centrally (an off-centre crop shifts one branch).
    keras.utils.set_random_seed(1)
    model = build_unet(base_filters=4, depth=3, dropout=0.0)
    _symmetrise(model)
    n = valid_input_size(1, 3) + 8
    x = np.random.default_rng(1).random((1, n, n, 1), dtype=np.float32)
    out = model(x).numpy()
    np.testing.assert_allclose(model(x[:, ::-1, ::-1]).numpy(), out[:, ::-1, ::-1], rtol=1e-5, atol=1e-5)


def test_output_is_logits_without_activation():
    keras.utils.set_random_seed(2)
    model = build_unet(base_filters=4, depth=2)
    assert model.get_layer("logits").activation is keras.activations.linear
    out = model(np.random.default_rng(2).random((2, 92, 92, 1), dtype=np.float32)).numpy()
    assert (out < 0).any() and (out > 0).any()  # a ReLU (or softmax) could not give both signs
    assert not np.allclose(out.sum(-1), 1)


def test_dropout_only_in_training_at_the_end_of_the_contracting_path():
    model = build_unet(base_filters=4, depth=2, dropout=0.5)
    drops = [layer.name for layer in model.layers if isinstance(layer, layers.Dropout)]
    assert drops == ["down1_dropout", "bottom_dropout"]
    assert not any(isinstance(layer, layers.Dropout) for layer in build_unet(base_filters=4, depth=2, dropout=0).layers)
    x = np.random.default_rng(3).random((1, 92, 92, 1), dtype=np.float32)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False))


def test_saved_and_reloaded_model_gives_identical_logits_and_depth(tmp_path):
    model = build_unet(base_filters=4, depth=2, n_classes=3, in_channels=2)
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(4).random((2, 108, 92, 2), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))
    assert unet_depth(loaded) == unet_depth(model) == 2


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_unet_depth_reads_the_depth_back(depth):
    assert unet_depth(build_unet(base_filters=2, depth=depth)) == depth


def test_unet_depth_rejects_other_models():
    inputs = keras.Input((None, None, 1))
    plain = keras.Model(inputs, layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ValueError, match="not a U-Net"):
        unet_depth(plain)
    with pytest.raises(TypeError, match="keras.Model"):
        unet_depth("unet.keras")


def test_mixed_float16_computes_in_half_precision_but_returns_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_unet(base_filters=4, depth=2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("down0_conv1").compute_dtype == "float16"
    out = model(np.random.default_rng(5).random((1, 92, 92, 1), dtype=np.float32))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_3d_unet_is_the_same_network_with_3d_layers_and_the_same_size_arithmetic(depth):
    from unet_ref.model import spatial_layers
    from unet_ref.sizes import output_size, valid_input_size

    model = build_unet(base_filters=2, depth=depth, ndim=3)
    sizes = [valid_input_size(n, depth) for n in (20, 30, 40)]  # a different valid size per axis
    out = model.compute_output_shape((1, *sizes, 1))
    assert out == (1, *(output_size(n, depth) for n in sizes), 2)
    assert unet_depth(model) == depth
    assert sum(isinstance(layer, spatial_layers(3).conv) for layer in model.layers) == 4 * depth + 3
    # the same layers, names and parameter count per kernel position as the 2-D network
    flat = build_unet(base_filters=2, depth=depth)
    assert [layer.name for layer in model.layers] == [layer.name for layer in flat.layers]
    with pytest.raises(ValueError, match="ndim"):
        build_unet(base_filters=2, depth=1, ndim=4)


ANISOTROPIC = ((1, 2, 2), (1, 2, 2), (2, 2, 2))


@pytest.mark.parametrize("pool_sizes", [((1, 2, 2), (2, 2, 2)), ANISOTROPIC, ((2, 1, 1),)])
def test_anisotropic_pooling_up_convolutions_undo_the_pool_of_their_level(pool_sizes):
    from unet_ref.model import unet_pool_sizes
    from unet_ref.sizes import output_size, valid_input_size

    depth = len(pool_sizes)
    model = build_unet(base_filters=2, depth=depth, ndim=3, pool_sizes=pool_sizes, dropout=0.0)
    assert unet_pool_sizes(model) == pool_sizes and unet_depth(model) == depth
    for level, pool in enumerate(pool_sizes):
        upconv = model.get_layer(f"up{level}_upconv")
        assert upconv.kernel_size == upconv.strides == pool
        assert model.get_layer(f"down{level}_conv1").kernel_size == (3, 3, 3)  # 3x3x3 on unpooled axes too
    shape = valid_input_size((5, 20, 23), pool_sizes=pool_sizes)
    out = model(np.random.default_rng(6).random((1, *shape, 1), dtype=np.float32))
    assert tuple(out.shape) == (1, *output_size(shape, pool_sizes=pool_sizes), 2)


def test_a_fixed_input_size_is_checked_per_axis():
    fixed = build_unet(base_filters=2, depth=3, ndim=3, pool_sizes=ANISOTROPIC, input_size=(34, 92, 92))
    assert fixed.output_shape == (None, 2, 4, 4, 2)
    with pytest.raises(ValueError, match="on axis 0"):
        build_unet(base_filters=2, depth=3, ndim=3, pool_sizes=ANISOTROPIC, input_size=(35, 92, 92))
    with pytest.raises(ValueError, match="depth 4 does not match pool_sizes"):
        build_unet(base_filters=2, ndim=3, pool_sizes=ANISOTROPIC)
    with pytest.raises(ValueError, match=r"pool_sizes\[0\] must be an int or 3 ints"):
        build_unet(base_filters=2, depth=1, ndim=3, pool_sizes=((2, 2),))


def test_batch_norm_before_every_relu_is_an_option_and_off_by_default():
    plain = build_unet(base_filters=2, depth=2, ndim=3)
    assert not any(isinstance(layer, layers.BatchNormalization) for layer in plain.layers)
    model = build_unet(base_filters=2, depth=2, ndim=3, batch_norm=True)
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    assert len(norms) == 4 * 2 + 2  # one per 3x3x3 convolution
    assert model.get_layer("down0_conv1").activation is keras.activations.linear
    assert not model.get_layer("down0_conv1").use_bias
    with pytest.raises(TypeError, match="batch_norm"):
        build_unet(base_filters=2, depth=1, batch_norm="yes")
