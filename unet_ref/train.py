"""Train a U-Net: one configuration dataclass, Keras `fit` on the tf.data pipeline.

Read top to bottom, like nanoGPT's train.py:

1. `TrainConfig` holds every hyper-parameter; `PRESETS` are the paper's configuration
   and CPU-sized tutorial ones for images and volumes. The command line overrides any field
   (`unet-ref train --base-filters 16 ...`). The resolved configuration is saved as
   `config.json` beside the checkpoints (`unet_ref.runs`, which also resumes and refuses
   runs); `unet_ref.runs.load_run` reads it back for prediction.
2. `train(config)` loads the images (ISBI folders/stacks, image/mask folders, or the
   synthetic dataset; with `ndim=3` folders of TIFF volumes or synthetic volumes), holds out the last `val_count` images for validation, builds and
   compiles the model inside the distribution strategy's scope, and calls `model.fit`
   on the augmented tile stream with the callbacks of `unet_ref.callbacks`: validation
   pixel / Rand error of whole images (overlap-tile), atomic checkpoints (`model.keras`,
   `last.keras`), `BackupAndRestore` for resuming, `log.csv`, TensorBoard, the loss curve
   and a wall-time limit.

Distribution. With more than one GPU (or several logical CPU devices) visible, training
runs under `tf.distribute.MirroredStrategy`; `batch_size` is then the *global* batch,
split across the replicas. Several machines are not supported: Keras 3's `fit` fails
under `MultiWorkerMirroredStrategy` (see `distribution_strategy`), so a set TF_CONFIG is
refused with that explanation instead of a crash or a hang.

Resuming. `BackupAndRestore` saves weights + optimizer state + the epoch number at the
end of every epoch (or every `backup_every` steps). Keras 3 restarts an interrupted
epoch from its first step (it records the step but resumes per epoch), with the weights
of the last backup: the tiles are random draws, so this costs a few repeated steps and
loses no training.

TensorFlow is imported inside the functions, so that `unet-ref --help` stays fast.
"""
import dataclasses
import os
import pathlib

from unet_ref.checks import check_int, check_real
from unet_ref.files import atomic_write
from unet_ref.loss import DEFAULT_LEARNING_RATES

__all__ = ["TrainConfig", "PRESETS", "setting", "config_fields", "resolve_config", "train", "distribution_strategy",
           "parse_pool_sizes", "parse_spacing", "tile_shape"]


def setting(default, help, *, choices=None, minimum=None, maximum=None, above=None, below=None):
    """A TrainConfig field: its default, its help text (the command line's --help) and the
    values it accepts, in one place."""
    bounds = dict(minimum=minimum, maximum=maximum, above=above, below=below)
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "bounds": bounds})


@dataclasses.dataclass
class TrainConfig:
    """Every hyper-parameter of a training run (defaults: the paper's configuration)."""

    # data
    data: str = setting("", "data folder or TIFF stack (ISBI layout train/image, train/label; or image/mask "
                            "folders); empty = synthetic data")
    val_count: int = setting(5, "number of images held out for validation (the last ones)", minimum=1)
    mask_threshold: float = setting(0.0, "read label masks that are not binary (e.g. JPEG) as cell = value >= this; "
                                         "0 = masks must be binary (other label images are instance ids)", minimum=0)
    synthetic_count: int = setting(12, "number of synthetic images when no --data is given", minimum=2)
    synthetic_size: int = setting(256, "side of the synthetic images in px", minimum=16)
    synthetic: str = setting("em", "kind of synthetic data: em (ISBI-like) or touching (cells touching along "
                                   "faint borders, like the paper's HeLa); volumes (ndim 3) are always EM-like",
                             choices=("em", "touching"))
    synthetic_depth: int = setting(32, "ndim 3: depth (z) of the synthetic volumes in voxels (synthetic_size is "
                                       "their height and width)", minimum=16)
    # model
    ndim: int = setting(2, "2 = images (the paper), 3 = volumes (the 3-D U-Net of Cicek et al.; data: image/ + "
                           "label/ folders of TIFF stacks, one volume per file)", minimum=2, maximum=3)
    base_filters: int = setting(64, "filters of the first level (paper: 64), doubled per level", minimum=1)
    depth: int = setting(4, "number of max-pooling levels (paper: 4)", minimum=1, maximum=16)
    dropout: float = setting(0.5, "dropout rate at the end of the contracting path (paper: 0.5)", minimum=0, below=1)
    pool_sizes: str = setting("", "max-pooling factors per level, comma separated, each one int or one per axis "
                                  "joined by x, e.g. 1x2x2,1x2x2,2x2x2 (z, y, x) for EM stacks whose sections are "
                                  "thicker than a pixel; as many levels as depth; empty = 2 on every axis (paper)")
    batch_norm: bool = setting(False, "batch normalisation before every ReLU (the 3-D U-Net of Cicek et al.; "
                                      "the 2-D paper has none)")
    # training tiles (input size; the output is output_size(tile_size, depth))
    tile_size: int = setting(572, "training input tile size, a valid U-Net input size (paper: 572)", minimum=1)
    tile_depth: int = setting(0, "ndim 3: training tile size along z (0 = tile_size); anisotropic pooling makes "
                                 "other sizes valid along z", minimum=0)
    batch_size: int = setting(1, "tiles per step (global batch under a distribution strategy; paper: 1)", minimum=1)
    # weight map
    w0: float = setting(10.0, "weight map border weight w0 (paper: 10; 0 = no border term)", minimum=0)
    sigma: float = setting(5.0, "weight map border width sigma in px (paper: 5), or in the units of spacing",
                           above=0)
    spacing: str = setting("", "pixel (voxel) spacing per axis for the weight map's distances, comma separated, "
                               "e.g. 5,1,1 for sections 5 times thicker than a pixel; empty = 1 on every axis")
    class_balance: bool = setting(True, "w_c balances the class frequencies (paper); false: w_c = 1 (with "
                                        "w0 0: no weighting at all)")
    # optimiser
    optimizer: str = setting("sgd", "sgd (paper) or adam", choices=tuple(DEFAULT_LEARNING_RATES))
    learning_rate: float = setting(None, "learning rate; default: the optimiser's measured rate "
                                         "(unet_ref.loss.DEFAULT_LEARNING_RATES; the paper gives none)", above=0)
    momentum: float = setting(0.99, "SGD momentum (paper: 0.99)", minimum=0, below=1)
    lr_schedule: str = setting("constant", "learning rate over the run: constant (paper) or cosine (decays to 0 "
                                           "at the last step)", choices=("constant", "cosine"))
    # schedule
    epochs: int = setting(100, "number of epochs", minimum=1)
    steps_per_epoch: int = setting(100, "training steps per epoch", minimum=1)
    validation_steps: int = setting(10, "validation batches per epoch (un-augmented tiles)", minimum=1)
    time_limit_minutes: float = setting(0.0, "stop after the epoch that crosses this wall time (0 = no limit)",
                                        minimum=0)
    # bookkeeping
    out: str = setting("runs/unet", "output folder for config.json, checkpoints and logs")
    seed: int = setting(0, "seed of data split, augmentation and initialisation", minimum=0)
    backup_every: int = setting(0, "steps between resume backups (0 = at the end of each epoch)", minimum=0)
    val_pixel_error: bool = setting(True, "predict the validation images with overlap-tile each epoch "
                                          "(val_pixel_error, val_rand_error)")
    predict_tile_size: int = setting(0, "tile size for overlap-tile prediction (0 = chosen by predict_tiled)",
                                     minimum=0)
    verbose: int = setting(1, "Keras progress: 1 = bar, 2 = one line per epoch, 0 = silent", minimum=0, maximum=2)


PRESETS = {
    # Ronneberger et al. 2015: 64 filters, 4 poolings, 572 x 572 tiles, batch 1, SGD with
    # momentum 0.99, dropout 0.5; the learning rate is the measured SGD default.
    "paper": TrainConfig(),
    # CPU-sized: `unet-ref demo` trains it (1,200 steps) in about 2 minutes on 2 idle cores
    # and reaches a held-out pixel error of 0.036, vs 0.18 for the all-cell predictor; the
    # time limit keeps the demo under 10 minutes on a busy machine.
    "tutorial": TrainConfig(
        base_filters=16, depth=3, dropout=0.0, tile_size=188, batch_size=4, optimizer="adam",
        epochs=40, steps_per_epoch=30, validation_steps=4, synthetic_count=16,
        synthetic_size=256, val_count=3, out="runs/tutorial", time_limit_minutes=7.0,
    ),
    # Volumes: the 3-D U-Net on synthetic EM-like volumes (unet_ref.synthetic.synthetic_volume),
    # pooled (1, 2, 2) then (2, 2, 2) so that z keeps its few voxels. 500 steps took 3 min 48 s
    # niced on 2 busy cores; held-out pixel error 0.047 vs 0.359 for the all-cell predictor
    # (docs/volumes.md).
    "tutorial3d": TrainConfig(
        ndim=3, base_filters=8, depth=2, pool_sizes="1x2x2,2x2x2", dropout=0.0, tile_size=60, tile_depth=36,
        batch_size=2, optimizer="adam", epochs=20, steps_per_epoch=25, validation_steps=2, synthetic_count=8,
        synthetic_depth=32, synthetic_size=64, val_count=2, out="runs/tutorial3d", time_limit_minutes=10.0,
    ),
}


def parse_pool_sizes(text, depth=None, ndim=2):
    """The `pool_sizes` setting as `build_unet` takes it: "" -> None (2 everywhere),
    "1x2x2,2x2x2" -> ((1, 2, 2), (2, 2, 2)), "2,2" -> (2, 2).

    >>> parse_pool_sizes("1x2x2,2", ndim=3)
    ((1, 2, 2), 2)
    """
    from unet_ref.sizes import pool_factors

    if not isinstance(text, str):
        raise TypeError(f"pool_sizes must be a string such as '1x2x2,2x2x2', got {text!r}")
    if not text.strip():
        return None
    try:
        levels = tuple(tuple(int(p) for p in level.split("x")) for level in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"pool_sizes must be factors per level separated by commas, each one int or {ndim} ints "
                         f"joined by x (e.g. '1x2x2,2x2x2'), got {text!r}") from None
    levels = tuple(level[0] if len(level) == 1 else level for level in levels)
    pool_factors(levels, depth, ndim)  # ValueError naming the level, or a depth that does not match
    return levels


def parse_spacing(text, ndim=2):
    """The `spacing` setting as `weight_map` takes it: "" -> None, "5,1,1" -> (5.0, 1.0, 1.0).

    >>> parse_spacing("5, 1, 1", ndim=3)
    (5.0, 1.0, 1.0)
    """
    from unet_ref.checks import check_spacing

    if not isinstance(text, str):
        raise TypeError(f"spacing must be a string such as '5,1,1', got {text!r}")
    if not text.strip():
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"spacing must be {ndim} numbers separated by commas (e.g. '5,1,1'), got {text!r}") from None
    return check_spacing(values, ndim)  # ValueError: one number per axis, each finite and > 0


def tile_shape(config):
    """The training input tile of `config`, one size per axis: (n, n), or (z, n, n) in 3-D
    with z = tile_depth or tile_size."""
    if config.ndim == 3:
        return (config.tile_depth or config.tile_size, config.tile_size, config.tile_size)
    return (config.tile_size,) * 2


def config_fields():
    return {field.name for field in dataclasses.fields(TrainConfig)}


def resolve_config(preset="tutorial", overrides=None):
    """A preset with some fields replaced, e.g. resolve_config("paper", {"epochs": 5})."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    overrides = dict(overrides or {})
    unknown = set(overrides) - config_fields()
    if unknown:
        raise ValueError(f"unknown configuration field(s) {sorted(unknown)}; known: {sorted(config_fields())}")
    config = dataclasses.replace(PRESETS[preset], **overrides)
    _check_config(config)
    return config


def _check_config(config):
    """Every field against its `setting` (type, bounds, choices), then the size arithmetic
    and the data path: all before TensorFlow is imported."""
    from unet_ref.sizes import output_size
    from unet_ref.tiling import check_memory

    for field in dataclasses.fields(TrainConfig):
        value, meta = getattr(config, field.name), field.metadata
        if field.type is bool or field.type == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{field.name} must be true or false, got {value!r}")
        elif meta["choices"] is not None:
            if value not in meta["choices"]:
                raise ValueError(f"{field.name} must be one of {list(meta['choices'])}, got {value!r}")
        elif field.type in (int, "int"):
            check_int(value, field.name, meta["bounds"]["minimum"], meta["bounds"]["maximum"])
        elif field.type in (float, "float") and value is not None:
            check_real(value, field.name, **meta["bounds"])
        elif field.type in (str, "str") and not isinstance(value, str):
            raise TypeError(f"{field.name} must be a string, got {value!r}")
    pools = parse_pool_sizes(config.pool_sizes, config.depth, config.ndim)
    parse_spacing(config.spacing, config.ndim)
    try:
        output_size(tile_shape(config), config.depth, pools)  # ValueError naming the nearest valid sizes
    except ValueError as error:
        raise ValueError(f"tile_size{' / tile_depth' if config.ndim == 3 else ''}: {error}") from None
    check_memory(tile_shape(config), config.base_filters, 1, config.batch_size, training=True)
    if config.predict_tile_size:
        output_size((config.predict_tile_size,) * config.ndim, config.depth, pools)
        check_memory((config.predict_tile_size,) * config.ndim, config.base_filters, 1, what="predict_tile_size")
    if config.data and not os.path.exists(config.data):
        raise FileNotFoundError(f"data {config.data} does not exist")


# --- data ------------------------------------------------------------------------------


def load_data(config):
    """-> (train_images, train_labels, val_images, val_labels), instance labels (0 =
    membrane) so that the weight map separates touching cells exactly. The last
    `val_count` images are the validation set (`unet_ref.datasets.train_val_split`)."""
    from unet_ref.datasets import load_dataset, train_val_split

    if config.data:
        images, labels = load_dataset(config.data, threshold=config.mask_threshold or None, ndim=config.ndim)
    elif config.ndim == 3:
        from unet_ref.synthetic import synthetic_volumes

        images, labels = synthetic_volumes(config.synthetic_count, seed=config.seed,
                                           shape=(config.synthetic_depth, config.synthetic_size, config.synthetic_size))
    else:
        from unet_ref.synthetic import synthetic_dataset

        images, labels = synthetic_dataset(config.synthetic_count, size=config.synthetic_size, seed=config.seed,
                                           kind=config.synthetic)
    return train_val_split(list(images), list(labels), val_count=config.val_count)


# --- distribution --------------------------------------------------------------------------


def distribution_strategy():
    """MirroredStrategy when this machine shows more than one GPU (or more than one logical
    CPU device), else the default strategy.

    Several machines (TF_CONFIG) are refused: Keras 3's `fit` fails under
    tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585; with Keras 3.15 and
    TensorFlow 2.21 two workers on localhost stop with "Attempt to convert a value
    (PerReplica ...)" when fit builds the model, and, past that, "Invalid reduction
    dimension 0" in every step), and a half-started collective can hang the other worker.
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
    from unet_ref.runs import start_run

    _check_config(config)
    strategy = distribution_strategy()  # before any other TensorFlow op, as tf.distribute asks
    out = pathlib.Path(config.out)
    start_run(config, out)  # refuses a finished run or another configuration, trims log.csv on resume
    keras.utils.set_random_seed(config.seed)
    train_images, train_labels, val_images, val_labels = load_data(config)

    # (B, n, n, 1) float32 tiles, (B, m, m) int32 labels, (B, m, m) float32 weights; in 3-D (B, z, n, n, 1) ...
    pools = parse_pool_sizes(config.pool_sizes, config.depth, config.ndim)
    tiles = dict(tile_size=tile_shape(config), depth=config.depth, pool_sizes=pools, batch_size=config.batch_size,
                 w0=config.w0, sigma=config.sigma, spacing=parse_spacing(config.spacing, config.ndim),
                 class_balance=config.class_balance)
    train_data = make_dataset(train_images, train_labels, augment=True, seed=config.seed, **tiles)
    val_data = make_dataset(val_images, val_labels, augment=False, seed=config.seed + 1, **tiles)

    with strategy.scope():
        model = build_unet(base_filters=config.base_filters, depth=config.depth, dropout=config.dropout,
                           ndim=config.ndim, pool_sizes=pools, batch_norm=config.batch_norm)
        decay_steps = config.epochs * config.steps_per_epoch if config.lr_schedule == "cosine" else None
        compile_unet(model, optimizer=config.optimizer, learning_rate=config.learning_rate, momentum=config.momentum,
                     decay_steps=decay_steps)
    print(_device_summary(strategy), flush=True)

    try:
        history = model.fit(
            train_data, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
            validation_data=val_data, validation_steps=config.validation_steps,
            callbacks=trainer_callbacks(config, out, val_images, val_labels) + list(callbacks),
            verbose=config.verbose, shuffle=False,  # the tile stream is already random
        )
    except tf.errors.OpError as error:
        failure = take_failure()
        if failure is None:
            raise
        raise PipelineError(f"the training data pipeline failed: {type(failure).__name__}: {failure}") from error
    if not (out / "model.keras").exists():  # no epoch improved on inf: keep the last one
        with atomic_write(out / "model.keras") as tmp:
            model.save(tmp)
    return model, history
