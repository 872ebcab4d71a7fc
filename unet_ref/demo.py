"""`unet-ref demo`: the whole story in a few CPU minutes, with no download.

1. Synthesise EM-like images with their masks (`unet_ref.synthetic`).
2. Train the `tutorial` configuration (`unet_ref.train`) on the CPU.
3. Predict held-out synthetic images (other seeds, never seen in training) with the
   overlap-tile strategy (`predict_tiled`).
4. Evaluate them (`unet_ref.evaluate`) next to the trivial predictor that calls every
   pixel "cell": learning shows as a pixel error well below the trivial one.
5. Write into one folder: panel.png (input / ground truth / weight map / prediction),
   loss_curve.png, metrics.json, model.keras (+ config.json, log.csv of the run).
"""
import pathlib
import time

import numpy as np

from unet_ref.evaluate import evaluate_images, format_table
from unet_ref.files import write_json
from unet_ref.plots import plot_predictions

__all__ = ["run_demo"]

HELD_OUT = 3  # held-out synthetic images
HELD_OUT_SEED = 10_000  # far from the training seeds


def run_demo(out="unet_ref_demo", seed=0, minutes=None, quiet=False, **overrides):
    """Run the demo; returns the metrics dict that is also written to out/metrics.json.

    `overrides` replace fields of the tutorial configuration (e.g. epochs=1 for a smoke
    test); `minutes` bounds the training time.
    """
    from unet_ref.synthetic import synthetic_dataset
    from unet_ref.tiling import predict_cells
    from unet_ref.train import resolve_config, train

    out = pathlib.Path(out)
    start = time.monotonic()
    overrides = {"out": str(out), "seed": seed, "verbose": 0 if quiet else 2, **overrides}
    if minutes is not None:
        overrides["time_limit_minutes"] = minutes
    config = resolve_config("tutorial", overrides)
    print(f"training the tutorial configuration on synthetic data -> {out}")
    model, _ = train(config)
    train_seconds = time.monotonic() - start

    images, labels = synthetic_dataset(HELD_OUT, size=config.synthetic_size, seed=HELD_OUT_SEED + seed)
    masks = [np.asarray(label) > 0 for label in labels]
    names = [f"held_out_{i}" for i in range(HELD_OUT)]
    cells = [cell for _, cell in predict_cells(model, images, names, tile_size=config.predict_tile_size or None)]
    results = evaluate_images(cells, masks, names=names)
    trivial = evaluate_images([np.ones(m.shape, np.float32) for m in masks], masks, names=names)["mean"]
    print(format_table(results))
    summary = {
        "held_out": results,
        "trivial_all_cell": trivial,
        "pixel_error_vs_trivial": results["mean"]["pixel_error"] / trivial["pixel_error"],
        "train_seconds": train_seconds,
        "total_seconds": time.monotonic() - start,
        "config": {k: v for k, v in vars(config).items()},
    }
    print(
        f"held-out pixel error {results['mean']['pixel_error']:.4f} vs {trivial['pixel_error']:.4f} for the "
        f"trivial all-cell predictor; cell IoU {results['mean']['cell_iou']:.3f} vs {trivial['cell_iou']:.3f}; "
        f"adapted Rand error {results['mean']['rand_error']:.3f} vs {trivial['rand_error']:.3f}"
    )
    write_json(out / "metrics.json", summary)
    plot_predictions(out / "panel.png", images[:2], labels[:2], cells[:2], w0=config.w0, sigma=config.sigma)
    summary["total_seconds"] = time.monotonic() - start
    print(f"done in {summary['total_seconds']:.0f} s: panel.png, loss_curve.png, metrics.json, model.keras in {out}")
    return summary
