"""The trainer: configuration, resuming an interrupted run, the distributed path."""
import csv
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from unet_ref.train import PRESETS, TrainConfig, resolve_config

ROOT = pathlib.Path(__file__).resolve().parents[1]

TINY = dict(
    synthetic_count=3, synthetic_size=64, val_count=1, base_filters=2, depth=1, dropout=0.0,
    tile_size=44, batch_size=2, epochs=4, steps_per_epoch=3, validation_steps=1,
    val_pixel_error=False, verbose=0,
)


def test_paper_preset_is_the_papers_configuration():
    paper = PRESETS["paper"]
    assert (paper.base_filters, paper.depth, paper.tile_size, paper.batch_size) == (64, 4, 572, 1)
    assert (paper.optimizer, paper.momentum, paper.dropout) == ("sgd", 0.99, 0.5)


def test_resolve_config_overrides_fields_and_rejects_bad_values():
    config = resolve_config("paper", {"epochs": 3, "base_filters": 16})
    assert config.epochs == 3 and config.base_filters == 16 and config.tile_size == 572
    with pytest.raises(ValueError, match="nearest valid input sizes"):
        resolve_config("paper", {"tile_size": 570})
    with pytest.raises(ValueError, match="unknown configuration"):
        resolve_config("paper", {"filters": 3})
    with pytest.raises(ValueError, match="preset must be one of"):
        resolve_config("huge")


class _Interrupt(Exception):
    pass


def _interrupting(epoch, batch):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_train_batch_end(self, b, logs=None):
            if (self.epoch, b) == (epoch, batch):
                raise _Interrupt(f"killed at epoch {epoch}, step {batch}")

    return Interrupt()


def _probe():
    """Records the optimizer step count and the first epoch of a (resumed) run."""
    import keras

    class Probe(keras.callbacks.Callback):
        first_epoch = None

        def on_train_begin(self, logs=None):
            self.iterations_at_start = int(self.model.optimizer.iterations.numpy())

        def on_epoch_begin(self, epoch, logs=None):
            if self.first_epoch is None:
                self.first_epoch = epoch

    return Probe()


@pytest.mark.parametrize("backup_every, kill_at, resumed_epoch, steps_kept", [
    (0, (2, 1), 2, 6),  # epoch backups: epochs 0, 1 done (3 steps each); epoch 2 restarts
    (1, (1, 1), 1, 5),  # a backup every step: 3 + 2 steps kept; epoch 1 restarts with them
])
def test_an_interrupted_run_resumes_from_its_last_backup(tmp_path, backup_every, kill_at, resumed_epoch, steps_kept):
    from unet_ref.train import train

    config = resolve_config("tutorial", dict(TINY, out=str(tmp_path), backup_every=backup_every))
    with pytest.raises(_Interrupt):
        train(config, callbacks=[_interrupting(*kill_at)])
    metadata = json.loads((tmp_path / "backup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == resumed_epoch

    probe = _probe()
    _, history = train(config, callbacks=[probe])
    assert probe.first_epoch == resumed_epoch  # not from epoch 0
    assert probe.iterations_at_start == steps_kept  # weights and optimizer state restored
    assert len(history.history["loss"]) == config.epochs - resumed_epoch
    epochs = [int(row["epoch"]) for row in csv.DictReader((tmp_path / "log.csv").open())]
    assert epochs == list(range(config.epochs))  # one log row per epoch over both runs
    assert not (tmp_path / "backup").exists()  # a finished run leaves no backup


def test_resuming_with_a_different_configuration_is_refused(tmp_path):
    from unet_ref.train import train

    config = resolve_config("tutorial", dict(TINY, out=str(tmp_path)))
    with pytest.raises(_Interrupt):
        train(config, callbacks=[_interrupting(1, 0)])
    with pytest.raises(ValueError, match="base_filters"):
        train(resolve_config("tutorial", dict(TINY, out=str(tmp_path), base_filters=4)))


def test_training_runs_under_mirrored_strategy_on_two_logical_cpus(tmp_path):
    # Logical devices must be configured before TensorFlow initialises them: a fresh process.
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from unet_ref.train import distribution_strategy, resolve_config, train
        strategy = distribution_strategy()
        print("replicas", strategy.num_replicas_in_sync, type(strategy).__name__)
        config = resolve_config("tutorial", dict({TINY!r}, out={str(tmp_path)!r}, epochs=1, steps_per_epoch=2))
        model, history = train(config)
        print("loss", history.history["loss"][-1])
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2 MirroredStrategy" in result.stdout
    assert "training on 2 replicas" in result.stdout
    assert (tmp_path / "model.keras").exists()


def test_config_json_round_trips_through_load_run(tmp_path):
    from unet_ref.runs import load_run
    from unet_ref.train import train

    config = resolve_config("tutorial", dict(TINY, out=str(tmp_path), epochs=1, steps_per_epoch=1))
    model, _ = train(config)
    loaded, loaded_config = load_run(tmp_path)
    assert loaded_config == config
    assert loaded.count_params() == model.count_params()
    assert isinstance(TrainConfig(**json.loads((tmp_path / "config.json").read_text())), TrainConfig)


@pytest.mark.parametrize("field, value, error", [
    ("sigma", 0.0, "sigma must be a finite number > 0"), ("sigma", -3.0, "sigma"), ("w0", float("nan"), "w0"),
    ("w0", -1.0, "w0 must be a finite number >= 0"), ("learning_rate", 0.0, "learning_rate"),
    ("learning_rate", float("inf"), "learning_rate"), ("momentum", 1.0, "momentum"), ("dropout", 1.0, "dropout"),
    ("backup_every", -1, "backup_every"), ("verbose", 3, "verbose must be an integer >= 0 and <= 2"),
    ("time_limit_minutes", -1.0, "time_limit_minutes"), ("tile_size", 0, "tile_size"), ("epochs", 0, "epochs"),
    ("optimizer", "rmsprop", r"optimizer must be one of \['sgd', 'adam'\]"), ("depth", 40, "depth"),
    ("val_pixel_error", "yes", "val_pixel_error must be true or false"), ("seed", 1.5, "seed must be an integer"),
    ("tile_size", 57212, "needs about .* GiB for a training step"), ("predict_tile_size", 101, "nearest valid"),
])
def test_every_setting_is_checked_against_its_declared_range(field, value, error):
    with pytest.raises((ValueError, TypeError), match=error):
        resolve_config("tutorial", {field: value})


def test_every_setting_has_help_text_and_the_learning_rate_has_one_default(tmp_path):
    import dataclasses

    from unet_ref.loss import DEFAULT_LEARNING_RATES
    from unet_ref.train import train

    assert all(field.metadata["help"] for field in dataclasses.fields(TrainConfig))
    assert PRESETS["paper"].learning_rate is None  # None: the optimiser's measured default
    config = resolve_config("paper", dict(TINY, out=str(tmp_path), epochs=1, steps_per_epoch=1))
    model, _ = train(config)
    assert float(model.optimizer.learning_rate) == pytest.approx(DEFAULT_LEARNING_RATES["sgd"])


def test_a_moved_run_folder_resumes_and_the_log_follows_the_backup(tmp_path):
    from unet_ref.train import train

    first = tmp_path / "r0"
    with pytest.raises(_Interrupt):
        train(resolve_config("tutorial", dict(TINY, out=str(first))), callbacks=[_interrupting(2, 1)])
    # a kill between epoch 1's log row and its backup: the backup says 1 epoch, the log 2
    metadata = first / "backup" / "training_metadata.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "epoch": 1}))
    moved = tmp_path / "elsewhere" / "r0"
    moved.parent.mkdir()
    first.rename(moved)
    probe = _probe()
    train(resolve_config("tutorial", dict(TINY, out=str(moved) + "/")), callbacks=[probe])  # spelled differently
    assert probe.first_epoch == 1
    epochs = [int(row["epoch"]) for row in csv.DictReader((moved / "log.csv").open())]
    assert epochs == list(range(TINY["epochs"]))  # no repeated row


def test_finished_runs_files_and_other_folders_are_refused_before_anything_is_written(tmp_path):
    from unet_ref.train import train

    config = resolve_config("tutorial", dict(TINY, out=str(tmp_path / "run"), epochs=1, steps_per_epoch=1))
    train(config)
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    with pytest.raises(ValueError, match="holds a finished run"):
        train(config)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    (tmp_path / "notes.txt").write_text("not a run")
    with pytest.raises(ValueError, match="is a file"):
        train(resolve_config("tutorial", dict(TINY, out=str(tmp_path / "notes.txt"))))
    with pytest.raises(ValueError, match="other files and no run"):
        train(resolve_config("tutorial", dict(TINY, out=str(tmp_path))))


def test_broken_run_files_are_named_with_what_to_do(tmp_path):
    from unet_ref.runs import load_run
    from unet_ref.train import train

    config = resolve_config("tutorial", dict(TINY, out=str(tmp_path)))
    with pytest.raises(_Interrupt):
        train(config, callbacks=[_interrupting(2, 1)])
    for name in ("latest.weights.h5", "latest.weights.h5.bkp"):  # both backups truncated
        path = tmp_path / "backup" / name
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"backup .* cannot be read .* delete .*backup to start the run over"):
        train(config)
    (tmp_path / "best.json").write_text('{"epoch": 1, "val_lo')  # truncated
    with pytest.raises(ValueError, match=r"best.json cannot be read as JSON"):
        from unet_ref.callbacks import AtomicCheckpoint
        AtomicCheckpoint(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match=r"config.json cannot be read as JSON"):
        load_run(tmp_path)
    import zipfile
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:  # a zip without config.json
        z.writestr("metadata.json", "{}")
    (tmp_path / "text.keras").write_text("not a model")
    for name in ("empty.keras", "text.keras"):
        with pytest.raises(ValueError, match=f"cannot load the model in .*{name}"):
            load_run(tmp_path / name)


def test_several_machines_are_refused_with_the_reason_not_a_hang(tmp_path):
    # Keras 3's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585): with two
    # workers on localhost it stops in fit's build, and a half-started collective hangs the peer
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG=json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                                     "task": {"type": "worker", "index": 0}}))
    result = subprocess.run([sys.executable, "-m", "unet_ref.cli", "train", "--out", str(tmp_path / "run"),
                             "--epochs", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("unet-ref train: error: TF_CONFIG is set, but training "
                                                             "on several machines is not supported")
    assert not (tmp_path / "run").exists()  # refused before anything was written


# --- volumes: the 3-D U-Net -----------------------------------------------------------------


def test_a_tiny_3d_unet_overfits_one_synthetic_volume_below_the_all_cell_error():
    import keras
    import numpy as np

    from unet_ref.loss import compile_unet
    from unet_ref.model import build_unet
    from unet_ref.pipeline import make_dataset
    from unet_ref.synthetic import synthetic_volume
    from unet_ref.tiling import predict_tiled

    image, mask, labels = synthetic_volume((16, 32, 32), seed=0)
    pools = ((1, 2, 2),)  # z is not pooled: a 28-voxel tile is valid along it
    keras.utils.set_random_seed(0)
    data = make_dataset([image], [labels], tile_size=(28, 44, 44), depth=1, pool_sizes=pools, augment=False,
                        num_tiles=1)  # the whole volume (12 x 28 x 28 output crop, mirrored) every step
    model = build_unet(base_filters=4, depth=1, ndim=3, pool_sizes=pools, dropout=0.0)
    compile_unet(model, optimizer="adam", learning_rate=3e-3)
    loss = model.fit(data, epochs=4, steps_per_epoch=10, verbose=0, shuffle=False).history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    cells = predict_tiled(model, image)[..., 1] >= 0.5
    trivial = np.mean(mask == 0)  # the all-cell predictor's pixel error
    assert np.mean(cells != (mask > 0)) < trivial / 2


def test_3d_settings_are_checked_before_tensorflow_loads():
    from unet_ref.config import tile_shape
    from unet_ref.settings import parse_pool_sizes

    config = resolve_config("tutorial3d")
    assert config.ndim == 3 and tile_shape(config) == (36, 60, 60)
    assert config.pool_sizes == ((1, 2, 2), (2, 2, 2))
    assert parse_pool_sizes("") is None and parse_pool_sizes("2, 1x2x2") == (2, (1, 2, 2))
    for overrides, message in [
        (dict(ndim=4), "ndim must be an integer >= 2 and <= 3"),
        (dict(pool_sizes=((1, 2), (2, 2, 2))), r"pool_sizes\[0\] must be an int or 3 ints"),
        (dict(pool_sizes=((1, 2, 2),)), "depth 2 does not match pool_sizes, which has 1 levels"),
        (dict(pool_sizes="1x2x2,2x2x2"), "pool_sizes must be None or one entry per level"),  # text: parsed by the CLI
        (dict(tile_depth=37), r"tile_size / tile_depth: input size 37 on axis 0 .* 36 or 38"),
        (dict(batch_norm="no"), "batch_norm must be true or false"),
    ]:
        with pytest.raises((ValueError, TypeError), match=message):
            resolve_config("tutorial3d", overrides)
    with pytest.raises(ValueError, match="factors per level separated by commas"):
        parse_pool_sizes("1x2x2;2x2x2")


def test_no_setting_holds_numbers_as_text():
    # every field's check takes Python values and stores tuples, never strings of numbers
    import dataclasses

    from unet_ref.config import TrainConfig, check_config

    config = check_config(dataclasses.replace(PRESETS["tutorial3d"], pool_sizes=[[1, 2, 2], [2, 2, 2]],
                                              spacing=[5, 1, 1]))
    assert config.pool_sizes == ((1, 2, 2), (2, 2, 2)) and config.spacing == (5.0, 1.0, 1.0)
    for preset in PRESETS.values():  # only text settings (paths, choices) hold strings
        for field in dataclasses.fields(TrainConfig):
            assert isinstance(getattr(preset, field.name), str) == (field.metadata["parse"] is str), field.name


def test_the_spacing_setting_reaches_the_weight_map_units():
    from unet_ref.settings import parse_spacing

    assert parse_spacing("") is None and parse_spacing("5,1,1") == (5.0, 1.0, 1.0)
    assert resolve_config("tutorial3d", {"spacing": (2, 1, 1)}).spacing == (2.0, 1.0, 1.0)
    for spacing, message in [((5, 1), "spacing must be one number per axis"), ((0, 1, 1), "finite numbers > 0")]:
        with pytest.raises(ValueError, match=message):
            resolve_config("tutorial3d", {"spacing": spacing})
    with pytest.raises(ValueError, match="numbers separated by commas"):
        parse_spacing("5;1;1")
    # a spacing in the wrong units: a context band of 10^31 sections, refused before anything is allocated
    with pytest.raises(ValueError, match=r"context band \(2\.9e\+31, 29, 29\) px per axis"):
        resolve_config("tutorial3d", {"spacing": (1e-30, 1, 1)})


def test_a_config_json_of_an_earlier_version_with_settings_as_text_is_read_as_values(tmp_path):
    import dataclasses

    from unet_ref.config import config_from_json

    values = dataclasses.asdict(resolve_config("tutorial3d"))
    values.update(pool_sizes="1x2x2,2x2x2", spacing="5,1,1", retired_setting=3)
    config = config_from_json(values)
    assert config.pool_sizes == ((1, 2, 2), (2, 2, 2)) and config.spacing == (5.0, 1.0, 1.0)


def test_a_run_written_before_a_setting_existed_resumes_with_that_settings_default(tmp_path):
    import dataclasses

    import h5py

    from unet_ref.files import write_json
    from unet_ref.runs import start_run

    config = resolve_config("tutorial", dict(TINY, out=str(tmp_path)))
    older = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("ndim", "pool_sizes", "spacing")}
    write_json(tmp_path / "config.json", older)  # as an interrupted run of an earlier version left it
    (tmp_path / "backup").mkdir()
    h5py.File(tmp_path / "backup" / "latest.weights.h5", "w").close()
    write_json(tmp_path / "backup" / "training_metadata.json", {"epoch": 2})
    assert start_run(config, tmp_path) == 2
    with pytest.raises(ValueError, match=r"different configuration \(ndim changed\)"):
        write_json(tmp_path / "config.json", older)
        start_run(dataclasses.replace(config, ndim=3), tmp_path)
