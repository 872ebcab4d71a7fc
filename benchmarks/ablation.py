"""What the weight map buys: the same training with three weightings, several seeds.

Settings (everything else equal, same seeds, same number of steps):

    map      the paper's weight map: w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2)), w0 = 10, sigma = 5
    balance  class balance only: w = w_c (w0 = 0)
    none     no weights: w = 1 (the plain cross-entropy)

Datasets:

    isbi      ISBI 2012 slices 0-19 for training, 20-24 scored with the challenge's metrics
              (`unet_ref.challenge_scores`), final weights, no TTA
    touching  synthetic cells touching along faint borders (`touching_cells_sample`, like the
              paper's HeLa, its Fig. 3), scored on 8 held-out images with object counts
              (`unet_ref.evaluate.instance_scores`: merges, splits, matches at IoU 0.5)

Each run trains in its own process into OUT/<dataset>/<setting>/seed<k>/ and writes
result.json there when scored; finished runs are skipped and an interrupted one resumes
from its last backup, so the table can be completed over several sittings:

    python benchmarks/ablation.py run                      # every missing run (about 2 h on 2 cores)
    python benchmarks/ablation.py run --datasets touching --seeds 0
    python benchmarks/ablation.py table                    # mean +- sd of the finished runs
    python benchmarks/ablation.py publish                  # their result.json into docs/figures/data/ablation
    python docs/make_figures.py ablation.md                # the table in the docs, from those files
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
ISBI = pathlib.Path(os.environ.get("UNET_REF_ISBI", ROOT.parent / "shared" / "data" / "isbi2012"))

SETTINGS = {"map": dict(w0=10.0, sigma=5.0, class_balance=True),
            "balance": dict(w0=0.0, class_balance=True),
            "none": dict(w0=0.0, class_balance=False)}
# A narrow network trained briefly: the comparison between settings is what matters.
# The tutorial network (16 filters, depth 3, 188 px tiles -> 100 px, batch 4, Adam 1e-3).
COMMON = dict(base_filters=16, depth=3, dropout=0.0, tile_size=188, batch_size=4, optimizer="adam",
              validation_steps=2, val_pixel_error=False, verbose=2)
DATASETS = {
    "isbi": dict(data=str(ISBI), val_count=5, epochs=30, steps_per_epoch=100),
    "touching": dict(synthetic="touching", synthetic_count=16, synthetic_size=256, val_count=2, epochs=20,
                     steps_per_epoch=100),
}
HELD_OUT = 8  # touching: held-out synthetic images, seeds far from the training ones
METRICS = {"isbi": ["pixel_error", "rand_error", "warping_error", "v_rand", "v_info"],
           "touching": ["merges", "splits", "precision", "recall", "f1", "pixel_error"]}


def run_dir(out, dataset, setting, seed):
    return pathlib.Path(out) / dataset / setting / f"seed{seed}"


def one(out, dataset, setting, seed):
    """Train one run (resuming if interrupted) and score it; writes result.json."""
    from unet_ref.evaluate import instance_scores, pixel_error
    from unet_ref.files import write_json
    from unet_ref.tiling import predict_cells
    from unet_ref.train import resolve_config, train

    folder = run_dir(out, dataset, setting, seed)
    config = resolve_config("tutorial", {**COMMON, **DATASETS[dataset], **SETTINGS[setting],
                                         "seed": seed, "out": str(folder)})
    start = time.monotonic()
    model, _ = train(config)
    train_seconds = time.monotonic() - start
    if dataset == "isbi":
        result = isbi_scores(model, config)
    else:
        from unet_ref.synthetic import synthetic_dataset

        images, labels = synthetic_dataset(HELD_OUT, size=config.synthetic_size, seed=10_000 + seed, kind="touching")
        cells = [c for _, c in predict_cells(model, images)]
        rows = [instance_scores(c, t) for c, t in zip(cells, labels)]
        counts = {k: sum(r[k] for r in rows) for k in ("true_objects", "predicted_objects", "matched", "merges",
                                                        "splits")}
        precision = counts["matched"] / max(counts["predicted_objects"], 1)
        recall = counts["matched"] / max(counts["true_objects"], 1)
        result = {**counts, "precision": precision, "recall": recall,
                  "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                  "pixel_error": float(np.mean([pixel_error(c, t > 0) for c, t in zip(cells, labels)]))}
    result.update(dataset=dataset, setting=setting, seed=seed, train_seconds=train_seconds,
                  steps=config.epochs * config.steps_per_epoch, load_average=os.getloadavg()[0])
    write_json(folder / "result.json", result)
    print(json.dumps(result))


def isbi_scores(model, config, tta=False):
    """The challenge's scores of `model` on the validation slices of `config` (20-24 for
    ISBI with val_count=5), with the threshold that gave each."""
    from unet_ref.challenge import challenge_scores
    from unet_ref.tiling import predict_cells
    from unet_ref.train import load_data

    _, _, images, labels = load_data(config)
    cells = np.stack([c for _, c in predict_cells(model, images, tta=tta)])
    scores = challenge_scores(cells, np.stack(labels) > 0)
    return {m: scores[m] for m in METRICS["isbi"]} | {f"{m}_threshold": scores[f"{m}_threshold"]
                                                     for m in METRICS["isbi"]}


def trivial_isbi():
    """The challenge's scores of the trivial proposal "every pixel is cell" on slices 20-24."""
    from unet_ref.challenge import challenge_scores
    from unet_ref.datasets import load_dataset

    _, labels = load_dataset(ISBI)
    truth = np.stack(labels[20:25]) > 0
    scores = challenge_scores(np.ones(truth.shape, np.float32), truth)
    return {m: scores[m] for m in METRICS["isbi"]}


def paper_table(out):
    """Markdown: the paper's Table 1 row, the `map` runs on slices 20-24 and the trivial
    proposal, side by side, with the challenge's scores."""
    from unet_ref.challenge import PAPER_TABLE_1

    runs = results(out).get(("isbi", "map"), [])
    trivial_file = pathlib.Path(out) / "isbi" / "trivial.json"
    columns = ["warping_error", "rand_error", "pixel_error", "v_rand", "v_info"]
    lines = ["| | " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|---" * (len(columns) + 1) + "|",
             "| U-Net paper, Table 1 (ISBI test set, 30 slices, 64 filters, ~10 h on a GPU, averaged over 7 rotated versions) | "
             + " | ".join(f"{PAPER_TABLE_1[c]:.6g}" if c in PAPER_TABLE_1 else "-" for c in columns) + " |"]
    if runs:
        cells = []
        for c in columns:
            values = np.array([r[c] for r in runs], float)
            cells.append(f"{values.mean():.4g} ± {values.std(ddof=1) if len(values) > 1 else 0:.2g}")
        lines.append(f"| weight-map ablation, paper's map, slices 20-24 ({len(runs)} seeds, {COMMON['base_filters']} filters, depth "
                     f"{COMMON['depth']}, {runs[0]['steps']:,} steps of {COMMON['batch_size']} tiles on a CPU) | "
                     + " | ".join(cells) + " |")
    if trivial_file.exists():
        trivial = json.loads(trivial_file.read_text())
        lines.append("| trivial: every pixel is cell, slices 20-24 | " + " | ".join(f"{trivial[c]:.4g}" for c in columns)
                     + " |")
    return "\n".join(lines)


def run(out, datasets, settings, seeds):
    for dataset in datasets:
        for seed in seeds:  # seeds outermost within a dataset: a partial table has every setting
            for setting in settings:
                if (run_dir(out, dataset, setting, seed) / "result.json").exists():
                    continue
                print(f"--- {dataset} / {setting} / seed {seed}", flush=True)
                code = subprocess.call([sys.executable, __file__, "one", "--out", str(out), dataset, setting,
                                        str(seed)])
                if code:
                    sys.exit(f"run {dataset}/{setting}/seed{seed} failed with exit code {code}")


def results(out):
    found = {}
    for path in sorted(pathlib.Path(out).glob("*/*/seed*/result.json")):
        r = json.loads(path.read_text())
        found.setdefault((r["dataset"], r["setting"]), []).append(r)
    return found


def table(out):
    """Markdown: mean +- sd over seeds per dataset and setting."""
    found = results(out)
    lines = []
    for dataset, metrics in METRICS.items():
        rows = [(s, found.get((dataset, s), [])) for s in SETTINGS]
        if not any(r for _, r in rows):
            continue
        lines += [f"**{dataset}**", "", "| weighting | runs | " + " | ".join(metrics) + " | train min |",
                  "|---" * (len(metrics) + 3) + "|"]
        for setting, runs in rows:
            if not runs:
                continue
            cells = []
            for m in metrics + ["train_seconds"]:
                values = np.array([r[m] for r in runs], float) / (60 if m == "train_seconds" else 1)
                digits = 1 if m in ("merges", "splits", "train_seconds") else 4
                cells.append(f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0:.{digits}f}")
            lines.append(f"| {setting} | {len(runs)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train and score every missing run")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["touching", "isbi"])
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p = sub.add_parser("one", help="one run (used by run)")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("setting", choices=list(SETTINGS))
    p.add_argument("seed", type=int)
    p = sub.add_parser("table", help="print the table of finished runs")
    p.add_argument("--out", default="runs/ablation")
    p = sub.add_parser("publish", help="copy the finished runs' result.json files for the docs")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--to", default=str(ROOT / "docs" / "figures" / "data" / "ablation"))
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out, args.datasets, args.settings, args.seeds)
        print(table(args.out))
    elif args.command == "one":
        one(args.out, args.dataset, args.setting, args.seed)
    elif args.command == "publish":
        from unet_ref.files import write_json

        for path in sorted(pathlib.Path(args.out).glob("*/*/seed*/result.json")):
            write_json(pathlib.Path(args.to) / path.relative_to(args.out), json.loads(path.read_text()))
        write_json(pathlib.Path(args.to) / "isbi" / "trivial.json", trivial_isbi())
        print(f"copied the results to {args.to}")
    else:
        print(table(args.out))


if __name__ == "__main__":
    main()
