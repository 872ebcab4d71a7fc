"""Train a U-Net: Keras `fit` on the tf.data pipeline of training tiles.

Read top to bottom, like nanoGPT's train.py. `train(config)` takes a `TrainConfig`
(`unet_ref.config`: every hyper-parameter, the paper's and the tutorials' presets), loads the
images (ISBI folders or stacks, image/mask folders, TIFF volumes, or synthetic data), holds
out the last `val_count` for validation, builds and compiles the model inside the
distribution strategy's scope, and calls `model.fit` on the stream of augmented tiles with
the callbacks of `unet_ref.callbacks`: validation pixel / Rand error of whole images
(overlap-tile), atomic checkpoints, resuming, `log.csv`, TensorBoard, the loss curve and a
wall-time limit. The run's folder (config.json, checkpoints, resuming) is `unet_ref.runs`.

Distribution. With more than one GPU (or several logical CPU devices) visible, training
runs under `tf.distribute.MirroredStrategy`; `batch_size` is then the *global* batch,
split across the replicas. Several machines are refused (`distribution_strategy`).

Resuming. `BackupAndRestore` saves weights, optimizer state and the epoch number at the
end of every epoch (or every `backup_every` steps). Keras 3 restarts an interrupted epoch
from its first step with the weights of the last backup: the tiles are random draws, so
this repeats a few steps and loses no training.

TensorFlow is imported inside the functions, so that `unet-ref --help` stays fast.
"""
import os

from unet_ref.config import PRESETS, TrainConfig, check_config, resolve_config, tile_shape

__all__ = ["train", "load_data", "distribution_strategy", "TrainConfig", "PRESETS", "resolve_config"]


def load_data(config):
    """-> (train_images, train_labels, val_images, val_labels), instance labels (0 =
    membrane) so that the weight map separates touching cells exactly. The last
    `val_count` images are the validation set (`unet_ref.datasets.train_val_split`)."""
    from unet_ref.datasets import load_dataset, train_val_split
    from unet_ref.images import normalize_image

    if config.data:  # images normalised by the run's rule, once (`unet_ref.images`)
        images, labels = load_dataset(config.data, threshold=config.mask_threshold or None, ndim=config.ndim,
                                      normalize=config.normalize)
    elif config.ndim == 3:
        from unet_ref.synthetic import synthetic_volumes

        images, labels = synthetic_volumes(config.synthetic_count, seed=config.seed,
                                           shape=(config.synthetic_depth, config.synthetic_size, config.synthetic_size))
    else:
        from unet_ref.synthetic import synthetic_dataset

        images, labels = synthetic_dataset(config.synthetic_count, size=config.synthetic_size, seed=config.seed,
                                           kind=config.synthetic)
    if not config.data:  # synthetic images too, by the run's rule
        images = [normalize_image(image, "a synthetic image", normalize=config.normalize) for image in images]
    return train_val_split(list(images), list(labels), val_count=config.val_count)


def distribution_strategy():
    """MirroredStrategy when this machine shows more than one GPU (or more than one logical
    CPU device), else the default strategy.

    Several machines (TF_CONFIG) are refused: Keras 3's `fit` fails under
    tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585: "Attempt to convert a
    value (PerReplica ...)"), and a half-started collective can hang the other worker.
    """
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        raise ValueError("TF_CONFIG is set, but training on several machines is not supported: Keras 3's fit fails "
                         "under MultiWorkerMirroredStrategy (keras-team/keras#20585); unset TF_CONFIG to train on "
                         "this machine's devices")
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if not gpus and len(cpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()


def _device_summary(strategy):
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    where = f"{len(gpus)} GPU(s)" if gpus else f"the CPU ({os.cpu_count()} cores)"
    if strategy.num_replicas_in_sync > 1:
        return f"training on {strategy.num_replicas_in_sync} replicas ({type(strategy).__name__}), each on {where}"
    return f"training on {where}"


def train(config, callbacks=()):
    """Train a U-Net as configured; returns (model, keras History).

    `callbacks` are extra Keras callbacks, run after the trainer's own ones.
    """
    import keras
    import tensorflow as tf

    from unet_ref.callbacks import trainer_callbacks
    from unet_ref.loss import compile_unet
    from unet_ref.model import build_unet
    from unet_ref.pipeline import PipelineError, make_dataset, take_failure
    from unet_ref.runs import open_run

    config = check_config(config)
    strategy = distribution_strategy()  # before any other TensorFlow op, as tf.distribute asks
    with open_run(config) as run:  # one writer; starts, resumes, restarts or refuses (unet_ref.runs)
        keras.utils.set_random_seed(config.seed)
        train_images, train_labels, val_images, val_labels = load_data(config)

        # (B, n, n, 1) float32 tiles, (B, m, m) int32 labels, (B, m, m) float32 weights; in 3-D (B, z, n, n, 1) ...
        tiles = dict(tile_size=tile_shape(config), depth=config.depth, pool_sizes=config.pool_sizes,
                     batch_size=config.batch_size, w0=config.w0, sigma=config.sigma, spacing=config.spacing,
                     class_balance=config.class_balance, sampler=config.sampler)
        train_data = make_dataset(train_images, train_labels, augment=True, seed=config.seed, **tiles)
        val_data = make_dataset(val_images, val_labels, augment=False, seed=config.seed + 1, **tiles)

        with strategy.scope():
            model = build_unet(base_filters=config.base_filters, depth=config.depth, dropout=config.dropout,
                               ndim=config.ndim, pool_sizes=config.pool_sizes, batch_norm=config.batch_norm)
            decay_steps = config.epochs * config.steps_per_epoch if config.lr_schedule == "cosine" else None
            compile_unet(model, optimizer=config.optimizer, learning_rate=config.learning_rate,
                         momentum=config.momentum, decay_steps=decay_steps)
        print(_device_summary(strategy), flush=True)

        try:
            history = model.fit(
                train_data, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
                validation_data=val_data, validation_steps=config.validation_steps,
                callbacks=trainer_callbacks(config, run.out, val_images, val_labels) + list(callbacks),
                verbose=config.verbose, shuffle=False,  # the tile stream is already random
            )
        except tf.errors.OpError as error:
            failure = take_failure()
            if failure is None:
                raise
            raise PipelineError(f"the training data pipeline failed: {type(failure).__name__}: {failure}") from error
        run.finish(model)  # model.keras, then the run marked finished
    return model, history
