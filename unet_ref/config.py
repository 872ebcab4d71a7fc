"""The trainer's configuration: one dataclass of typed settings, its presets and its checks.

Every hyper-parameter of a run is a field of `TrainConfig`, declared by a `setting` that
holds, in one place, its default, its help text (the command line's --help), how the
command line reads it from text (`parse`) and which values it accepts (`check`). The
values are Python values (ints, floats, tuples), never text: the command line parses its
flags once, and `check_config` checks a configuration field by field, then across fields
(pooling factors per axis, the size arithmetic, memory, the data path), all before
TensorFlow is imported. How each kind of setting is read and checked: `unet_ref.settings`. The resolved configuration is saved as a run's `config.json`
(`unet_ref.runs`).
"""
import dataclasses
import os

from unet_ref.checks import check_spacing
from unet_ref.images import check_normalize, parse_normalize
from unet_ref.loss import DEFAULT_LEARNING_RATES
from unet_ref.memory import check_label_region, check_memory
from unet_ref.settings import boolean, choice, integer, per_axis_reals, per_level, real, setting, text
from unet_ref.sizes import output_size, pool_factors

__all__ = ["TrainConfig", "PRESETS", "resolve_config", "check_config", "config_from_json", "tile_shape"]


@dataclasses.dataclass
class TrainConfig:
    """Every hyper-parameter of a training run (defaults: the paper's configuration)."""

    # data
    data: str = text("", "data folder or TIFF stack (ISBI layout train/image, train/label; or image/mask folders); "
                         "empty = synthetic data")
    val_count: int = integer(5, "number of images held out for validation (the last ones)", minimum=1)
    mask_threshold: float = real(0.0, "read label masks that are not binary (e.g. JPEG) as cell = value >= this; "
                                      "0 = masks must be binary (other label images are instance ids)", minimum=0)
    normalize: tuple = setting(("dtype",), "intensity rule (unet_ref.images): dtype (uint8 / 255, uint16 / 65535, "
                                           "floats in [0, 1]), percentile[:LOW,HIGH] (each image's percentiles, "
                                           "default 1,99.8, to 0 and 1: camera images), range:MIN,MAX (e.g. 0,4095: "
                                           "12-bit images); predict and evaluate apply the run's rule",
                               parse=parse_normalize, check=check_normalize, metavar="RULE")
    synthetic_count: int = integer(12, "number of synthetic images when no --data is given", minimum=2)
    synthetic_size: int = integer(256, "side of the synthetic images in px", minimum=16)
    synthetic: str = choice("em", "kind of synthetic data: em (ISBI-like) or touching (cells touching along faint "
                                  "borders, like the paper's HeLa); volumes (ndim 3) are always EM-like",
                            ("em", "touching"))
    synthetic_depth: int = integer(32, "ndim 3: depth (z) of the synthetic volumes in voxels (synthetic_size is "
                                       "their height and width)", minimum=16)
    # model
    ndim: int = integer(2, "2 = images (the paper), 3 = volumes (the 3-D U-Net of Cicek et al.; data: image/ + "
                           "label/ folders of TIFF stacks, one volume per file)", minimum=2, maximum=3)
    base_filters: int = integer(64, "filters of the first level (paper: 64), doubled per level", minimum=1)
    depth: int = integer(4, "number of max-pooling levels (paper: 4)", minimum=1, maximum=16)
    dropout: float = real(0.5, "dropout rate at the end of the contracting path (paper: 0.5)", minimum=0, below=1)
    pool_sizes: tuple = per_level(None, "max-pooling factors per level, comma separated, each one int or one per axis "
                                        "joined by x, e.g. 1x2x2,1x2x2,2x2x2 (z, y, x) for EM stacks whose sections "
                                        "are thicker than a pixel; as many levels as depth; empty = 2 on every axis "
                                        "(paper)")
    batch_norm: bool = boolean(False, "batch normalisation before every ReLU (the 3-D U-Net of Cicek et al.; the 2-D "
                                      "paper has none)")
    # training tiles (input size; the output is output_size(tile_size, depth))
    tile_size: int = integer(572, "training input tile size, a valid U-Net input size (paper: 572)", minimum=1)
    tile_depth: int = integer(0, "ndim 3: training tile size along z (0 = tile_size); anisotropic pooling makes other "
                                 "sizes valid along z", minimum=0)
    batch_size: int = integer(1, "tiles per step (global batch under a distribution strategy; paper: 1)", minimum=1)
    sampler: str = choice("fast", "how training tiles are made: fast (compiled) or plain (unet_ref.tiles, slow and "
                                  "readable; the same tiles)", ("fast", "plain"))
    # weight map
    w0: float = real(10.0, "weight map border weight w0 (paper: 10; 0 = no border term)", minimum=0)
    sigma: float = real(5.0, "weight map border width sigma in px (paper: 5), or in the units of spacing", above=0)
    spacing: tuple = per_axis_reals(None, "pixel (voxel) spacing per axis for the weight map's distances, comma "
                                          "separated, e.g. 5,1,1 for sections 5 times thicker than a pixel; empty = 1 "
                                          "on every axis")
    class_balance: bool = boolean(True, "w_c balances the class frequencies (paper); false: w_c = 1 (with w0 0: no "
                                        "weighting at all)")
    # optimiser
    optimizer: str = choice("sgd", "sgd (paper) or adam", tuple(DEFAULT_LEARNING_RATES))
    learning_rate: float = real(None, "learning rate; default: the optimiser's measured rate "
                                      "(unet_ref.loss.DEFAULT_LEARNING_RATES; the paper gives none)", above=0)
    momentum: float = real(0.99, "SGD momentum (paper: 0.99)", minimum=0, below=1)
    lr_schedule: str = choice("constant", "learning rate over the run: constant (paper) or cosine (decays to 0 at the "
                                          "last step)", ("constant", "cosine"))
    # schedule
    epochs: int = integer(100, "number of epochs", minimum=1)
    steps_per_epoch: int = integer(200, "training steps per epoch", minimum=1)
    validation_steps: int = integer(10, "validation batches per epoch (un-augmented tiles)", minimum=1)
    time_limit_minutes: float = real(0.0, "stop after the epoch that crosses this wall time (0 = no limit)",
                                     minimum=0)
    # bookkeeping
    out: str = text("runs/unet", "output folder for config.json, checkpoints and logs")
    seed: int = integer(0, "seed of data split, augmentation and initialisation", minimum=0)
    backup_every: int = integer(0, "steps between resume backups (0 = at the end of each epoch)", minimum=0)
    val_pixel_error: bool = boolean(True, "predict the validation images with overlap-tile each epoch "
                                          "(val_pixel_error, val_rand_error)")
    predict_tile_size: int = integer(0, "tile size for overlap-tile prediction (0 = chosen by predict_tiled)",
                                     minimum=0)
    verbose: int = integer(1, "Keras progress: 1 = bar (unet-ref train: a line per epoch when its output is not a "
                                       "terminal), 2 = one line per epoch, 0 = silent", minimum=0, maximum=2)


PRESETS = {
    # Ronneberger et al. 2015: 64 filters, 4 poolings, 572 x 572 tiles, batch 1, SGD with
    # momentum 0.99, dropout 0.5; the learning rate is the measured SGD default. The run
    # length, 100 epochs of 200 steps (20,000 one-tile steps), is ours: the paper gives 10 hours.
    "paper": TrainConfig(),
    # CPU-sized: what `unet-ref demo` trains; the time limit bounds the demo on a busy machine
    "tutorial": TrainConfig(
        base_filters=16, depth=3, dropout=0.0, tile_size=188, batch_size=4, optimizer="adam",
        epochs=40, steps_per_epoch=30, validation_steps=4, synthetic_count=16,
        synthetic_size=256, val_count=3, out="runs/tutorial", time_limit_minutes=7.0,
    ),
    # Volumes: the 3-D U-Net on synthetic EM-like volumes (unet_ref.synthetic.synthetic_volume),
    # pooled (1, 2, 2) then (2, 2, 2) so that z keeps its few voxels
    "tutorial3d": TrainConfig(
        ndim=3, base_filters=8, depth=2, pool_sizes=((1, 2, 2), (2, 2, 2)), dropout=0.0, tile_size=60,
        tile_depth=36, batch_size=2, optimizer="adam", epochs=20, steps_per_epoch=25, validation_steps=2,
        synthetic_count=8, synthetic_depth=32, synthetic_size=64, val_count=2, out="runs/tutorial3d",
        time_limit_minutes=10.0,
    ),
}


def tile_shape(config):
    """The training input tile of `config`, one size per axis: (n, n), or (z, n, n) in 3-D
    with z = tile_depth or tile_size."""
    if config.ndim == 3:
        return (config.tile_depth or config.tile_size, config.tile_size, config.tile_size)
    return (config.tile_size,) * 2


def _checked_fields(config):
    return TrainConfig(**{field.name: field.metadata["check"](getattr(config, field.name), field.name)
                          for field in dataclasses.fields(TrainConfig)})


def check_config(config):
    """`config` with every value checked against its setting and stored as its setting
    stores it (tuples, not lists), then checked across fields. TypeError / ValueError
    naming the field; FileNotFoundError for a missing data path."""
    config = _checked_fields(config)
    if config.pool_sizes is not None:
        pool_factors(config.pool_sizes, config.depth, config.ndim)  # ValueError naming the level or the depth
    if config.spacing is not None:
        check_spacing(config.spacing, config.ndim)  # one value per axis
    try:
        output_size(tile_shape(config), config.depth, config.pool_sizes)  # ValueError naming the nearest valid sizes
    except ValueError as error:
        raise ValueError(f"tile_size{' / tile_depth' if config.ndim == 3 else ''}: {error}") from None
    check_memory(tile_shape(config), config.base_filters, 1, config.batch_size, training=True)
    check_label_region(output_size(tile_shape(config), config.depth, config.pool_sizes), config.spacing, config.w0,
                       config.sigma)
    if config.predict_tile_size:
        output_size((config.predict_tile_size,) * config.ndim, config.depth, config.pool_sizes)
        check_memory((config.predict_tile_size,) * config.ndim, config.base_filters, 1, what="predict_tile_size")
    if config.data and not os.path.exists(config.data):
        raise FileNotFoundError(f"data {config.data} does not exist")
    return config


def resolve_config(preset="tutorial", overrides=None):
    """A preset with some fields replaced, checked: resolve_config("paper", {"epochs": 5})."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    overrides = dict(overrides or {})
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown configuration field(s) {sorted(unknown)}; known: {sorted(names)}")
    return check_config(dataclasses.replace(PRESETS[preset], **overrides))


def config_from_json(values):
    """A TrainConfig from a run's config.json, without the checks that need this machine
    (data path, memory). A setting missing from the file (added later) has its default;
    fields the file has but TrainConfig does not are ignored; values stored as text by an
    earlier version (pool_sizes "1x2x2,2x2x2", spacing "5,1,1") are parsed."""
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    kept = {}
    for name, value in values.items():
        if name in fields:
            parse = fields[name].metadata["parse"]
            kept[name] = parse(value) if isinstance(value, str) and parse is not str else value
    return _checked_fields(TrainConfig(**kept))
