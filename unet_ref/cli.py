"""The `unet-ref` command line: demo, train, predict, evaluate, weightmap, bench.

Every subcommand is a thin layer over the library's public functions (the trainer in
`unet_ref.train`, `predict_tiled`, `unet_ref.evaluate`, `weight_map`), so the command
line, the tutorial and the tests do the same thing. Errors a user can cause (a missing
file, a wrong shape, an empty folder, an invalid tile size) end the program with ONE line
naming the problem and exit code 2; `--debug` shows the traceback instead.

TensorFlow is imported only by the subcommands that need it, so `unet-ref --help` and
`unet-ref weightmap` start quickly.
"""
import argparse
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

from unet_ref.datasets import image_files, read_images
from unet_ref.devices import import_tensorflow_quietly
from unet_ref.pipeline import PipelineError

__all__ = ["main", "build_parser", "UserError"]


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def _model_and_settings(model_path, tile_size=None, normalize=None):
    """A `.keras` file or a training run folder -> (keras model, tile size for prediction:
    `tile_size`, else the run's predict_tile_size, else None = chosen by predict_tiled;
    intensity rule: `normalize`, else the run's, so that images are read as in training;
    the model's files, which no output may replace)."""
    from unet_ref.images import check_normalize
    from unet_ref.runs import load_run

    try:
        model, config = load_run(model_path)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(str(error)) from error
    path = pathlib.Path(model_path)
    files = [path / "model.keras", path / "config.json"] if path.is_dir() else [path, path.parent / "config.json"]
    rule = check_normalize(normalize or (config.normalize if config else "dtype"), "--normalize")
    return model, tile_size or ((config.predict_tile_size or None) if config else None), rule, files


def _normalized(images, rule, what="input"):
    """(name, image) pairs with each image normalised by the intensity rule `rule`."""
    from unet_ref.images import normalize_image

    return [(name, normalize_image(image, f"{what} {name}", normalize=rule)) for name, image in images]


def _is_zarr(path):
    """A zarr array or OME-Zarr image (by its suffix or metadata file): read and written
    block by block (`unet_ref.blockwise`)."""
    path = str(path).rstrip("/")
    return path.endswith(".zarr") or any(os.path.isfile(os.path.join(path, name))
                                         for name in ("zarr.json", ".zarray", ".zgroup"))


def _blockwise(args, inputs):
    """Check the blockwise options, then -> (unet_ref.blockwise, a dask client context that
    the blockwise function starts once it has checked its arguments)."""
    from unet_ref.checks import check_int

    if len(inputs) != 1:
        raise UserError(f"give one zarr input at a time, got {len(inputs)} inputs")
    if args.workers is not None:
        check_int(args.workers, "--workers", minimum=1)
    for size in args.block_size or ():
        check_int(size, "--block-size", minimum=1)
    try:
        from unet_ref import blockwise
    except ImportError as error:  # the zarr extra is missing: its one line says what to install
        raise UserError(str(error)) from error
    return blockwise, blockwise.dask_client(args.workers, args.scheduler, memory_limit=args.memory_limit,
                                            dashboard=args.dashboard)


def _block_size(args):
    return None if not args.block_size else args.block_size[0] if len(args.block_size) == 1 else tuple(args.block_size)


def _output_folder(out):
    """--out as a Path: a folder (made when needed), never an existing file or empty text."""
    from unet_ref.files import output_folder

    return output_folder(out)


# --- subcommands -------------------------------------------------------------------------


def cmd_weightmap(args):
    """Weight maps w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2)) for label files."""
    from tqdm import tqdm

    from unet_ref.datasets import check_not_class_map
    from unet_ref.files import refuse_overwriting, write_array
    from unet_ref.plots import save_colormapped
    from unet_ref.weights import weight_map

    if any(map(_is_zarr, args.labels)):
        blockwise, cluster = _blockwise(args, args.labels)
        blockwise.weight_map_blockwise(args.labels[0], args.out, w0=args.w0, sigma=args.sigma, instances=args.instances,
                                       threshold=args.threshold, spacing=args.spacing, block_size=_block_size(args),
                                       client=cluster, progress=not args.quiet)
        print(f"wrote the weight map of {args.labels[0]} to {args.out}")
        return
    out = _output_folder(args.out)
    ndim = len(args.spacing) if args.spacing else 2
    if ndim not in (2, 3):
        raise UserError(f"--spacing takes 2 values (Y X) or 3 (Z Y X), got {len(args.spacing)}")
    files = image_files(args.labels, "label")
    images = read_images(files, "label", volumes=ndim == 3, labels=True)
    suffix = "npy" if args.format == "npy" else "tif"
    refuse_overwriting([out / f"{name}{end}" for name, _ in images for end in (f".{suffix}", "_weights.png")], files)
    for name, labels in tqdm(images, desc="weight maps", unit="image", disable=args.quiet):
        if labels.ndim != ndim:
            kind = "a 3-D (Z, Y, X) stack, as --spacing gives 3 values" if ndim == 3 else "a 2-D mask or instance labels"
            raise UserError(f"label {name} has shape {labels.shape}; expected {kind}")
        options = dict(w0=args.w0, sigma=args.sigma, spacing=args.spacing)
        try:
            if args.instances:
                weights = weight_map(labels=check_not_class_map(labels, "labels"), **options)
            else:  # the one mask rule of unet_ref.masks, as the API reads it
                weights = weight_map(labels, threshold=args.threshold, **options)
        except (ValueError, TypeError) as error:
            raise UserError(f"label {name}: {error}") from error
        write_array(out / f"{name}.{suffix}", weights)
        if args.png:  # a volume: its middle slice
            save_colormapped(out / f"{name}_weights.png", weights[len(weights) // 2] if ndim == 3 else weights)
    print(f"wrote {len(images)} weight map(s) to {out}")


def cmd_train(args):
    import dataclasses

    from unet_ref import train

    from unet_ref.files import refuse_overwriting
    from unet_ref.runs import RUN_FILES

    names = {field.name for field in dataclasses.fields(train.TrainConfig)}
    overrides = {key: value for key, value in vars(args).items() if key in names and value is not None}
    config = train.resolve_config(args.preset, overrides)  # bad values fail here, before TensorFlow loads
    if config.verbose == 1 and not sys.stdout.isatty():  # a log file: a line per epoch, not a bar per step
        config = dataclasses.replace(config, verbose=2)
    if config.data:  # no run file may replace a data file
        data = pathlib.Path(config.data)
        inputs = [p for p in data.rglob("*") if p.is_file()] if data.is_dir() else [data]
        out = _output_folder(config.out)
        refuse_overwriting([out / name for name in ("config.json", "state.json", *RUN_FILES)], inputs)
    if not args.debug:
        import_tensorflow_quietly()
    train.train(config)


def cmd_predict(args):
    from unet_ref.checks import check_threshold
    from unet_ref.files import refuse_overwriting, write_array
    from unet_ref.tiling import predict_cells

    if any(map(_is_zarr, args.inputs)):
        blockwise, cluster = _blockwise(args, args.inputs)
        if args.tta:
            raise UserError("--tta is not available for zarr inputs, which are predicted block by block")
        blockwise.predict_blockwise(args.model, args.inputs[0], args.out, block_size=_block_size(args),
                                    tile_size=args.tile_size, batch_size=args.batch_size or 1, normalize=args.normalize,
                                    client=cluster)
        print(f"{args.inputs[0]} -> {args.out} (P(cell), OME-Zarr)")
        return
    out = _output_folder(args.out)
    threshold = check_threshold(args.threshold, "--threshold")
    model, tile_size, rule, model_files = _model_and_settings(args.model, args.tile_size, args.normalize)
    volumes = len(model.input_shape) == 5  # a 3-D U-Net: each TIFF stack is one volume
    files = image_files(args.inputs, "input")
    images = read_images(files, "input", volumes=volumes)
    suffix = "tif" if volumes else "png"
    outputs = {name: (out / f"{name}_prob.tif", out / f"{name}_mask.{suffix}") for name, _ in images}
    refuse_overwriting([path for pair in outputs.values() for path in pair], files + model_files)
    for name, cell in predict_cells(model, _normalized(images, rule), tile_size=tile_size, batch_size=args.batch_size,
                                    tta=args.tta):
        probability, mask = outputs[name]
        write_array(probability, cell)
        write_array(mask, (cell >= threshold).astype("uint8") * 255 if volumes else cell >= threshold)
        print(f"{name}: {cell.shape} -> {probability}, {mask}")


def cmd_evaluate(args):
    import numpy as np

    from unet_ref import evaluate
    from unet_ref.files import write_csv, write_json

    out = _output_folder(args.out) if args.out else None
    model = None
    if args.model:
        if not args.images:
            raise UserError("--model needs --images (the raw images to predict)")
        model, tile_size, rule, model_files = _model_and_settings(args.model, args.tile_size, args.normalize)
    volumes = args.volumes or (model is not None and len(model.input_shape) == 5)
    truths = read_images(image_files(args.truth, "ground truth"), "ground truth", volumes=volumes)
    # the challenge's scores are 2-D: images, or the z-slices of the volumes, as one stack
    sizes = sorted({t.shape[-2:] for _, t in truths})
    if args.challenge and len(sizes) > 1:
        raise UserError(f"--challenge scores one stack of equally sized {'slices' if volumes else 'images'}, "
                        f"got (H, W) sizes {sizes}")
    if model is not None:
        from unet_ref.tiling import predict_cells

        images = _normalized(read_images(image_files(args.images, "image"), "image", volumes=volumes), rule, "image")
        predictions = list(predict_cells(model, images, tile_size=tile_size, tta=args.tta))
    elif args.pred:
        predictions = [(name, evaluate.as_cell_probability(p, name, ndim=3 if volumes else 2))
                       for name, p in read_images(image_files(args.pred, "prediction"), "prediction", volumes=volumes)]
    else:
        raise UserError("give the predictions (--pred, e.g. the *_prob.tif of `unet-ref predict`) or --model and --images")
    pairs = evaluate.pair_by_name(predictions, truths)
    results = evaluate.evaluate_images([p for _, p, _ in pairs], [t for _, _, t in pairs], names=[n for n, _, _ in pairs],
                                       threshold=args.threshold)
    print(evaluate.format_table(results))
    if args.challenge:
        from unet_ref.challenge import challenge_scores, format_scores

        prob = np.concatenate([p.reshape((-1,) + p.shape[-2:]) for _, p, _ in pairs])  # (slices, H, W)
        truth = np.concatenate([t.reshape((-1,) + t.shape[-2:]) for _, _, t in pairs])
        scores = challenge_scores(prob, truth)
        print("\nISBI 2012 challenge scores (thresholds swept; unet_ref.challenge):")
        name = f"{len(pairs)} volume(s), {len(prob)} slices" if volumes else f"{len(pairs)} image(s)"
        print(format_scores(scores, name))
        results["challenge"] = scores
    if out:
        from unet_ref.files import refuse_overwriting

        inputs = [f for given in (args.truth, args.pred, args.images) if given for f in image_files(given)]
        refuse_overwriting([out / "metrics.json", out / "metrics.csv"], inputs + (model_files if model else []))
        write_json(out / "metrics.json", results)
        write_csv(out / "metrics.csv", evaluate.table_rows(results))
        print(f"wrote {out / 'metrics.json'} and {out / 'metrics.csv'}")


def cmd_demo(args):
    from unet_ref import demo

    shorter = {k: v for k, v in (("epochs", args.epochs), ("steps_per_epoch", args.steps_per_epoch)) if v is not None}
    demo.run_demo(args.out, seed=args.seed, minutes=args.minutes, quiet=args.quiet, **shorter)


def cmd_bench(args):
    root = pathlib.Path.cwd()
    if not (root / "benchmarks").is_dir():
        raise UserError(f"no benchmarks/ folder in {root}; run `unet-ref bench` from the project root")
    command = [sys.executable, "-m", "pytest", "benchmarks/", "--benchmark-enable", "-p", "no:cacheprovider", *args.pytest_args]
    print(" ".join(command), flush=True)
    return subprocess.call(command, cwd=root)


# --- the parser ----------------------------------------------------------------------------


def _add_blockwise_arguments(parser):
    group = parser.add_argument_group("zarr inputs (larger than memory, block by block on Dask; the zarr extra)")
    group.add_argument("--workers", type=int, default=None, help="worker processes of a local Dask cluster (default: "
                                                                 "one per core)")
    group.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask scheduler at ADDRESS instead (e.g. "
                                                              "tcp://10.0.0.5:8786); its workers must see the paths")
    group.add_argument("--block-size", type=int, nargs="+", metavar="N",
                       help="output px per block: one N or one per axis (default: 2048 in 2-D, 256 in 3-D)")
    group.add_argument("--memory-limit", default="auto", help="memory per local worker, e.g. 4GB (default: an equal "
                                                              "share)")
    group.add_argument("--dashboard", action="store_true", help="serve Dask's dashboard at 127.0.0.1:8787")


def _examples(text):
    return "examples:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ")


def _add_train_arguments(parser):
    """One flag per TrainConfig field (so every hyper-parameter can be overridden): its help,
    choices and parser read from the field's `setting` (unet_ref.config)."""
    import dataclasses

    from unet_ref.config import PRESETS, TrainConfig  # imports no TensorFlow

    parser.add_argument("--preset", choices=sorted(PRESETS), default="tutorial",
                        help="starting configuration; any flag below overrides one of its values (default: tutorial)")
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        values = ", ".join(f"{name}: {'default' if getattr(preset, field.name) is None else repr(getattr(preset, field.name))}"
                           for name, preset in PRESETS.items())
        parse = meta["parse"] if meta["parse"] in (int, float, str) else _argument_type(meta["parse"])
        parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=parse, choices=meta["choices"],
                            metavar=meta["metavar"] or (None if meta["choices"] else field.name.upper()), help=f"{meta['help']} [{values}]")


def _argument_type(parse):
    """`parse` with its ValueError shown by argparse as the message itself."""
    def read(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    read.__name__ = parse.__name__
    return read


def build_parser():
    from unet_ref.images import NORMALIZE_HELP, parse_normalize

    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="unet-ref",
        description="A paper-faithful Keras 3 U-Net (Ronneberger et al., 2015): train, predict, evaluate.",
        epilog=_examples("""
            unet-ref demo --out demo_out            # synthetic data, trains on the CPU in minutes
            unet-ref train --data ../shared/data/isbi2012 --out runs/isbi
            unet-ref predict runs/isbi image.png --out pred/
            unet-ref evaluate --pred pred/ --truth labels/ --out pred/
            unet-ref <command> --help               # the options of one command
        """),
        formatter_class=formatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", formatter_class=formatter, help="train on synthetic data and write a results folder",
                       description="Synthesise EM-like data, train the tutorial configuration on the CPU, predict held-out "
                                   "images with overlap-tile, evaluate, and write a figure panel, the loss curve, "
                                   "metrics.json and the model into one folder. No download needed.",
                       epilog=_examples("""
                           unet-ref demo --out demo_out
                           unet-ref demo --out demo_out --minutes 3 --seed 1
                       """))
    p.add_argument("--out", default="unet_ref_demo", help="output folder (default: unet_ref_demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of training (default: 0)")
    p.add_argument("--minutes", type=float, default=None,
                   help="training time budget in minutes, 0 = no limit (default: the tutorial preset's)")
    p.add_argument("--epochs", type=int, default=None, help="override the tutorial preset's epochs (a shorter demo)")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="override the tutorial preset's steps per epoch")
    p.add_argument("--quiet", action="store_true", help="no progress output during training")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", formatter_class=formatter, help="train a U-Net (presets: tutorial, paper)",
                       description="Train a U-Net with Keras fit on a tf.data pipeline of elastically deformed tiles "
                                   "with exact weight maps. Without --data, trains on synthetic data. Writes into --out: "
                                   "config.json (the resolved configuration), model.keras (best), last.keras, "
                                   "log.csv, loss_curve.png, tensorboard/, backup/ (for resuming: run the same command "
                                   "again after an interruption).",
                       epilog=_examples("""
                           unet-ref train --out runs/tiny --epochs 2 --steps-per-epoch 10
                           unet-ref train --preset paper --data ../shared/data/isbi2012 --out runs/paper
                           unet-ref train --data ../shared/data/isbi2012 --val-count 5 --base-filters 16 --out runs/isbi
                       """))
    _add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", formatter_class=formatter, help="probability maps and masks for images (overlap-tile)",
                       description="Predict images of any size with the overlap-tile strategy. For each input writes "
                                   "NAME_prob.tif (float32 cell probability) and NAME_mask.png (cell = 255). INPUT may "
                                   "be image files, folders of images, or multi-page TIFF stacks.",
                       epilog=_examples("""
                           unet-ref predict runs/isbi image.png --out pred/
                           unet-ref predict runs/isbi/model.keras slices/ stack.tif --out pred/ --tta
                           unet-ref predict runs/3d volume.ome.zarr --out pred.ome.zarr --workers 2
                       """))
    p.add_argument("model", metavar="MODEL", help="a training run folder (with config.json) or a .keras file")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders or TIFF stacks; or one zarr array "
                                                              "or OME-Zarr image (then --out is the OME-Zarr P(cell))")
    p.add_argument("--out", required=True, help="output folder (for a zarr INPUT: the OME-Zarr image to write)")
    p.add_argument("--tile-size", type=int, default=None, help="network input tile size (default: from the run's config)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per forward pass (default: as many as fit in 1 GiB)")
    p.add_argument("--tta", action="store_true", help="average over the 8 flips/rotations")
    p.add_argument("--threshold", type=float, default=0.5, help="cell probability threshold for the masks (default: 0.5)")
    p.add_argument("--normalize", type=_argument_type(parse_normalize), metavar="RULE", default=None,
                   help="intensity rule of the images, %s (unet_ref.images; default: the run's, from its "
                        "config.json, else dtype)" % NORMALIZE_HELP)
    _add_blockwise_arguments(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", formatter_class=formatter, help="pixel error, adapted Rand error, VI",
                       description="Compare predictions with binary ground truth (0 = membrane, one value > 0 = cell): "
                                   "the quick view at one threshold (pixel error, adapted Rand error, variation of "
                                   "information, cell IoU; unet_ref.evaluate), per image and mean, and with --challenge "
                                   "the ISBI 2012 challenge's own scores (unet_ref.challenge). Either give saved "
                                   "predictions (--pred) or a model and the raw images (--model, --images). Files are "
                                   "paired by name: the prediction of x.png is x, x_prob or x_mask.",
                       epilog=_examples("""
                           unet-ref evaluate --pred pred/ --truth labels/ --out pred/
                           unet-ref evaluate --model runs/isbi --images val/image --truth val/label --challenge
                       """))
    p.add_argument("--truth", nargs="+", required=True, help="ground-truth masks (files or folders)")
    p.add_argument("--pred", nargs="+", help="predicted probability maps or masks (files or folders)")
    p.add_argument("--volumes", action="store_true", help="read each TIFF stack as one (D, H, W) volume, scored in 3-D "
                                                          "(automatic with the --model of a 3-D U-Net)")
    p.add_argument("--model", help="a training run folder or .keras file (predicts --images first)")
    p.add_argument("--images", nargs="+", help="raw images for --model")
    p.add_argument("--tile-size", type=int, default=None, help="tile size for --model (default: from the run's config)")
    p.add_argument("--tta", action="store_true", help="with --model: average over the 8 flips/rotations")
    p.add_argument("--threshold", type=float, default=0.5, help="cell probability threshold (default: 0.5)")
    p.add_argument("--challenge", action="store_true",
                   help="also the ISBI 2012 challenge's scores (pixel, Rand and warping errors, V_Rand, V_Info; thresholds "
                        "swept), beside the U-Net paper's Table 1; they are 2-D: with --volumes, of the stack of "
                        "every volume's z-slices")
    p.add_argument("--out", help="folder for metrics.json and metrics.csv")
    p.add_argument("--normalize", type=_argument_type(parse_normalize), metavar="RULE", default=None,
                   help="intensity rule of --images, %s (unet_ref.images; default: the run's, from its "
                        "config.json, else dtype)" % NORMALIZE_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("weightmap", formatter_class=formatter, help="weight maps of label images",
                       description="Compute the paper's weight map w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2)) "
                                   "for binary masks (0 = membrane, one value > 0 = cell; cells = 8-connected components) or, with --instances, "
                                   "for instance-label images. Writes NAME.npy or NAME.tif (float32).",
                       epilog=_examples("""
                           unet-ref weightmap ../shared/data/isbi2012/train/label --out weights/ --png
                           unet-ref weightmap cells.tif --instances --format tiff --w0 10 --sigma 5 --out weights/
                           unet-ref weightmap nuclei_stack.tif --instances --spacing 3 1 1 --format tiff --out w3d/
                           unet-ref weightmap labels.ome.zarr --instances --out w.ome.zarr --workers 2
                       """))
    p.add_argument("labels", metavar="LABELS", nargs="+", help="label files or folders; or one zarr array or OME-Zarr "
                                                               "image (its scale is the default --spacing)")
    p.add_argument("--out", required=True, help="output folder (for a zarr LABELS: the OME-Zarr image to write)")
    p.add_argument("--w0", type=float, default=10.0, help="border weight w0 (default: 10)")
    p.add_argument("--sigma", type=float, default=5.0, help="border width sigma in px (default: 5)")
    p.add_argument("--instances", action="store_true", help="labels are instance ids (0 = background), not a mask")
    p.add_argument("--threshold", type=float, default=None,
                   help="read masks that are not binary as cell = value >= THRESHOLD (e.g. 128 for JPEG-saved masks); "
                        "default: masks must hold 0 and one value > 0")
    p.add_argument("--spacing", type=float, nargs="+", metavar="S",
                   help="pixel size per axis, in the units of --sigma: Y X, or Z Y X for 3-D stacks (each TIFF or .npy "
                        "stack is then one volume, e.g. --spacing 5 1 1 for 5 um slices of 1 um pixels); default 1")
    p.add_argument("--format", choices=("npy", "tiff"), default="npy", help="output format (default: npy)")
    p.add_argument("--png", action="store_true", help="also write a colour-mapped PNG per weight map")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_blockwise_arguments(p)
    p.set_defaults(func=cmd_weightmap)

    p = sub.add_parser("bench", formatter_class=formatter, help="run the benchmarks and print their ratio tables",
                       description="Run `python -m pytest benchmarks/ --benchmark-enable` FROM THE PROJECT ROOT (the "
                                   "folder holding benchmarks/) and print the ratio tables (median and ratio to the "
                                   "baseline per group). Extra arguments go to pytest. Takes minutes; machine noise "
                                   "matters, so compare ratios, not absolute times.",
                       epilog=_examples("""
                           unet-ref bench                  # in the project root (the folder holding benchmarks/)
                           unet-ref bench -- -k weights
                       """))
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments (after --)")
    p.set_defaults(func=cmd_bench)
    return parser


def _terminate(signum, frame):
    # SIGTERM (kill, a job scheduler) unwinds like Ctrl-C: files being written are removed
    raise SystemExit(128 + signum)


def _exit_now(code):
    """Exit at once, skipping the interpreter's shutdown: after a failed fit, tf.data
    iterators that are still alive can hang it (a TensorFlow limitation)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "pytest_args", None) and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave the signal alone
        pass
    try:
        if args.command in ("demo", "predict") or (args.command == "evaluate" and args.model):
            if not args.debug:
                import_tensorflow_quietly()
        return args.func(args) or 0
    except (KeyboardInterrupt, SystemExit) as stop:
        code, message = (130, "interrupted") if isinstance(stop, KeyboardInterrupt) else (stop.code, "terminated")
    except (UserError, ValueError, TypeError, OSError, PipelineError, FloatingPointError) as error:
        if args.debug:
            raise
        code, message = 2, "error: " + (str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
    print(f"unet-ref {args.command}: {message}", file=sys.stderr)
    if "tensorflow" in sys.modules and args.command in ("demo", "train"):
        _exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
