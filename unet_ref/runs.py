"""A training run's folder: starting it, resuming it, refusing to mix two runs, loading it.

A run folder (`--out`) holds:

    config.json     the resolved TrainConfig (written before training starts)
    backup/         weights, optimizer state and the epoch count of the last backup
                    (keras.callbacks.BackupAndRestore); removed when the run finishes
    log.csv         one row per finished epoch; loss_curve.png drawn from it
    last.keras      the model after the latest epoch; model.keras the best one (best.json)
    tensorboard/

`start_run` looks at the folder before anything is written: a new or empty folder starts
a run; a folder with a backup resumes it, if the configuration is the same (its location,
epochs, time limit and verbosity may differ: a moved folder or a longer run resumes); a
finished run is refused, never mixed with a second one. `load_run` reads a run (or a
.keras file) back for prediction. Every problem with these files is a ValueError naming
the file and what to do.
"""
import csv
import dataclasses
import io
import os
import pathlib

from unet_ref.config import config_from_json
from unet_ref.files import atomic_write, read_json, write_json

__all__ = ["start_run", "load_run", "restored_epoch"]

# settings that may change when a run resumes: where it lives and how long and loud it runs
RESUMABLE_CHANGES = ("out", "epochs", "time_limit_minutes", "verbose")


def _same_data(a, b):
    return a == b or (bool(a) and bool(b) and os.path.realpath(a) == os.path.realpath(b))


def _changed(previous, config):
    """The settings of `config` that differ from the run's config.json `previous` (a setting
    added after `previous` was written had its default then, e.g. ndim = 2)."""
    previous = config_from_json(previous)
    return sorted(field.name for field in dataclasses.fields(config)
                  if field.name not in RESUMABLE_CHANGES
                  and not (field.name == "data" and _same_data(previous.data, config.data))
                  and getattr(previous, field.name) != getattr(config, field.name))


def restored_epoch(backup):
    """The epoch a run resumes at: the count of finished epochs in the backup that
    BackupAndRestore will load (its latest files, or the previous ones if those are
    broken). ValueError naming the folder when neither can be read."""
    import h5py

    problems = []
    for suffix in ("", ".bkp"):  # BackupAndRestore(double_checkpoint=True) falls back to .bkp
        weights, metadata = backup / f"latest.weights.h5{suffix}", backup / f"training_metadata.json{suffix}"
        try:
            with h5py.File(weights, "r") as f:
                f.keys()
            return int(read_json(metadata)["epoch"]) if metadata.exists() else 0
        except (OSError, ValueError, KeyError, TypeError) as error:
            problems.append(f"{weights.name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    raise ValueError(f"the backup in {backup} cannot be read ({'; '.join(problems)}); delete {backup} to start "
                     f"the run over (the best model so far stays in {backup.parent / 'model.keras'})")


def _trim_log(log_csv, epochs):
    """Keep the rows of the first `epochs` epochs: a kill between an epoch's CSV row and
    its backup would otherwise repeat the epoch's row when it is trained again."""
    if not log_csv.exists():
        return
    with open(log_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, [row for row in reader if int(row["epoch"]) < epochs]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields or ["epoch"])
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(log_csv, "w") as f:
        f.write(buffer.getvalue())


def start_run(config, out):
    """Prepare the run folder `out` for `config`: check it, write config.json, and return
    the epoch training starts at (0 for a new run, the backup's epoch for a resumed one).

    Refused with a ValueError, before anything is written: `out` is a file; a non-empty
    folder that holds no run; a finished run (train into another folder); an interrupted
    run with another configuration; a backup that cannot be read.
    """
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder for the run")
    config_file, backup = out / "config.json", out / "backup"
    epoch = 0
    if config_file.exists():
        previous = read_json(config_file)
        if backup.exists():
            try:
                changed = _changed(previous, config)
            except (TypeError, ValueError, AttributeError) as error:
                raise ValueError(f"{config_file} does not hold a training configuration ({error}); choose another "
                                 f"--out") from error
            if changed:
                raise ValueError(f"{out} holds an interrupted run with a different configuration ({', '.join(changed)} "
                                 f"changed); resume it with the same settings or choose another --out")
            epoch = restored_epoch(backup)
            _trim_log(out / "log.csv", epoch)
        elif (out / "log.csv").exists() or (out / "model.keras").exists():
            raise ValueError(f"{out} holds a finished run: choose another --out to train again (or delete the "
                             f"folder); `unet-ref predict {out} ...` uses it")
    elif out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} is a folder with other files and no run in it (no config.json); choose a new "
                         f"or empty folder")
    write_json(config_file, dataclasses.asdict(config))
    return epoch


def load_run(path):
    """A run folder (config.json + model.keras) or a .keras file -> (model, config or None).

    The model is loaded without its loss and optimiser (`compile=False`): prediction
    needs neither.
    """
    import keras

    path = pathlib.Path(path)
    if path.is_dir():
        model_file, config_file = path / "model.keras", path / "config.json"
    elif path.is_file():
        model_file, config_file = path, path.parent / "config.json"
    else:
        raise FileNotFoundError(f"model {path} does not exist (expected a run folder or a .keras file)")
    if not model_file.exists():
        raise FileNotFoundError(f"no model.keras in {path}")
    if model_file.suffix != ".keras":
        raise ValueError(f"model file {model_file} is not a .keras file")
    try:
        model = keras.models.load_model(model_file, compile=False)
    except Exception as error:  # a broken zip, a zip without config.json, not a model: Keras raises many types
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"cannot load the model in {model_file} ({type(error).__name__}: {first}); is it a "
                         f".keras file written by unet_ref or keras.Model.save?") from error
    config = None
    if path.is_dir() or config_file.exists():
        fields = read_json(config_file) if config_file.exists() else None
        if fields is not None:
            try:
                config = config_from_json(fields)
            except (TypeError, ValueError, AttributeError) as error:
                raise ValueError(f"{config_file} does not hold a training configuration ({error})") from error
    return model, config
