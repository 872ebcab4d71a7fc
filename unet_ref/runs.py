"""A training run's folder: one writer, its states, starting, resuming, restarting, finishing.

A run folder (`--out`) holds:

    .lock           locked by the process that trains into the folder (one writer)
    state.json      {"finished": false} from the start, true once the run has ended
    config.json     the resolved TrainConfig (written before training starts)
    backup/         weights, optimizer state and the epoch count of the last backup
                    (keras.callbacks.BackupAndRestore, with the previous one as *.bkp);
                    removed after the run is marked finished
    log.csv         one row per finished epoch; loss_curve.png drawn from it
    last.keras      the model after the latest epoch; model.keras the best one (best.json)
    tensorboard/

`open_run` takes the folder's lock (a second writer is refused at once; the system drops
the lock of a process that dies, even by SIGKILL) and looks at the folder before anything
is written. Its states, and what the same command does with each:

- new: no folder, an empty one, or one with only our lock and temporaries: start.
- started, no usable backup (stopped before its first backup, at any moment): start
  over; what the stopped attempt wrote (log, checkpoints, curves) is removed.
- started, with a backup: resume at the backup's epoch, if the configuration is the same
  (its location, epochs, time limit and verbosity may differ: a moved folder or a longer
  run resumes); a backup broken by a kill mid-write falls back to the previous one.
- finished (state.json says so; or, written before state.json existed, a log or model
  beside no backup): refused, never mixed with a second run.

Temporary files a killed writer left are deleted at the next start. `load_run` reads a run
(or a .keras file) back for prediction. Every problem with these files is a ValueError
naming the file and what to do.
"""
import contextlib
import csv
import dataclasses
import errno
import io
import os
import pathlib
import shutil

import numpy as np

from unet_ref.config import config_from_json
from unet_ref.files import atomic_write, output_folder, read_json, remove_temporaries, write_json

try:  # POSIX (Linux, macOS)
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["open_run", "start_run", "load_run", "restored_epoch", "RUN_FILES"]

LOCK, STATE = ".lock", "state.json"
# what a run writes besides config.json; removed when a run starts over
RUN_FILES = ("log.csv", "last.keras", "model.keras", "best.json", "loss_curve.png", "tensorboard", "backup")

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


def _finite_weights(weights):
    """True if the HDF5 weights file opens and every float array in it is finite (a backup
    written after the loss diverged holds NaN)."""
    import h5py

    arrays = []
    with h5py.File(weights, "r") as f:
        f.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return all(np.isfinite(a).all() for a in arrays if np.issubdtype(np.asarray(a).dtype, np.floating))


def restored_epoch(backup):
    """The epoch a run resumes at: the count of finished epochs in the backup, or None when
    there is no backup to resume from.

    The latest backup (latest.weights.h5 + training_metadata.json) is used if it reads and
    its weights are finite, else the previous one (*.bkp), which is then copied over the
    latest, as BackupAndRestore(double_checkpoint=True) loads the latest files. Neither
    usable and no previous one: the first backup was being written when the run stopped,
    so there is nothing to resume (None). Both present and broken: a ValueError naming the
    folder (that is not what a kill leaves)."""
    pairs = [(backup / f"latest.weights.h5{suffix}", backup / f"training_metadata.json{suffix}")
             for suffix in ("", ".bkp")]
    problems = []
    for i, (weights, metadata) in enumerate(pairs):
        if not weights.exists():
            continue
        try:
            if not _finite_weights(weights):
                raise ValueError("weights that are not finite")
            epoch = int(read_json(metadata)["epoch"]) if metadata.exists() else 0
        except (OSError, ValueError, KeyError, TypeError) as error:
            first = str(error).splitlines()[0] if str(error) else ""
            problems.append(f"{weights.name}: {type(error).__name__}: {first}")
            continue
        if i:  # the previous backup: make it the one BackupAndRestore loads
            for source, target in zip(pairs[i], pairs[0]):
                if source.exists():
                    with atomic_write(target) as tmp:
                        shutil.copyfile(source, tmp)
                else:
                    target.unlink(missing_ok=True)
        return epoch
    if len(problems) < 2:
        return None
    raise ValueError(f"the backup in {backup} cannot be read ({'; '.join(problems)}); delete {backup} to start "
                     f"the run over (the best model so far stays in {backup.parent / 'model.keras'})")


def _trim_log(log_csv, epochs):
    """Keep the rows of the first `epochs` epochs: a kill between an epoch's CSV row and
    its backup would otherwise repeat the epoch's row when it is trained again."""
    if not log_csv.exists():
        return
    with open(log_csv, newline="") as f:
        reader = csv.DictReader(f)
        # a row cut short by a kill lacks its last fields (None): it is the epoch being written
        fields = reader.fieldnames
        rows = [row for row in reader if None not in row.values() and int(row["epoch"]) < epochs]
    if not fields:  # no header yet: CSVLogger writes it with the first row
        log_csv.unlink()
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(log_csv, "w") as f:
        f.write(buffer.getvalue())


def _finished(out):
    """Whether the run in `out` has ended (see the module docstring)."""
    if (out / STATE).exists():
        return bool(read_json(out / STATE).get("finished"))
    # a run written before state.json existed: finished when it left a log or model and no backup
    return (out / "config.json").exists() and not (out / "backup").exists() and \
        ((out / "log.csv").exists() or (out / "model.keras").exists())


def _other_files(out):
    """A folder that holds no run (no state.json or config.json) but files that are not our
    lock or temporaries: someone else's, never written into."""
    if not out.is_dir() or (out / STATE).exists() or (out / "config.json").exists():
        return False
    return any(p.name != LOCK and not p.name.startswith(".tmp-") for p in out.iterdir())


def start_run(config, out):
    """Prepare the run folder `out` for `config`: check it, write state.json and
    config.json, and return the epoch training starts at (0 for a new or restarted run, the
    backup's epoch for a resumed one). Call it holding the folder's lock (`open_run`).

    Refused with a ValueError, before anything is written: `out` is a file; a non-empty
    folder that holds no run; a finished run (train into another folder); an interrupted
    run with another configuration; backups that cannot be read.
    """
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder for the run")
    config_file, backup = out / "config.json", out / "backup"
    if _other_files(out):
        raise ValueError(f"--out {out} is a folder with other files and no run in it (no config.json); choose a new "
                         f"or empty folder")
    if _finished(out):
        if (out / STATE).exists():  # the spare backup of a run killed as it finished; no one else writes here
            shutil.rmtree(backup, ignore_errors=True)
        raise ValueError(f"{out} holds a finished run: choose another --out to train again (or delete the "
                         f"folder); `unet-ref predict {out} ...` uses it")
    epoch = restored_epoch(backup) if config_file.exists() and backup.exists() else None
    if epoch is not None:
        try:
            changed = _changed(read_json(config_file), config)
        except (TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"{config_file} does not hold a training configuration ({error}); choose another "
                             f"--out") from error
        if changed:
            raise ValueError(f"{out} holds an interrupted run with a different configuration ({', '.join(changed)} "
                             f"changed); resume it with the same settings or choose another --out")
    remove_temporaries(out)  # what a killed writer left; we hold the lock, so no one else writes here
    if epoch is None:  # start, or start over: nothing of a stopped attempt may mix with the new run
        for name in RUN_FILES:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        epoch = 0
    else:
        _trim_log(out / "log.csv", epoch)
    write_json(out / STATE, {"finished": False})
    write_json(config_file, dataclasses.asdict(config))
    return epoch


def _lock(out):
    """Lock out/.lock for this process, or a ValueError when another process holds it. The
    system releases the lock when the process ends, however it ends. POSIX: flock (Linux,
    macOS; on network file systems as far as they support it); Windows: msvcrt.locking of
    the file's first byte. A file system without locks: a warning, and no lock."""
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / LOCK, "a+")
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError as error:
        handle.close()
        if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, errno.EDEADLK):
            raise ValueError(f"{out} is in use: another process is training into it (it holds {out / LOCK}); wait "
                             f"for it to end or choose another --out") from None
        print(f"warning: cannot lock {out / LOCK} ({os.strerror(error.errno or 0)}): make sure no other process "
              f"trains into {out}")
        return None
    return handle


class Run:
    """A run folder held by this process: `epoch` to start at, `finish` at the end."""

    def __init__(self, out, epoch):
        self.out, self.epoch = out, epoch

    def finish(self, model):
        """Mark the run finished: model.keras (the last model if no epoch improved on the
        first), then state.json, then the backup removed (a kill in between leaves a
        finished run with a spare backup, never a run that has lost its backup)."""
        if not (self.out / "model.keras").exists():
            with atomic_write(self.out / "model.keras") as tmp:
                model.save(tmp)
        write_json(self.out / STATE, {"finished": True})
        shutil.rmtree(self.out / "backup", ignore_errors=True)


@contextlib.contextmanager
def open_run(config):
    """`with open_run(config) as run:` the locked run folder `config.out`, prepared by
    `start_run`; the lock is released when the block ends (or the process does)."""
    out = output_folder(config.out)
    if _other_files(out):
        start_run(config, out)  # refuses it before the lock file is made in it
    handle = _lock(out)
    try:
        yield Run(out, start_run(config, out))
    finally:
        if handle is not None:
            handle.close()


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
        started = path.is_dir() and (path / STATE).exists()
        raise FileNotFoundError(f"no model.keras in {path}" + (": its run stopped before the end of its first epoch; "
                                                               "run the same train command again" if started else ""))
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
