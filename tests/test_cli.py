"""The `unet-ref` command line through its real entry point (`python -m unet_ref.cli`)."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
from skimage import io

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(*args, cwd=None, **environment):
    """Run `unet-ref ARGS` in a fresh interpreter (with extra `environment` variables);
    -> CompletedProcess (text)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", **environment)
    return subprocess.run(
        [sys.executable, "-m", "unet_ref.cli", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=300,
    )


def _two_cells(size=40):
    """A binary mask {0, 255}: two cells separated by a membrane column, and a border."""
    mask = np.full((size, size), 255, np.uint8)
    mask[:, size // 2 - 1: size // 2 + 1] = 0
    mask[[0, -1], :] = 0
    return mask


def test_every_subcommand_has_help_with_examples():
    for command in ("demo", "train", "predict", "evaluate", "weightmap", "bench"):
        result = run(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "examples:" in result.stdout and f"unet-ref {command}" in result.stdout


def test_train_help_lists_both_presets_values():
    result = run("train", "--help")
    assert "--base-filters" in result.stdout and "paper: 64" in result.stdout and "tutorial:" in result.stdout


def test_weightmap_writes_npy_tiff_and_png_equal_to_the_library(tmp_path):
    from unet_ref.weights import weight_map

    labels = tmp_path / "labels"
    labels.mkdir()
    io.imsave(labels / "a.png", _two_cells(), check_contrast=False)
    tifffile.imwrite(labels / "b.tif", _two_cells(32))
    result = run("weightmap", labels, "--out", tmp_path / "w", "--png", "--w0", 5, "--sigma", 3)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "w" / "a.npy"), weight_map(_two_cells() > 0, w0=5, sigma=3), rtol=1e-6)
    assert (tmp_path / "w" / "b_weights.png").exists()
    result = run("weightmap", labels / "b.tif", "--out", tmp_path / "t", "--format", "tiff")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(tifffile.imread(tmp_path / "t" / "b.tif"), weight_map(_two_cells(32) > 0), rtol=1e-6)


def test_weightmap_reads_masks_by_the_api_rule_and_refuses_jpeg_like_masks(tmp_path):
    from unet_ref.weights import weight_map

    mask = _two_cells()
    noisy = np.where(mask > 0, 251, 3).astype(np.uint8)  # a JPEG-saved mask: not {0, k}
    noisy[5, 5] = 200
    np.save(tmp_path / "noisy.npy", noisy)
    result = run("weightmap", tmp_path / "noisy.npy", "--out", tmp_path / "w")
    assert result.returncode == 2 and "not a binary mask" in result.stderr and "--threshold" not in result.stdout
    assert not (tmp_path / "w" / "noisy.npy").exists()
    result = run("weightmap", tmp_path / "noisy.npy", "--out", tmp_path / "w", "--threshold", 128)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "w" / "noisy.npy"), weight_map(mask > 0))


def test_evaluate_saved_predictions_prints_table_and_writes_json_csv(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir(), pred.mkdir()
    mask = _two_cells()
    io.imsave(truth / "0.png", mask, check_contrast=False)
    io.imsave(truth / "1.png", mask, check_contrast=False)
    tifffile.imwrite(pred / "0_prob.tif", (mask / 255.0).astype(np.float32))  # perfect
    tifffile.imwrite(pred / "1_prob.tif", np.ones(mask.shape, np.float32))  # all cell: merges both cells
    result = run("evaluate", "--pred", pred, "--truth", truth, "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    assert "rand_error" in result.stdout and "mean" in result.stdout
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["images"][0]["pixel_error"] == 0
    # image 1: every membrane pixel is wrong
    assert metrics["images"][1]["pixel_error"] == pytest.approx(np.mean(mask == 0))
    assert (tmp_path / "m" / "metrics.csv").read_text().count("\n") == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (("weightmap", "no_such_file.png", "--out", "{tmp}"), "does not exist"),
        (("weightmap", "{tmp}/empty", "--out", "{tmp}"), "holds no images"),
        (("weightmap", "{tmp}/stack.npy", "--out", "{tmp}"), "has shape"),
        (("evaluate", "--pred", "{tmp}/mask_prob.npy", "--truth", "{tmp}/mask.png"), "differs from truth shape"),
        (("evaluate", "--pred", "{tmp}/small.npy", "--truth", "{tmp}/mask.png"),
         "do not pair by name: no prediction for ['mask'], no ground truth for ['small']"),
        (("weightmap", "{tmp}/mask.png", "{tmp}/mask.npy", "--out", "{tmp}/w"), "both give the name 'mask'"),
        (("predict", "{tmp}/none.keras", "{tmp}/mask.png", "--out", "{tmp}"), "does not exist"),
        (("train", "--tile-size", "101", "--out", "{tmp}/run"), "nearest valid input sizes"),
        (("train", "--data", "{tmp}/nothing_here", "--out", "{tmp}/run"), "does not exist"),
        (("weightmap", "{tmp}/mask.png", "--out", "{tmp}/mask.png"), "--out {tmp}/mask.png is a file"),
        (("weightmap", "{tmp}/nan.npy", "--out", "{tmp}/w", "--threshold", "0.5", "--quiet"), "contains NaN"),
        (("weightmap", "{tmp}/nan.npy", "--out", "{tmp}/w", "--quiet"), "label nan: mask must be a binary mask"),
        (("weightmap", "{tmp}/negative.npy", "--out", "{tmp}/w", "--instances", "--quiet"), "negative values"),
        (("predict", "{tmp}/none.keras", "{tmp}/mask.png", "--out", "{tmp}/mask.png"), "is a file"),
        (("evaluate", "--pred", "{tmp}/mask.npy", "--truth", "{tmp}/mask.png", "--out", "{tmp}/mask.png"), "is a file"),
        (("train", "--out", "{tmp}/mask.png", "--epochs", "1"), "--out {tmp}/mask.png is a file"),
        (("demo", "--out", "{tmp}/mask.png", "--epochs", "1"), "is a file"),
        (("weightmap", "{tmp}/mask.npy", "--out", "{tmp}", "--quiet"),
         "output {tmp}/mask.npy would replace the input {tmp}/mask.npy; choose another --out"),
        (("weightmap", "{tmp}/mask.npy", "--out", "", "--quiet"), "--out is empty"),
        (("weightmap", "{tmp}/corrupt.tif", "--out", "{tmp}/w", "--quiet"),
         "cannot read label {tmp}/corrupt.tif: not a readable TIFF"),
        (("weightmap", "{tmp}/classes.png", "--out", "{tmp}/w", "--instances", "--quiet"),
         "holds 0 and the values 1, 2, and value 1 covers 2 separate regions: a class map"),
        (("weightmap", "{tmp}/classes.png", "--out", "{tmp}/w", "--quiet"), "segmentation here is binary"),
        (("train", "--data", "{tmp}", "--out", "{tmp}", "--epochs", "1"),
         "output {tmp}/config.json would replace the input {tmp}/config.json"),
    ],
)
def test_bad_input_gives_one_line_naming_the_problem_and_exit_code_2(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "stack.npy", np.zeros((2, 3, 4, 5, 6), np.uint8))
    np.save(tmp_path / "small.npy", np.zeros((5, 5), np.float32))
    np.save(tmp_path / "mask_prob.npy", np.zeros((5, 5), np.float32))
    np.save(tmp_path / "mask.npy", _two_cells())
    np.save(tmp_path / "nan.npy", np.where(_two_cells() > 0, 1.0, np.nan))
    np.save(tmp_path / "negative.npy", _two_cells().astype(np.int32) - 1)
    io.imsave(tmp_path / "mask.png", _two_cells(), check_contrast=False)
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 100)
    classes = np.zeros((12, 12), np.uint8)  # 1 cell, 2 its border, for two cells
    classes[1:5, 1:5], classes[7:11, 7:11] = 2, 2
    classes[2:4, 2:4], classes[8:10, 8:10] = 1, 1
    io.imsave(tmp_path / "classes.png", classes, check_contrast=False)
    (tmp_path / "config.json").write_text("{}")  # a data folder holding a file a run would write
    result = run(*(a.format(tmp=tmp_path) if isinstance(a, str) else a for a in args))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(tmp=tmp_path) in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run("--debug", "weightmap", tmp_path / "missing.png", "--out", tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_train_two_steps_then_predict_and_evaluate_through_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    result = run(
        "train", "--out", run_dir, "--synthetic-count", 3, "--synthetic-size", 64, "--val-count", 1,
        "--base-filters", 4, "--depth", 1, "--tile-size", 44, "--batch-size", 2, "--epochs", 1,
        "--steps-per-epoch", 2, "--validation-steps", 1, "--verbose", 2,
    )
    assert result.returncode == 0, result.stderr
    for name in ("config.json", "model.keras", "last.keras", "log.csv", "loss_curve.png"):
        assert (run_dir / name).exists(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["base_filters"] == 4 and config["depth"] == 1 and config["steps_per_epoch"] == 2

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    io.imsave(images / "x.png", rng.integers(0, 255, (37, 51), dtype=np.uint8), check_contrast=False)
    tifffile.imwrite(images / "stack.tif", rng.integers(0, 255, (2, 30, 30), dtype=np.uint8))
    result = run("predict", run_dir, images, "--out", tmp_path / "pred", "--tile-size", 44)
    assert result.returncode == 0, result.stderr
    prob = tifffile.imread(tmp_path / "pred" / "x_prob.tif")
    assert prob.shape == (37, 51) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
    assert io.imread(tmp_path / "pred" / "stack_0001_mask.png").shape == (30, 30)

    truth = tmp_path / "truth"
    truth.mkdir()
    io.imsave(truth / "x.png", _two_cells(60)[:37, :51], check_contrast=False)
    result = run("evaluate", "--model", run_dir, "--images", images / "x.png", "--truth", truth, "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert set(metrics["mean"]) >= {"pixel_error", "rand_error", "vi"}


def test_demo_writes_panel_loss_curve_metrics_and_model(tmp_path):
    result = run("demo", "--out", tmp_path / "demo", "--epochs", 1, "--steps-per-epoch", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    for name in ("panel.png", "loss_curve.png", "metrics.json", "model.keras", "config.json"):
        assert (tmp_path / "demo" / name).exists(), name
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    # the trivial all-cell predictor's pixel error is the membrane fraction of the held-out masks
    assert 0.05 < metrics["trivial_all_cell"]["pixel_error"] < 0.5
    assert set(metrics["held_out"]["mean"]) >= {"pixel_error", "rand_error", "vi", "cell_iou"}


def test_every_help_example_of_bench_and_demo_says_what_it_means():
    bench = run("bench", "--help").stdout
    assert "cd unet_ref" not in bench and "in the project root" in bench  # the example runs where it says
    assert "0 = no limit" in " ".join(run("demo", "--help").stdout.split())


def test_bench_outside_the_project_root_says_where_to_run_it(tmp_path):
    result = run("bench", cwd=tmp_path)
    assert result.returncode == 2 and "run `unet-ref bench` from the project root" in result.stderr


def test_an_error_inside_the_input_pipeline_ends_train_with_one_line(tmp_path):
    # a sample that raises in a tf.data worker: one line, exit code 2, no hang at exit
    # (the subprocess timeout turns a hang into a failure)
    script = textwrap.dedent(f"""
        import sys
        import unet_ref.pipeline as pipeline
        good = pipeline.TileSampler.sample
        def sample(self, index):
            if index >= 5:
                raise ValueError("labels[3] cannot be read (a test)")
            return good(self, index)
        pipeline.TileSampler.sample = sample
        from unet_ref.cli import main
        sys.exit(main(["train", "--out", {str(tmp_path / "run")!r}, "--synthetic-count", "3", "--synthetic-size",
                       "64", "--val-count", "1", "--base-filters", "2", "--depth", "1", "--tile-size", "44",
                       "--batch-size", "2", "--epochs", "2", "--steps-per-epoch", "5", "--validation-steps", "1",
                       "--val-pixel-error", "false", "--verbose", "0"]))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("unet-ref")]
    assert lines == ["unet-ref train: error: the training data pipeline failed: ValueError: labels[3] cannot be "
                     "read (a test)"], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("errno_name", ["EROFS", "ENOSPC"])
def test_a_read_only_or_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, errno_name):
    # the write fails as the file is put in place (as root, permissions cannot make it fail)
    script = textwrap.dedent(f"""
        import errno, os, sys
        def replace(src, dst):
            raise OSError(errno.{errno_name}, os.strerror(errno.{errno_name}), dst)
        os.replace = replace
        from unet_ref.cli import main
        sys.exit(main(["weightmap", {str(tmp_path / "mask.png")!r}, "--out", {str(tmp_path / "w")!r}, "--quiet"]))
    """)
    io.imsave(tmp_path / "mask.png", _two_cells(), check_contrast=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and os.strerror(getattr(__import__("errno"), errno_name)) in lines[0], result.stderr
    assert list((tmp_path / "w").iterdir()) == []  # the temporary file went with the failed write


def test_evaluate_challenge_prints_the_challenge_scores_beside_the_papers_table(tmp_path):
    from unet_ref.challenge import challenge_scores

    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir(), pred.mkdir()
    mask = _two_cells()
    gap = (mask / 255.0).astype(np.float32)
    gap[10, 19:21] = 1.0  # the membrane between the two cells opened: a merge
    for name, p in (("0", mask / 255.0), ("1", gap)):
        io.imsave(truth / f"{name}.png", mask, check_contrast=False)
        tifffile.imwrite(pred / f"{name}_prob.tif", p.astype(np.float32))
    result = run("evaluate", "--pred", pred, "--truth", truth, "--challenge", "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    expected = challenge_scores(np.stack([mask / 255.0, gap]), np.stack([mask, mask]))
    assert "U-Net paper, Table 1" in result.stdout and "0.000353" in result.stdout
    assert f"{expected['warping_error']:.6f}" in result.stdout
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())["challenge"]
    assert saved["rand_error"] == pytest.approx(expected["rand_error"])


def test_evaluate_volumes_challenge_scores_the_stack_of_their_z_slices(tmp_path):
    from unet_ref.challenge import challenge_scores
    from unet_ref.synthetic import synthetic_volume

    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir(), pred.mkdir()
    slices = []
    for name, depth, seed in (("a", 5, 1), ("b", 3, 2)):  # two volumes of different depths
        mask = synthetic_volume((16, 24, 28), seed=seed)[1][:depth]
        prob = np.clip(mask / 255.0 + np.random.default_rng(seed).normal(0, 0.3, mask.shape), 0, 1).astype(np.float32)
        tifffile.imwrite(truth / f"{name}.tif", mask, photometric="minisblack")  # a stack, not RGB
        tifffile.imwrite(pred / f"{name}_prob.tif", prob, photometric="minisblack")
        slices.append((prob, mask))
    result = run("evaluate", "--pred", pred, "--truth", truth, "--volumes", "--challenge", "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    assert "2 volume(s), 8 slices" in result.stdout
    expected = challenge_scores(np.concatenate([p for p, _ in slices]), np.concatenate([m for _, m in slices]))
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())["challenge"]
    for name in ("pixel_error", "rand_error", "warping_error", "v_rand", "v_info"):
        assert saved[name] == pytest.approx(expected[name], rel=1e-12), name


def test_evaluate_challenge_refuses_unequal_slice_sizes_before_any_work(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir(), pred.mkdir()
    for name, shape in (("a", (4, 20, 20)), ("b", (4, 20, 24))):
        tifffile.imwrite(truth / f"{name}.tif", np.full(shape, 255, np.uint8), photometric="minisblack")
        tifffile.imwrite(pred / f"{name}_prob.tif", np.ones(shape, np.float32), photometric="minisblack")
    result = run("evaluate", "--pred", pred, "--truth", truth, "--volumes", "--challenge", "--out", tmp_path / "m")
    assert result.returncode == 2 and result.stdout == ""  # not even the table
    assert result.stderr.strip() == ("unet-ref evaluate: error: --challenge scores one stack of equally sized slices, "
                                     "got (H, W) sizes [(20, 20), (20, 24)]")
    assert not (tmp_path / "m").exists()


def test_weightmap_of_a_3d_stack_with_spacing_equals_the_library(tmp_path):
    from unet_ref.weights import weight_map

    labels = np.zeros((6, 20, 24), np.uint16)
    labels[1:5, 2:9, 3:11], labels[1:5, 10:18, 3:11], labels[2:6, 4:16, 13:22] = 7, 300, 9  # three touching-ish cells
    tifffile.imwrite(tmp_path / "cells.tif", labels)
    result = run("weightmap", tmp_path / "cells.tif", "--instances", "--spacing", 3, 1, 1, "--format", "tiff",
                 "--out", tmp_path / "w", "--png", "--quiet")
    assert result.returncode == 0, result.stderr
    written = tifffile.imread(tmp_path / "w" / "cells.tif")
    assert written.dtype == np.float32 and written.shape == labels.shape
    np.testing.assert_array_equal(written, weight_map(labels=labels, spacing=(3, 1, 1)))
    assert (tmp_path / "w" / "cells_weights.png").exists()
    for spacing, message in (((3,), "takes 2 values"), ((3, 1, 1, 1), "takes 2 values"),
                             ((3, 0, 1), "spacing values must be finite numbers > 0")):
        result = run("weightmap", tmp_path / "cells.tif", "--instances", "--spacing", *spacing, "--out",
                     tmp_path / "bad", "--quiet")
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_train_ndim_3_then_predict_and_evaluate_a_stack_as_one_volume(tmp_path):
    from unet_ref.synthetic import synthetic_volume

    run_dir = tmp_path / "run"
    result = run(
        "train", "--ndim", 3, "--out", run_dir, "--synthetic-count", 3, "--synthetic-depth", 16, "--synthetic-size", 32,
        "--val-count", 1, "--base-filters", 2, "--depth", 1, "--pool-sizes", "1x2x2", "--tile-size", 44,
        "--tile-depth", 28, "--batch-size", 1, "--epochs", 1, "--steps-per-epoch", 2, "--validation-steps", 1,
        "--verbose", 2,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["ndim"], config["pool_sizes"], config["tile_depth"]) == (3, [[1, 2, 2]], 28)

    image, mask, _ = synthetic_volume((17, 30, 33), seed=9)
    (tmp_path / "images").mkdir()
    (tmp_path / "truth").mkdir()
    tifffile.imwrite(tmp_path / "images" / "v.tif", image)
    tifffile.imwrite(tmp_path / "truth" / "v.tif", mask)
    result = run("predict", run_dir, tmp_path / "images", "--out", tmp_path / "pred")
    assert result.returncode == 0, result.stderr
    prob = tifffile.imread(tmp_path / "pred" / "v_prob.tif")
    assert prob.shape == (17, 30, 33) and prob.dtype == np.float32  # one volume, not 17 images
    assert set(np.unique(tifffile.imread(tmp_path / "pred" / "v_mask.tif"))) <= {0, 255}
    result = run("evaluate", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth", "--volumes")
    assert result.returncode == 0, result.stderr
    assert "pixel_error" in result.stdout and "rand_error" in result.stdout
    flat = tmp_path / "flat"
    flat.mkdir()
    io.imsave(flat / "x.png", image[0], check_contrast=False)
    result = run("predict", run_dir, flat / "x.png", "--out", tmp_path / "pred2")
    assert result.returncode == 2 and r"x: image must be (D, H, W) or (D, H, W, C)" in result.stderr


def test_weightmap_of_colour_instance_labels_keeps_touching_cells_of_different_colours_apart(tmp_path):
    from unet_ref.weights import weight_map

    colour = np.zeros((30, 40, 3), np.uint8)
    colour[3:27, 3:20], colour[3:27, 20:37] = [200, 30, 30], [30, 30, 200]  # touching, gray means equal
    io.imsave(tmp_path / "cells.png", colour, check_contrast=False)
    result = run("weightmap", tmp_path / "cells.png", "--instances", "--out", tmp_path / "w", "--quiet")
    assert result.returncode == 0, result.stderr
    ids = np.zeros((30, 40), np.int32)
    ids[3:27, 3:20], ids[3:27, 20:37] = 1, 2
    np.testing.assert_array_equal(np.load(tmp_path / "w" / "cells.npy"), weight_map(labels=ids))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished one-epoch run, trained in this process (`main`, as the command line)."""
    from unet_ref.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--out", str(out), "--synthetic-count", "3", "--synthetic-size", "64", "--val-count", "1",
                 "--base-filters", "2", "--depth", "1", "--tile-size", "44", "--batch-size", "2", "--epochs", "1",
                 "--steps-per-epoch", "2", "--validation-steps", "1", "--val-pixel-error", "false", "--verbose", "0",
                 "--normalize", "percentile"]) == 0
    return out


@pytest.mark.parametrize("threshold", ["nan", "-1", "1.5", "inf", "0", "1"])
def test_predict_refuses_a_threshold_outside_0_1_like_evaluate(tiny_run, tmp_path, capsys, threshold):
    from unet_ref.cli import main

    np.save(tmp_path / "x.npy", np.zeros((20, 20), np.uint8))
    assert main(["predict", str(tiny_run), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p"),
                 "--threshold", threshold]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"unet-ref predict: error: --threshold must be a finite number > 0 and < 1, got {float(threshold)!r}"]
    assert not (tmp_path / "p").exists()


def test_predict_never_writes_over_an_input_file_of_its_folder(tiny_run, tmp_path, capsys):
    from unet_ref.cli import main

    (tmp_path / "ds").mkdir()
    io.imsave(tmp_path / "ds" / "cell.png", _two_cells(), check_contrast=False)
    io.imsave(tmp_path / "ds" / "cell_mask.png", _two_cells(), check_contrast=False)  # an input too
    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()}
    assert main(["predict", str(tiny_run), str(tmp_path / "ds"), "--out", str(tmp_path / "ds")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"unet-ref predict: error: output {tmp_path}/ds/cell_mask.png would replace the input "
        f"{tmp_path}/ds/cell_mask.png; choose another --out"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()} == before  # nothing written


def test_predict_reads_images_by_the_runs_intensity_rule_and_its_hint_makes_a_file_work(tiny_run, tmp_path, capsys):
    from unet_ref.cli import main
    from unet_ref.runs import load_run
    from unet_ref.tiling import predict_tiled

    assert json.loads((tiny_run / "config.json").read_text())["normalize"] == ["percentile", 1.0, 99.8]
    camera = np.random.default_rng(0).normal(900, 150, (37, 41)).clip(0, 4095).astype(np.uint16)  # 12 bits
    tifffile.imwrite(tmp_path / "cam.tif", camera)
    assert main(["predict", str(tiny_run), str(tmp_path / "cam.tif"), "--out", str(tmp_path / "p")]) == 0
    low, high = np.percentile(camera, [1, 99.8])  # the oracle: numpy's percentiles, not normalize_image
    expected = predict_tiled(load_run(tiny_run)[0], np.clip((camera - low) / (high - low), 0, 1).astype(np.float32))
    np.testing.assert_allclose(tifffile.imread(tmp_path / "p" / "cam_prob.tif"), expected[..., 1], atol=1e-5)
    # a dtype-rule read of an int64 array is refused with the rule that reads it; that rule works
    np.save(tmp_path / "wide.npy", camera.astype(np.int64) // 16)
    capsys.readouterr()
    assert main(["predict", str(tiny_run), str(tmp_path / "wide.npy"), "--out", str(tmp_path / "q"),
                 "--normalize", "dtype"]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "is int64 with values" in error
    hinted = error.split("with --normalize ")[1].split()[0]
    assert hinted == "range:0,255"
    assert main(["predict", str(tiny_run), str(tmp_path / "wide.npy"), "--out", str(tmp_path / "q"),
                 "--normalize", hinted]) == 0
    assert (tmp_path / "q" / "wide_prob.tif").exists()


def test_predict_and_weightmap_of_zarr_volumes_on_two_local_workers_equal_the_library(tmp_path):
    zarr = pytest.importorskip("zarr")
    import keras
    from ome_zarr.writer import write_image

    from unet_ref.model import build_unet
    from unet_ref.tiling import predict_tiled
    from unet_ref.weights import weight_map

    keras.utils.set_random_seed(0)
    model = build_unet(base_filters=2, depth=1, ndim=3)
    model.save(tmp_path / "unet3d.keras")
    volume = np.random.default_rng(0).integers(0, 256, (9, 30, 34), dtype=np.uint8)
    write_image(volume, str(tmp_path / "volume.ome.zarr"), axes="zyx", scale={"z": 3.0, "y": 1.0, "x": 1.0},
                scale_factors=())
    result = run("predict", tmp_path / "unet3d.keras", tmp_path / "volume.ome.zarr", "--out", tmp_path / "p.ome.zarr",
                 "--workers", 2)  # one block: test_blockwise.py holds many blocks equal to the whole
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(zarr.open_array(tmp_path / "p.ome.zarr" / "0")[:], predict_tiled(model, volume)[..., 1],
                               atol=1e-6)

    labels = np.zeros((9, 30, 34), np.uint16)
    labels[1:8, 2:14, 3:30], labels[1:8, 15:28, 3:16], labels[2:9, 15:28, 17:31] = 5, 300, 9
    zarr.create_array(tmp_path / "labels.zarr", data=labels, chunks=(9, 30, 34))  # a plain zarr array
    result = run("weightmap", tmp_path / "labels.zarr", "--instances", "--spacing", 3, 1, 1, "--out",
                 tmp_path / "w.ome.zarr", "--workers", 2, "--block-size", 4, 10, 10, "--quiet")
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(zarr.open_array(tmp_path / "w.ome.zarr" / "0")[:],
                               weight_map(labels=labels, spacing=(3, 1, 1)), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "args, message",
    [
        (("{tmp}/missing.zarr",), "labels {tmp}/missing.zarr does not exist"),
        (("{tmp}/four.zarr",), "expected 2 or 3 spatial axes"),
        (("{tmp}/mask.zarr", "--block-size", 8, 0), "--block-size must be an integer >= 1, got 0"),
        (("{tmp}/mask.zarr", "--workers", 0), "--workers must be an integer >= 1, got 0"),
        (("{tmp}/mask.zarr", "--scheduler", "tcp://127.0.0.1:9"), "scheduler tcp://127.0.0.1:9: cannot connect"),
        (("{tmp}/mask.zarr", "{tmp}/four.zarr"), "give one zarr input at a time, got 2 inputs"),
    ],
)
def test_bad_zarr_input_gives_one_line_naming_the_argument(tmp_path, args, message):
    zarr = pytest.importorskip("zarr")
    zarr.create_array(tmp_path / "four.zarr", data=np.zeros((2, 3, 4, 5), np.uint8))
    zarr.create_array(tmp_path / "mask.zarr", data=_two_cells())
    result = run("weightmap", *(a.format(tmp=tmp_path) if isinstance(a, str) else a for a in args),
                 "--out", tmp_path / "w.ome.zarr", DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message.format(tmp=tmp_path) in lines[0], result.stderr
    assert not list(tmp_path.glob("w.ome.zarr*"))  # nothing written


def test_zarr_output_never_overwrites_its_input(tmp_path):
    zarr = pytest.importorskip("zarr")
    zarr.create_array(tmp_path / "mask.zarr", data=_two_cells())
    result = run("weightmap", tmp_path / "mask.zarr", "--out", tmp_path / "mask.zarr")
    assert result.returncode == 2 and "would write over the input" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.zarr"]


def test_without_the_zarr_extra_a_zarr_input_says_which_extra_to_install(tmp_path):
    missing = tmp_path / "no_extra" / "zarr"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError(\"No module named 'zarr'\", name='zarr')\n")
    (tmp_path / "mask.zarr").mkdir()
    env = {"PYTHONPATH": f"{tmp_path / 'no_extra'}{os.pathsep}{ROOT}"}
    result = subprocess.run([sys.executable, "-m", "unet_ref.cli", "weightmap", str(tmp_path / "mask.zarr"), "--out",
                             str(tmp_path / "w.zarr")], capture_output=True, text=True, env=dict(os.environ, **env),
                            timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and 'pip install -e ".[zarr]"' in lines[0], result.stderr
