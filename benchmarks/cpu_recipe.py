"""The CPU recipe for ISBI 2012: what makes the most of one hour on 2 cores, measured.

Every candidate is the paper's network shape and training (depth 4, dropout 0.5, weight
map w0 = 10 and sigma = 5, elastic deformation, one tile per step) made CPU-sized the same
way (16 filters, 380 px tiles, Adam 1e-3) and changes one thing:

    base      the earlier CPU run's recipe: constant learning rate
    cosine    the learning rate decays to 0 along a cosine over the run
    wide      cosine, 32 filters instead of 16 (4 x the time per step)
    tile572   cosine, the paper's 572 px tiles instead of 380 (4 x the pixels per step)

A pilot gives each candidate the same compute: PILOT_SECONDS of the idle machine, turned
into a number of steps with the time per step measured on it (MS_PER_STEP), so a busy
machine makes a pilot slower but does not change what it trains. Pilots are scored like
the challenge (`unet_ref.challenge_scores`) on the held-out slices 20-24, final weights,
no TTA. The final run trains the chosen candidate for the hour (its cosine, if any, sized
to end inside it; the time limit is a guard) and is scored with and without TTA. `seeds`
repeats that run as a user would, with the `unet-ref` commands of docs/results_isbi.md,
for seeds 0, 1, 2, ... and no time limit, so that every seed trains all its steps: the
mean and spread of their scores are the reference run's figures.

    python benchmarks/cpu_recipe.py pilots              # about 45 min on 2 idle cores
    python benchmarks/cpu_recipe.py final cosine        # the hour
    python benchmarks/cpu_recipe.py seeds cosine 3      # the same run, seeds 0-2, no time limit
    python benchmarks/cpu_recipe.py table
    python benchmarks/cpu_recipe.py publish             # results and logs into docs/figures/data/recipe
    python docs/make_figures.py recipe.md recipe_curve.png

Each run saves result.json in OUT/<kind>/<candidate>/ (OUT/seeds/<candidate>-seed<k>/);
finished runs are skipped and an interrupted one resumes from its last backup.
"""
import argparse
import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from ablation import ISBI, METRICS, ROOT, isbi_scores

BASE = dict(data=str(ISBI), val_count=5, base_filters=16, tile_size=380, batch_size=1, optimizer="adam",
            learning_rate=1e-3, lr_schedule="constant", validation_steps=2, verbose=2, seed=0)
CANDIDATES = {
    "base": {},
    "cosine": dict(lr_schedule="cosine"),
    "wide": dict(lr_schedule="cosine", base_filters=32),
    "tile572": dict(lr_schedule="cosine", tile_size=572),
}
# Median time of one training step (batch 1), this 2-core machine idle, TensorFlow 2.21 CPU:
# `unet-ref train --preset paper --base-filters F --tile-size T --batch-size 1 ...`, epoch 2.
MS_PER_STEP = {(16, 380): 170, (32, 380): 664, (16, 572): 675}
PILOT_SECONDS = 600
FINAL_SECONDS = 3200  # of steps; per-epoch validation of the 5 slices (~5 s) and start-up fill the hour
STEPS_PER_EPOCH = {"pilot": 100, "final": 400}


def configure(kind, name):
    """The TrainConfig of a pilot or of the final run of a candidate."""
    from unet_ref.train import resolve_config

    fields = {**BASE, **CANDIDATES[name]}
    seconds = PILOT_SECONDS if kind == "pilot" else FINAL_SECONDS
    steps = seconds * 1000 / MS_PER_STEP[fields["base_filters"], fields["tile_size"]]
    epochs = max(1, round(steps / STEPS_PER_EPOCH[kind]))
    extra = (dict(val_pixel_error=False) if kind == "pilot"
             else dict(val_pixel_error=True, time_limit_minutes=60.0))
    return resolve_config("paper", {**fields, **extra, "epochs": epochs, "steps_per_epoch": STEPS_PER_EPOCH[kind],
                                    "out": str(run_dir(kind, name))})


def run_dir(kind, name, out="runs/recipe"):
    return pathlib.Path(out) / kind / name


def one(kind, name):
    """Train one run (resuming if interrupted), score it, write result.json."""
    from unet_ref.files import write_json
    from unet_ref.train import train

    config = configure(kind, name)
    start = time.monotonic()
    model, _ = train(config)
    with open(run_dir(kind, name) / "log.csv", newline="") as f:  # the time limit may end a run early
        epochs = len({row["epoch"] for row in csv.DictReader(f)})
    result = dict(kind=kind, candidate=name, train_seconds=time.monotonic() - start,
                  steps=epochs * config.steps_per_epoch, planned_steps=config.epochs * config.steps_per_epoch,
                  load_average=os.getloadavg()[0],
                  config={k: getattr(config, k) for k in ("base_filters", "tile_size", "batch_size",
                                                          "learning_rate", "lr_schedule")})
    result["scores"] = isbi_scores(model, config)
    if kind == "final":
        result["scores_tta"] = isbi_scores(model, config, tta=True)
    write_json(run_dir(kind, name) / "result.json", result)
    print(json.dumps(result))


def seed_commands(name, seed):
    """The `unet-ref` commands of the final run of `name` with `seed` and no time limit,
    then its challenge scores without and with TTA on the held-out slices: what
    docs/results_isbi.md tells a user to run. Returns the run folder, its TrainConfig and
    the commands (argument lists)."""
    config = configure("final", name)
    out = run_dir("seeds", f"{name}-seed{seed}")
    unet_ref = [sys.executable, "-m", "unet_ref.cli"]  # the `unet-ref` command
    train = [*unet_ref, "train", "--preset", "paper", "--data", config.data]
    for field in ("val_count", "base_filters", "tile_size", "batch_size", "optimizer", "learning_rate", "lr_schedule",
                  "epochs", "steps_per_epoch", "validation_steps", "verbose"):
        train += ["--" + field.replace("_", "-"), str(getattr(config, field))]
    train += ["--time-limit-minutes", "0", "--seed", str(seed), "--out", str(out)]
    folder = pathlib.Path(config.data) / "train"
    count = len(list((folder / "image").glob("*.png")))  # named 0.png, 1.png, ...: the last val_count are held out
    held_out = [f"{i}.png" for i in range(count - config.val_count, count)]
    evaluate = [*unet_ref, "evaluate", "--model", str(out / "last.keras"), "--challenge",
                "--images", *(str(folder / "image" / f) for f in held_out),
                "--truth", *(str(folder / "label" / f) for f in held_out)]
    return out, config, [train, evaluate + ["--out", str(out / "scores")],
                         evaluate + ["--tta", "--out", str(out / "scores_tta")]]


def finished_epochs(out):
    """The number of epochs in a run folder's log.csv (0 if none)."""
    log = pathlib.Path(out) / "log.csv"
    if not log.is_file():
        return 0
    with open(log, newline="") as f:
        return len({row["epoch"] for row in csv.DictReader(f)})


def seeds(name, count):
    """Run the final recipe of `name` with seeds 0..count-1 through the CLI (skipping what is
    done, resuming an interrupted training), then write each seed's result.json."""
    from unet_ref.files import read_json, write_json

    for seed in range(count):
        out, config, (train, *scoring) = seed_commands(name, seed)
        if (out / "result.json").exists():
            continue
        print(f"--- seeds / {name} / seed {seed}", flush=True)
        if not (finished_epochs(out) == config.epochs and (out / "last.keras").exists()):
            out.parent.mkdir(parents=True, exist_ok=True)
            log = out.parent / f"{out.name}.train.log"  # Keras's line per epoch, with its time
            with open(log, "a") as f:
                if subprocess.run(train, stdout=f, stderr=subprocess.STDOUT).returncode:
                    sys.exit(f"seed {seed}: training failed, see {log}")
        for command in scoring:
            if not (pathlib.Path(command[-1]) / "metrics.json").exists() and subprocess.run(command).returncode:
                sys.exit(f"seed {seed}: scoring failed: {' '.join(command[1:])}")
        result = dict(kind="seeds", candidate=name, seed=seed, steps=finished_epochs(out) * config.steps_per_epoch,
                      planned_steps=config.epochs * config.steps_per_epoch,
                      config={k: getattr(config, k) for k in ("base_filters", "tile_size", "batch_size",
                                                              "learning_rate", "lr_schedule")})
        for key in ("scores", "scores_tta"):  # the folders the scoring commands wrote
            challenge = read_json(out / key / "metrics.json")["challenge"]
            result[key] = {m: challenge[m] for m in METRICS["isbi"]} | {
                f"{m}_threshold": challenge[f"{m}_threshold"] for m in METRICS["isbi"]}
        write_json(out / "result.json", result)
        print(json.dumps(result))


def launch(kind, names):
    for name in names:
        if (run_dir(kind, name) / "result.json").exists():
            continue
        print(f"--- {kind} / {name}", flush=True)
        code = subprocess.call([sys.executable, __file__, "one", kind, name])
        if code:
            sys.exit(f"{kind} {name} failed with exit code {code}")


def table(folder="runs/recipe"):
    """Markdown: one row per finished run, the challenge's scores on slices 20-24."""
    metrics = METRICS["isbi"]
    lines = ["| run | candidate | filters | tile | schedule | steps | train min | " + " | ".join(
        m.replace("_", " ") for m in metrics) + " |", "|---" * (len(metrics) + 7) + "|"]
    for path in sorted(pathlib.Path(folder).glob("*/*/result.json"), key=lambda p: (p.parts[-3] != "pilot", p)):
        r = json.loads(path.read_text())
        c = r["config"]
        for key, label in (("scores", ""), ("scores_tta", " + TTA")):
            if key in r:
                minutes = f"{r['train_seconds'] / 60:.0f}" if "train_seconds" in r else "-"
                kind = r["kind"] if "seed" not in r else f"{r['kind']}: seed {r['seed']}"
                lines.append(f"| {kind}{label} | {r['candidate']} | {c['base_filters']} | {c['tile_size']} | "
                             f"{c['lr_schedule']} | {r['steps']:,} | {minutes} | "
                             + " | ".join(f"{r[key][m]:.4g}" for m in metrics) + " |")
    return "\n".join(lines)


def final_rows(folder="runs/recipe", columns=("warping_error", "rand_error", "pixel_error", "v_rand", "v_info")):
    """Markdown table rows of the challenge's scores (without and with TTA): the mean and
    standard deviation over the seeds of the reference run, or the final runs if none."""
    import numpy as np

    runs = [json.loads(path.read_text()) for path in sorted(pathlib.Path(folder).glob("seeds/*/result.json"))]
    if runs:
        c = runs[0]["config"]
        steps = sorted({r["steps"] for r in runs})
        what = (f"this project, reference CPU run, slices 20-24 ({len(runs)} seeds, mean ± sd; {c['base_filters']} "
                f"filters, depth 4, {c['tile_size']} px tiles, {', '.join(f'{s:,}' for s in steps)} steps)")
        return [f"| {what}, {label} | " + " | ".join(
            f"{np.mean(v):.4g} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.2g}"
            for v in ([r[key][m] for r in runs] for m in columns)) + " |"
            for key, label in (("scores", "no TTA"), ("scores_tta", "TTA"))]
    rows = []
    for path in sorted(pathlib.Path(folder).glob("final/*/result.json")):
        r = json.loads(path.read_text())
        c = r["config"]
        what = (f"this project, reference CPU run, slices 20-24 ({c['base_filters']} filters, depth 4, {c['tile_size']} px "
                f"tiles, {r['steps']:,} steps, {r['train_seconds'] / 60:.0f} min on 2 CPU cores)")
        for key, label in (("scores", "no TTA"), ("scores_tta", "TTA")):
            rows.append(f"| {what}, {label} | " + " | ".join(f"{r[key][m]:.4g}" for m in columns) + " |")
    return rows


def readers_config(run):
    """A run's config.json as the docs publish it: the data folder as chapter 1 names it
    (isbi2012) and the run folder as the commands name it (runs/recipe/...), not the paths
    of the machine it ran on (a run folder may be a link to another disk)."""
    config = json.loads((pathlib.Path(run) / "config.json").read_text())
    if config.get("data"):  # None: the synthetic data, nothing to rename
        config["data"] = pathlib.Path(config["data"]).name
    config["out"] = pathlib.Path(run).as_posix()
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pilots", help="train and score every missing pilot")
    p.add_argument("names", nargs="*", help=f"some of {', '.join(CANDIDATES)} (default: all)")
    p = sub.add_parser("final", help="the hour-long run of one candidate")
    p.add_argument("name", choices=list(CANDIDATES))
    p = sub.add_parser("seeds", help="the final run of one candidate with seeds 0..COUNT-1, no time limit, by the CLI")
    p.add_argument("name", choices=list(CANDIDATES))
    p.add_argument("count", type=int, nargs="?", default=3)
    p = sub.add_parser("one", help="one run (used by pilots and final)")
    p.add_argument("kind", choices=["pilot", "final"])
    p.add_argument("name", choices=list(CANDIDATES))
    sub.add_parser("table", help="print the table of finished runs")
    p = sub.add_parser("publish", help="copy the finished runs' result.json files for the docs")
    p.add_argument("--to", default=str(ROOT / "docs" / "figures" / "data" / "recipe"))
    args = parser.parse_args(argv)
    if args.command == "one":
        one(args.kind, args.name)
    elif args.command in ("pilots", "final"):
        if args.command == "pilots":
            if set(args.names) - set(CANDIDATES):
                parser.error(f"unknown candidate(s) {sorted(set(args.names) - set(CANDIDATES))}")
            launch("pilot", args.names or list(CANDIDATES))
        else:
            launch("final", [args.name])
        print(table())
    elif args.command == "seeds":
        if args.count < 1:
            parser.error(f"count must be at least 1, got {args.count}")
        try:
            seeds(args.name, args.count)
        except (OSError, ValueError) as error:  # no ISBI data, an unwritable folder, a bad setting
            parser.error(str(error))
        print(table())
    elif args.command == "publish":
        from unet_ref.files import write_json

        results = sorted(pathlib.Path("runs/recipe").glob("*/*/result.json"))
        if not results:
            parser.error("no finished run in runs/recipe (run from the folder the runs were made in)")
        try:
            for path in results:
                target = pathlib.Path(args.to) / path.relative_to("runs/recipe")
                write_json(target, json.loads(path.read_text()))
                if (path.parent / "log.csv").is_file():  # the run's per-epoch log
                    shutil.copyfile(path.parent / "log.csv", target.parent / "log.csv")
                if (path.parent / "config.json").is_file():  # its settings, with paths a reader has
                    write_json(target.parent / "config.json", readers_config(path.parent))
        except (OSError, ValueError) as error:  # --to unwritable or a file, a damaged result.json
            parser.error(f"cannot publish {path.parent}: {error}")
        print(f"copied {len(results)} results to {args.to}")
    else:
        print(table())


if __name__ == "__main__":
    main()
