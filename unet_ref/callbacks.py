"""The trainer's Keras callbacks: validation metrics of whole images, atomic checkpoints,
resuming, logs, the loss curve and a wall-time limit.

`trainer_callbacks` lists them in the order they must run at the end of an epoch: the stop
on a NaN loss first, the validation metrics next (they add to the logs), the writers after, and
`keras.callbacks.BackupAndRestore` last, so that an epoch is marked done only after its
logs and checkpoints exist (a kill in between repeats the epoch; `plot_loss_curve` keeps
the epoch's last row, `unet_ref.plots.plot_loss_curve`).
"""
import importlib.util
import json
import math
import time

import keras
import numpy as np

from unet_ref.evaluate import evaluate_images
from unet_ref.files import atomic_write, read_json
from unet_ref.plots import plot_loss_curve
from unet_ref.tiling import predict_cells

__all__ = ["StopOnNaN", "ValidationMetrics", "AtomicCheckpoint", "LossCurve", "TimeLimit", "trainer_callbacks"]


class StopOnNaN(keras.callbacks.Callback):
    """A FloatingPointError naming the epoch and step where the loss stops being finite. It
    runs first, so no later callback saves the diverged weights and the run resumes from its
    last backup (keras.callbacks.TerminateOnNaN would end the run as if it had finished)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        self.check((logs or {}).get("loss"), f"at epoch {self.epoch}, step {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self.check((logs or {}).get("val_loss"), f"in the validation after epoch {epoch + 1}")

    def check(self, loss, where):
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(f"the loss became {float(loss)} {where}: training diverged (a lower learning rate "
                                     f"may help); the same command resumes the run from its last backup, if any")


class ValidationMetrics(keras.callbacks.Callback):
    """Pixel and adapted Rand error of whole validation images, predicted with overlap-tile,
    added to the epoch logs as val_pixel_error and val_rand_error (val_loss comes from `fit`
    itself, on un-augmented validation tiles)."""

    def __init__(self, images, labels, tile_size=None):
        super().__init__()
        self.images, self.cells, self.tile_size = images, [label > 0 for label in labels], tile_size

    def on_epoch_end(self, epoch, logs=None):
        cells = [cell for _, cell in predict_cells(self.model, self.images, tile_size=self.tile_size)]
        mean = evaluate_images(cells, self.cells)["mean"]
        logs["val_pixel_error"] = mean["pixel_error"]
        logs["val_rand_error"] = mean["rand_error"]


class AtomicCheckpoint(keras.callbacks.Callback):
    """`last.keras` every epoch, `model.keras` when val_loss improves; written to a temporary
    file and renamed (keras.callbacks.ModelCheckpoint writes in place, and a kill during the
    write would leave a broken file)."""

    def __init__(self, out):
        super().__init__()
        self.out, self.best = out, np.inf
        best_file = out / "best.json"
        if best_file.exists():  # resumed run: keep the best of the earlier epochs
            self.best = read_json(best_file).get("val_loss", np.inf)

    def on_epoch_end(self, epoch, logs=None):
        with atomic_write(self.out / "last.keras") as tmp:
            self.model.save(tmp)
        val_loss = (logs or {}).get("val_loss", np.inf)
        if val_loss < self.best:
            self.best = float(val_loss)
            with atomic_write(self.out / "model.keras") as tmp:
                self.model.save(tmp)
            with atomic_write(self.out / "best.json", "w") as f:
                json.dump({"epoch": epoch + 1, "val_loss": self.best}, f)


class LossCurve(keras.callbacks.Callback):
    """loss_curve.png from log.csv (so a resumed run shows all its epochs)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def on_epoch_end(self, epoch, logs=None):
        plot_loss_curve(self.out / "log.csv", self.out / "loss_curve.png")


class TimeLimit(keras.callbacks.Callback):
    """Stop after the epoch that crosses `minutes` of wall time (0 = no limit)."""

    def __init__(self, minutes):
        super().__init__()
        self.minutes = minutes

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if self.minutes and time.monotonic() - self.start > 60 * self.minutes:
            print(f"time limit of {self.minutes} min reached after epoch {epoch + 1}; stopping")
            self.model.stop_training = True


def trainer_callbacks(config, out, val_images, val_labels):
    """The callbacks `unet_ref.train.train` passes to `fit`, in order (see above)."""
    callbacks = [StopOnNaN()] + ([ValidationMetrics(val_images, val_labels, config.predict_tile_size or None)]
                                 if config.val_pixel_error else [])
    callbacks += [
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=True),
        AtomicCheckpoint(out),
        LossCurve(out),
        TimeLimit(config.time_limit_minutes),
        keras.callbacks.BackupAndRestore(
            str(out / "backup"), save_freq=config.backup_every or "epoch", double_checkpoint=True,
            delete_checkpoint=False,  # removed by unet_ref.runs once the run is marked finished
        ),
    ]
    # tf.summary needs the tensorboard package, which TensorFlow no longer installs
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.insert(-1, keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False))
    elif config.verbose:
        print("no TensorBoard logs: `pip install tensorboard` to get them")
    return callbacks
