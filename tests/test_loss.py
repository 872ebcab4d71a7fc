"""The pixel-weighted softmax cross-entropy and compile_unet, against a numpy oracle."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from unet_ref.loss import compile_unet, unet_loss, weighted_cross_entropy  # noqa: E402
from unet_ref.model import build_unet  # noqa: E402


def numpy_loss(labels, logits, weights):
    """Eq. (1) of the paper in float64, divided by the number of pixels."""
    z = logits.astype(np.float64)
    m = z.max(-1, keepdims=True)
    log_p = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
    log_p_true = np.take_along_axis(log_p, labels[..., None].astype(np.int64), -1)[..., 0]
    return -(weights * log_p_true).sum() / labels.size


def random_batch(seed, shape=(3, 7, 5), k=3, scale=4.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, shape).astype(np.int32)
    logits = (scale * rng.standard_normal(shape + (k,))).astype(np.float32)
    weights = rng.uniform(0.5, 12.0, shape).astype(np.float32)  # like w_c + w0 * exp(...)
    return labels, logits, weights


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_equals_numpy_formula_and_keras_sample_weight_reduction(seed):
    labels, logits, weights = random_batch(seed, k=2 + seed)
    expected = numpy_loss(labels, logits, weights)
    np.testing.assert_allclose(float(weighted_cross_entropy(labels, logits, weights)), expected, rtol=1e-5)
    # Keras' built-in loss with a (B, h, w) sample_weight: sum of weighted losses / pixels
    np.testing.assert_allclose(float(unet_loss()(labels, logits, sample_weight=weights)), expected, rtol=1e-5)


def test_compiled_model_reports_the_weighted_loss_of_its_logits():
    # The whole path model.fit uses: the data's third element becomes sample_weight.
    keras.utils.set_random_seed(0)
    model = compile_unet(build_unet(base_filters=4, depth=1, dropout=0.0))
    rng = np.random.default_rng(0)
    x = rng.random((2, 28, 28, 1), dtype=np.float32)  # output 12 x 12
    labels = rng.integers(0, 2, (2, 12, 12)).astype(np.int32)
    weights = rng.uniform(1, 10, (2, 12, 12)).astype(np.float32)
    logits = model.predict_on_batch(x)
    result = model.evaluate(x, labels, sample_weight=weights, batch_size=2, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], numpy_loss(labels, logits, weights), rtol=1e-5)
    np.testing.assert_allclose(result["pixel_accuracy"], (logits.argmax(-1) == labels).mean(), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_loss_and_gradient_finite_and_exact_at_extreme_logits(dtype):
    labels, logits, weights = random_batch(3, k=2)
    winner = logits.argmax(-1)  # +1e4 for one class, -1e4 for the other: softmax exactly 0 / 1
    logits = np.where(np.eye(2, dtype=bool)[winner], 1e4, -1e4).astype(dtype)
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = weighted_cross_entropy(labels, z, weights)
    grad = tape.gradient(loss, z).numpy().astype(np.float64)
    assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())
    np.testing.assert_allclose(float(loss), numpy_loss(labels, logits, weights), rtol=1e-6)
    # d loss / d z = w (softmax(z) - onehot(label)) / pixels, softmax exactly 0/1 here
    p = np.eye(2)[winner]
    rtol = 1e-6 if dtype == "float32" else 1e-3  # the gradient comes back in the logits' dtype
    np.testing.assert_allclose(grad, weights[..., None] * (p - np.eye(2)[labels]) / labels.size, rtol=rtol, atol=1e-9)
    keras_loss = unet_loss()(labels, z, sample_weight=weights)
    assert keras_loss.dtype == tf.float32 and np.isfinite(keras_loss.numpy())


def test_notebook_formula_log_of_softmax_is_not_finite_where_ours_is():
    labels, logits, weights = random_batch(4, k=2, scale=200.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)  # the notebook's softmax then log
        notebook = -(weights * np.log(np.take_along_axis(p, labels[..., None], -1)[..., 0])).mean()
    assert not np.isfinite(notebook)
    assert np.isfinite(float(weighted_cross_entropy(labels, logits, weights)))


def test_bad_loss_inputs_raise():
    labels, logits, weights = random_batch(5)
    with pytest.raises(ValueError, match="weights"):
        weighted_cross_entropy(labels, logits, weights[:, :-1])
    with pytest.raises(ValueError, match="logits"):
        weighted_cross_entropy(labels[:, :-1], logits, weights)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        weighted_cross_entropy(np.where(labels == 0, 3, labels), logits, weights)
    with pytest.raises(TypeError, match="labels"):
        weighted_cross_entropy(labels.astype(np.float32), logits, weights)


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="rmsprop"), "optimizer"), (dict(learning_rate=0), "learning_rate"),
    (dict(learning_rate=-1e-3), "learning_rate"), (dict(momentum=1.0), "momentum"),
    (dict(jit_compile="yes"), "jit_compile"),
])
def test_compile_unet_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        compile_unet(build_unet(base_filters=2, depth=1), **kwargs)


def test_compile_unet_uses_the_paper_optimiser_by_default():
    model = compile_unet(build_unet(base_filters=2, depth=1))
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.momentum) == pytest.approx(0.99)
    adam = compile_unet(build_unet(base_filters=2, depth=1), optimizer="adam", learning_rate=3e-4)
    assert isinstance(adam.optimizer, keras.optimizers.Adam)
    assert float(adam.optimizer.learning_rate) == pytest.approx(3e-4)


def test_mixed_float16_training_step_has_a_finite_float32_loss():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = compile_unet(build_unet(base_filters=4, depth=1), optimizer="adam")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # Keras wraps it
    rng = np.random.default_rng(1)
    x = rng.random((1, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 2, (1, 12, 12)).astype(np.int32)
    loss = model.train_on_batch(x, labels, sample_weight=np.full((1, 12, 12), 10, np.float32), return_dict=True)
    assert np.isfinite(loss["loss"])


def _fixed_tile():
    """A 60 x 60 input with its 20 x 20 centre labelled: bright discs are class 1."""
    yy, xx = np.mgrid[:60, :60]
    image = np.zeros((60, 60), np.float32)
    for cy, cx, r in ((22, 25, 6), (38, 36, 8), (27, 40, 4)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    image += 0.2 * np.random.default_rng(0).standard_normal(image.shape).astype(np.float32)
    labels = (image[20:40, 20:40] > 0.5).astype(np.int32)  # output_size(60, 2) = 20, margin 20
    weights = np.where(labels == 1, 1.0, 2.0).astype(np.float32)
    return image[None, :, :, None], labels[None], weights[None]


STEPS = 300  # the loss first drops 10x at step ~160 (Adam 1e-2, seed 42)


def _train_tiny(steps):
    keras.utils.set_random_seed(42)
    model = compile_unet(build_unet(base_filters=4, depth=2, dropout=0.0), optimizer="adam", learning_rate=1e-2)
    x, labels, weights = _fixed_tile()
    first = model.evaluate(x, labels, sample_weight=weights, verbose=0, return_dict=True)["loss"]
    losses = []
    for _ in range(steps):
        model.reset_metrics()  # each step's own loss: Keras before 3.15 averages it over train_on_batch calls
        losses.append(model.train_on_batch(x, labels, sample_weight=weights, return_dict=True)["loss"])
    return first, losses


def test_tiny_unet_overfits_one_tile_tenfold_loss_drop_deterministically():
    first, losses = _train_tiny(STEPS)
    assert min(losses) < first / 10, (first, losses[::25])
    assert _train_tiny(10) == (first, losses[:10])  # same seed, same losses


def test_cosine_decay_runs_the_learning_rate_down_to_zero():
    model = compile_unet(build_unet(base_filters=2, depth=1), optimizer="adam", learning_rate=1e-3, decay_steps=10)
    for step, expected in ((0, 1e-3), (5, 0.5e-3), (10, 0.0)):  # lr (1 + cos(pi step / 10)) / 2
        model.optimizer.iterations.assign(step)
        assert float(model.optimizer.learning_rate) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="decay_steps"):
        compile_unet(build_unet(base_filters=2, depth=1), decay_steps=0)
