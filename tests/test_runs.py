"""A run folder survives being stopped at any moment: the same command finishes the run
(resuming or starting over), and predict then works; one writer at a time."""
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EPOCHS = 2
TINY_ARGS = ["--synthetic-count", "3", "--synthetic-size", "64", "--val-count", "1", "--base-filters", "2",
             "--depth", "1", "--tile-size", "44", "--batch-size", "2", "--epochs", str(EPOCHS),
             "--steps-per-epoch", "2", "--validation-steps", "1", "--val-pixel-error", "false", "--verbose", "0"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")


def _check_finished(out):
    """The run in `out` is finished, whole and alone: one log row per epoch, no backup, no
    temporary file left by a killed writer."""
    assert json.loads((out / "state.json").read_text()) == {"finished": True}
    assert [int(row["epoch"]) for row in csv.DictReader((out / "log.csv").open())] == list(range(EPOCHS))
    assert not (out / "backup").exists()
    assert [p.name for p in out.rglob(".tmp-*")] == []


# The instants. A SIGKILL leaves the folder as it is on disk at that instant, so the driver
# copies the folder at every write of a run (before and after each atomic rename, each file
# BackupAndRestore writes or copies, each training step and log row), adding the states a
# kill in the middle of a non-atomic write leaves (the file cut short). Each copy is then
# handed to the same command, in the same process (TensorFlow is imported once).
DRIVER = textwrap.dedent("""
    import json, os, pathlib, shutil, sys
    import keras
    import unet_ref.cli as cli
    import unet_ref.callbacks as callbacks
    from keras.src.callbacks import backup_and_restore
    from unet_ref import files, runs

    out, snaps, argv = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
    names = []

    def snap(what, cut=None):
        target = snaps / f"{len(names):03d}"
        if out.exists():
            shutil.copytree(out, target)
        else:
            target.mkdir(parents=True)
        if cut is not None and (target / cut).exists():  # killed halfway through writing `cut`
            data = (target / cut).read_bytes()
            (target / cut).write_bytes(data[: len(data) // 2])
        names.append(what)

    enter, leave = files.atomic_write.__enter__, files.atomic_write.__exit__
    def atomic_exit(self, *exc):
        snap(f"writing {pathlib.Path(self.path).name}")
        result = leave(self, *exc)
        snap(f"wrote {pathlib.Path(self.path).name}")
        return result
    files.atomic_write.__exit__ = atomic_exit

    copy = backup_and_restore.file_utils.copy
    def backup_copy(source, target, *args, **kwargs):
        snap(f"copying {pathlib.Path(source).name}")
        result = copy(source, target, *args, **kwargs)
        snap(f"copied to {pathlib.Path(target).name}", cut=pathlib.Path(target).relative_to(out))
        return result
    backup_and_restore.file_utils.copy = copy_hook = backup_copy

    save = backup_and_restore.BackupAndRestore._save_model
    def save_model(self):
        weights = pathlib.Path(self._weights_path)
        save_weights = self.model.save_weights
        def cut_weights(*args, **kwargs):
            save_weights(*args, **kwargs)
            snap("backup weights halfway", cut=weights.relative_to(out))
            snap("backup weights written")
        self.model.save_weights = cut_weights
        save(self)
        self.model.save_weights = save_weights
        metadata = pathlib.Path(self._training_metadata_path).relative_to(out)
        snap("backup metadata halfway", cut=metadata)
        snap("backup written")
    backup_and_restore.BackupAndRestore._save_model = save_model

    class Steps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snap(f"step {batch + 1}")
        def on_epoch_end(self, epoch, logs=None):
            snap(f"epoch {epoch + 1}: log row written")
    trainer_callbacks = callbacks.trainer_callbacks
    callbacks.trainer_callbacks = lambda *a: trainer_callbacks(*a)[:2] + [Steps()] + trainer_callbacks(*a)[2:]

    rmtree = runs.shutil.rmtree
    def remove(path, *args, **kwargs):
        if pathlib.Path(path).name == "backup":
            snap("removing backup")
        rmtree(path, *args, **kwargs)
    runs.shutil.rmtree = remove

    snap("before the run")
    assert cli.main(["train", "--out", str(out), *argv]) == 0
    snap("after the run")
    # every later run is unhooked
    files.atomic_write.__exit__ = leave
    backup_and_restore.file_utils.copy = copy
    backup_and_restore.BackupAndRestore._save_model = save
    callbacks.trainer_callbacks = trainer_callbacks
    runs.shutil.rmtree = rmtree
    json.dump(names, open(snaps / "names.json", "w"))
""")

RESUME = textwrap.dedent("""
    import json, pathlib, sys
    import unet_ref.cli as cli
    import unet_ref.loss as loss

    def exit_now(code):
        raise SystemExit(code)
    cli._exit_now = exit_now  # a failed train ends this process otherwise
    compile_unet = loss.compile_unet
    def eager(model, **options):  # the same files and callbacks, without tracing a graph per run
        compile_unet(model, **options)
        model.run_eagerly = True
    loss.compile_unet = eager
    image, argv = sys.argv[1], sys.argv[2:]
    results = {}
    for folder in sys.stdin.read().split():
        run = pathlib.Path(folder)
        state = run / "state.json"
        finished = state.exists() and json.loads(state.read_text())["finished"]
        try:
            code = cli.main(["train", "--out", str(run), *argv])
        except SystemExit as stop:
            code = stop.code
        predicted = cli.main(["predict", str(run), image, "--out", str(run) + "_pred"])
        results[folder] = [code, predicted, finished]
    print("RESULTS " + json.dumps(results))
""")


@pytest.mark.slow
def test_a_run_killed_at_any_write_or_step_is_finished_by_the_same_command(tmp_path):
    out, snaps = tmp_path / "run", tmp_path / "snaps"
    result = subprocess.run([sys.executable, "-c", DRIVER, out, snaps, *TINY_ARGS], capture_output=True, text=True,
                            env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_finished(out)
    names = json.loads((snaps / "names.json").read_text())
    # instants spread over the run's life: each file's write with its temporary file in place
    # (state.json at the start and at the end), the first step, each log row, every step of both
    # backups (files cut short, copies to .bkp) and the backup's removal
    kills, seen = [], set()
    for i, name in enumerate(names):
        if name in seen and name in ("step 1", "writing last.keras", "writing loss_curve.png"):
            continue  # the same instant in the next epoch
        seen.add(name)
        if name.startswith(("writing", "copied", "removing", "epoch", "wrote config", "step 1")) \
                or name.endswith(("halfway", "backup written")):
            kills.append(i)
    assert len(kills) >= 20, [names[i] for i in kills]
    image = tmp_path / "x.npy"
    np.save(image, np.random.default_rng(0).integers(0, 256, (30, 37), dtype=np.uint8))
    folders = [str(snaps / f"{i:03d}") for i in kills]
    result = subprocess.run([sys.executable, "-c", RESUME, image, *TINY_ARGS], input="\n".join(folders),
                            capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = json.loads(result.stdout.split("RESULTS ", 1)[1])
    # train finishes the run (exit 0), or refuses a run that had already finished (exit 2)
    failed = {names[int(pathlib.Path(f).name)]: outcomes[f] for f in folders
              if outcomes[f] not in ([0, 0, False], [2, 0, True])}
    assert failed == {}, failed
    for folder in folders:
        _check_finished(pathlib.Path(folder))
        assert (pathlib.Path(folder + "_pred") / "x_prob.tif").exists()


def _start(out, *extra):
    return subprocess.Popen([sys.executable, "-m", "unet_ref.cli", "train", "--out", str(out), *TINY_ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for(path, process, timeout=300):
    """Poll until `path` is written by this process (True) or the process has ended (False)."""
    started, end = time.time(), time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.stat().st_mtime >= started:
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    raise TimeoutError(f"{path} did not appear")


@pytest.mark.slow
def test_sigint_sigterm_and_sigkill_in_the_first_epoch_and_during_checkpoints_leave_a_run_the_same_command_finishes(
        tmp_path):
    from unet_ref.runs import load_run
    from unet_ref.tiling import predict_cells

    # the first epoch (log.csv is opened as fit starts, before any checkpoint), the first
    # checkpoint's write, the first backup's write; each signal stops the run the one before
    # left, unless that one ran to its end before its signal came (a busy machine)
    folders, landed = [tmp_path / "run0"], []
    for signum, event, code in [(signal.SIGINT, "log.csv", 130), (signal.SIGTERM, "last.keras", 143),
                                (signal.SIGKILL, "backup/latest.weights.h5", -9)]:
        if (folders[-1] / "state.json").exists() and json.loads((folders[-1] / "state.json").read_text())["finished"]:
            folders.append(tmp_path / f"run{len(folders)}")
        process = _start(folders[-1])
        if _wait_for(folders[-1] / event, process):
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode in (code, 0), (signum, stderr[-2000:])  # 0: it ended before the signal came
        if process.returncode in (130, 143):  # one line, not a traceback
            assert stderr.strip().splitlines()[-1] in ("unet-ref train: interrupted", "unet-ref train: terminated")
        landed += [signum] if process.returncode == code else []
    assert landed, "no signal came before its run ended"
    for out in folders:
        if json.loads((out / "state.json").read_text())["finished"]:
            continue
        process = _start(out, "--verbose", "1")  # the progress bar, asked for, but stdout is not a terminal
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
        assert "\b" not in stdout and "\r" not in stdout  # no bar redrawn step by step into a log file
    for out in folders:
        _check_finished(out)
    model, _ = load_run(folders[-1])
    [(_, cells)] = predict_cells(model, [np.zeros((20, 30), np.uint8)])
    assert cells.shape == (20, 30) and np.isfinite(cells).all()


def test_a_second_writer_is_refused_at_once_and_a_dead_writers_lock_does_not_block(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys
        lock = open({str(out / '.lock')!r}, "a+")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("locked", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    try:
        result = subprocess.run([sys.executable, "-m", "unet_ref.cli", "train", "--out", str(out), *TINY_ARGS],
                                capture_output=True, text=True, env=ENV, timeout=300)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"unet-ref train: error: {out} is in use: another process is training into it (it holds {out / '.lock'}); "
            f"wait for it to end or choose another --out"]
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()  # the holder dies without releasing its lock: the system releases it
        holder.wait()
    from unet_ref.runs import open_run
    from unet_ref.train import resolve_config

    config = resolve_config("tutorial", {"out": str(out)})
    with open_run(config) as run:
        assert run.epoch == 0
        with pytest.raises(ValueError, match="is in use"):  # a second writer, even in this process
            with open_run(config):
                pass


def test_a_diverging_loss_stops_with_one_line_naming_epoch_and_step_and_the_folder_restarts(tmp_path, capsys,
                                                                                            monkeypatch):
    import unet_ref.cli as cli

    monkeypatch.setattr(cli, "_exit_now", lambda code: None)  # in this process: return instead of exiting
    out = tmp_path / "run"
    args = ["train", "--out", str(out), *TINY_ARGS, "--steps-per-epoch", "5"]
    assert cli.main([*args, "--learning-rate", "1e4"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("unet-ref train: error: the loss became "), error
    assert " at epoch 1, step " in error[0] and "cell probabilities" not in error[0]
    assert json.loads((out / "state.json").read_text()) == {"finished": False}
    assert cli.main([*args, "--learning-rate", "1e-3"]) == 0  # no backup yet: it starts over, any settings
    _check_finished(out)


def test_a_backup_holding_nan_weights_or_cut_short_falls_back_to_the_previous_one(tmp_path):
    import h5py

    from unet_ref.runs import restored_epoch

    backup = tmp_path / "backup"
    backup.mkdir()
    for suffix, value, epoch in (("", np.nan, 3), (".bkp", 1.0, 2)):
        with h5py.File(backup / f"latest.weights.h5{suffix}", "w") as f:
            f["layers/conv/vars/0"] = np.full((3, 3), value, np.float32)
        (backup / f"training_metadata.json{suffix}").write_text(json.dumps({"epoch": epoch}))
    assert restored_epoch(backup) == 2
    with h5py.File(backup / "latest.weights.h5", "r") as f:  # what BackupAndRestore will load
        assert (f["layers/conv/vars/0"][()] == 1).all()
    assert json.loads((backup / "training_metadata.json").read_text()) == {"epoch": 2}
    (backup / "training_metadata.json").write_text('{"epo')  # a kill mid-write of the metadata
    assert restored_epoch(backup) == 2
    for name in ("latest.weights.h5.bkp", "training_metadata.json.bkp"):
        (backup / name).unlink()
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n")  # the first backup, cut short
    assert restored_epoch(backup) is None  # nothing to resume: the run starts over
