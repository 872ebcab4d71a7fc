"""The pixel-weighted softmax cross-entropy of U-Net, and the compiled model.

Ronneberger et al. (2015), eq. (1): with p_k(x) the softmax of the logits z_k(x) and l(x)
the true class of pixel x, the energy is

    E = -sum_x w(x) log p_l(x)(x),

w the weight map of eq. (2) (`unet_ref.weights.weight_map`).

Normalisation: the loss here is the MEAN over pixels, sum_x w(x) (-log p_l(x)(x)) /
(number of pixels in the batch), weights not renormalised. That is exactly what Keras'
built-in `SparseCategoricalCrossentropy(from_logits=True)` computes when the weight map is
passed as a per-pixel `sample_weight` of shape (B, h, w), so `compile_unet` uses it: no
custom Loss class, and the weight map is the third element of the training data, never a
model input. The paper's sum differs by the constant number of pixels, which only rescales
the learning rate. `weighted_cross_entropy` writes the formula out; the tests hold the two
equal. Keras is imported inside the functions: the configuration reads
`DEFAULT_LEARNING_RATES` without starting TensorFlow.
"""
import numpy as np

from unet_ref.checks import check_int, check_real

__all__ = ["weighted_cross_entropy", "unet_loss", "compile_unet", "DEFAULT_LEARNING_RATES"]

# The paper gives no learning rate. SGD with momentum 0.99 takes effective steps of
# lr / (1 - 0.99) = 100 lr: on the tutorial network it oscillates at 0.01 and above and
# learns at 0.003 (the sweep is on the docs' performance page). Adam: the usual 1e-3.
DEFAULT_LEARNING_RATES = {"sgd": 3e-3, "adam": 1e-3}


def weighted_cross_entropy(labels, logits, weights):
    """The paper's pixel-weighted softmax cross-entropy, from logits, mean over pixels.

    Parameters
    ----------
    labels : int array (..., h, w)
        True class of every pixel, in [0, K).
    logits : float array (..., h, w, K)
        Network output before the softmax.
    weights : float array (..., h, w)
        The weight map w(x) (all ones gives the plain cross-entropy).

    Returns
    -------
    scalar float32 tensor
        sum_x w(x) * (-log p_{l(x)}(x)) / number of pixels.

    Notes
    -----
    log p_k = z_k - logsumexp(z) (a log-softmax), never log(softmax(z)): the notebook's
    `tf.log(y_pred)` is -inf (and then NaN) as soon as a probability underflows to 0,
    which in float32 happens for logits that differ by about 104. Computed in float32
    also when the logits are float16.

    Examples
    --------
    Two pixels, equal logits (p = 1/2) with weight 2, and a certain right answer:
    (2 log 2 + 0) / 2 = log 2.

    >>> import numpy as np
    >>> logits = np.array([[[0.0, 0.0], [-1e4, 1e4]]], dtype=np.float32)  # (1, 2, 2)
    >>> round(float(weighted_cross_entropy([[0, 1]], logits, [[2.0, 5.0]])), 6)
    0.693147
    """
    from keras import ops

    logits = ops.cast(ops.convert_to_tensor(logits), "float32")
    n_classes = logits.shape[-1]
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    if isinstance(labels, np.ndarray) and labels.size and not 0 <= labels.min() <= labels.max() < n_classes:
        # (checked for numpy input; a symbolic tensor cannot be inspected here)
        raise ValueError(f"labels must be class ids in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    labels = ops.convert_to_tensor(labels)
    weights = ops.cast(ops.convert_to_tensor(weights), "float32")
    if "int" not in str(labels.dtype):
        raise TypeError(f"labels must be an integer array of class ids, got dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(logits.shape[:-1]) or tuple(weights.shape) != tuple(labels.shape):
        raise ValueError(
            f"expected labels (..., h, w), logits (..., h, w, K) and weights (..., h, w), got "
            f"labels {tuple(labels.shape)}, logits {tuple(logits.shape)}, weights {tuple(weights.shape)}"
        )
    log_p = ops.log_softmax(logits, axis=-1)  # (..., h, w, K), finite for finite logits
    one_hot = ops.one_hot(labels, n_classes, dtype="float32")  # (..., h, w, K)
    log_p_true = ops.sum(one_hot * log_p, axis=-1)  # (..., h, w)
    return -ops.mean(weights * log_p_true)


def unet_loss():
    """The Keras loss of the U-Net: built-in sparse softmax cross-entropy on logits.

    Pass the weight map as per-pixel ``sample_weight`` (B, h, w); Keras then returns
    `weighted_cross_entropy` (mean over pixels). The loss is computed in float32 also
    under a ``mixed_float16`` policy (a Loss casts its inputs to ``keras.config.floatx()``).
    """
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="weighted_cross_entropy")


def compile_unet(model, optimizer="sgd", learning_rate=None, momentum=0.99, jit_compile="auto",
                 pixel_accuracy=True, decay_steps=None):
    """Compile `model` with the weighted loss and the paper's (or the tutorial's) optimiser.

    Parameters
    ----------
    model : keras.Model
        A U-Net from `unet_ref.model.build_unet` (output = logits).
    optimizer : {"sgd", "adam"}
        "sgd": the paper's stochastic gradient descent with high momentum, used with a
        batch of one large tile so that many previous samples shape each update.
        "adam": Adam, which trains the small tutorial configuration faster on a CPU.
    learning_rate : float or None
        None uses `DEFAULT_LEARNING_RATES` (SGD 3e-3, Adam 1e-3; measured, see there).
    momentum : float in [0, 1)
        SGD momentum (paper: 0.99); ignored by Adam.
    jit_compile : bool or "auto"
        XLA compilation of the train step; Keras' "auto" turns it on only when a GPU is
        visible.
    pixel_accuracy : bool
        Also report the (unweighted) fraction of correctly classified pixels.
    decay_steps : int or None
        None: a constant learning rate (the paper). An int: cosine decay from
        `learning_rate` to 0 over that many steps (`keras.optimizers.schedules.CosineDecay`).

    Returns
    -------
    keras.Model
        The same model, compiled (for chaining).
    """
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if optimizer not in DEFAULT_LEARNING_RATES:
        raise ValueError(f"optimizer must be one of {list(DEFAULT_LEARNING_RATES)}, got {optimizer!r}")
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES[optimizer]
    learning_rate = check_real(learning_rate, "learning_rate", above=0)
    if decay_steps is not None:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, check_int(decay_steps, "decay_steps",
                                                                                        minimum=1))
    momentum = check_real(momentum, "momentum", minimum=0, below=1)
    if jit_compile not in (True, False, "auto"):
        raise ValueError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}")

    if optimizer == "sgd":
        opt = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    else:
        opt = keras.optimizers.Adam(learning_rate=learning_rate)
    # Plain `metrics` are not weighted by sample_weight in Keras 3: every pixel counts once.
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy")] if pixel_accuracy else None
    model.compile(optimizer=opt, loss=unet_loss(), metrics=metrics, jit_compile=jit_compile)
    return model
