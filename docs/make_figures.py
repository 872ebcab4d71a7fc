"""Regenerate every figure of the tutorial from the project's own code.

    python docs/make_figures.py                 # all figures and generated tables
    python docs/make_figures.py weight_map.png  # only the named ones
    python docs/make_figures.py --list          # what there is

Writes PNGs to docs/figures/, atomically, and Markdown tables into the pages themselves,
between the lines `<!-- begin NAME -->` and `<!-- end NAME -->` (so that the pages read the
same raw on the code host as on the built site). Every figure calls the same public functions as the tutorial, the
command line and the tests; nothing is drawn by hand. Figures that show ISBI 2012 data read
it from $UNET_REF_ISBI or ../shared/data/isbi2012 beside the project. The benchmark plots
are drawn from the pytest-benchmark JSON committed in docs/figures/data/ (re-measure with
`--run-benchmarks`; the machine is stated on the plot).
"""
import argparse
import os
import pathlib
import re
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
FIGURES = HERE / "figures"
BENCH_DATA = FIGURES / "data"
ISBI = pathlib.Path(os.environ.get("UNET_REF_ISBI", ROOT.parent / "shared" / "data" / "isbi2012"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
sys.path.insert(0, str(ROOT))  # the checkout's unet_ref, also when not installed

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from unet_ref.files import atomic_write  # noqa: E402
from unet_ref.plots import save_figure, show  # noqa: E402

# name of the output file -> function that makes it (filled by @output below)
OUTPUTS = {}


def output(name):
    """Register a function that returns a matplotlib Figure (.png), Markdown text (.md), or
    the Path of the file it wrote itself (the plotting functions of unet_ref.plots)."""
    def register(function):
        OUTPUTS[name] = function
        return function
    return register


def save(name, result):
    if isinstance(result, pathlib.Path):  # the function wrote the file itself (unet_ref.plots)
        return result
    if name.endswith(".png"):
        return save_figure(result, FIGURES / name, tight=False)
    if name.endswith(".ipynb"):
        with atomic_write(HERE / name, "w") as f:
            f.write(result)
        return HERE / name
    pages = [page for page in sorted(HERE.glob("*.md")) if pasted(page.read_text(encoding="utf-8"), name) is not None]
    if not pages:
        raise ValueError(f"no page of docs/ has the lines <!-- begin {name} --> and <!-- end {name} -->")
    for page in pages:
        text = page.read_text(encoding="utf-8")
        before, _, rest = text.partition(f"<!-- begin {name} -->\n")
        _, _, after = rest.partition(f"<!-- end {name} -->")
        with atomic_write(page, "w") as f:
            f.write(f"{before}<!-- begin {name} -->\n{result}<!-- end {name} -->{after}")
    return pages[0] if len(pages) == 1 else HERE


def pasted(text, name):
    """The generated table `name` as pasted into a page's text, or None if it is not there."""
    found = re.search(rf"<!-- begin {re.escape(name)} -->\n(.*?)<!-- end {re.escape(name)} -->", text, re.S)
    return found.group(1) if found else None


class IsbiMissing(FileNotFoundError):
    """The ISBI 2012 data is absent: the figures that show it are skipped, not the others."""


def isbi_pair(index=0):
    """(image uint8, label uint8 {0, 255}) of one ISBI 2012 training slice."""
    from skimage.io import imread

    image_path = ISBI / "train" / "image" / f"{index}.png"
    label_path = ISBI / "train" / "label" / f"{index}.png"
    if not label_path.is_file():
        raise IsbiMissing(f"ISBI 2012 data not found at {ISBI} (set UNET_REF_ISBI)")
    return imread(image_path), imread(label_path)


# --- chapters 1 and 2: data and augmentation (drawn by unet_ref.plots) -----------------------


@output("data.png")
def data_figure():
    """A synthetic sample beside ISBI 2012 slice 0 (unet_ref.plots.plot_synthetic_vs_isbi)."""
    from unet_ref.plots import plot_synthetic_vs_isbi

    isbi_image, isbi_label = isbi_pair(0)
    return plot_synthetic_vs_isbi(FIGURES / "data.png", isbi_image, isbi_label, seed=0)


@output("augment.png")
def augment_figure():
    """Image, elastic deformation, warped labels, weight map (unet_ref.plots.plot_augmentation)."""
    from unet_ref.plots import plot_augmentation
    from unet_ref.synthetic import synthetic_sample

    image, _, labels = synthetic_sample(256, seed=0)
    return plot_augmentation(image, labels, seed=3, path=FIGURES / "augment.png")


@output("deformation.png")
def deformation_figure():
    """One elastic deformation (paper: 3 x 3 grid, sigma 10 px) shown on a grid, and the
    size of its per-pixel displacement field."""
    from unet_ref.augment import displacement_field, random_transform, warp

    shape = (256, 256)
    transform = random_transform(shape, np.random.default_rng(3), sigma=10.0, flips=False, max_shift=0.0)
    grid = np.ones(shape, np.float32)
    grid[::16] = grid[:, ::16] = 0  # lines every 16 px make the deformation visible
    dy, dx = displacement_field(transform)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 4))
    show(axes[0], warp(grid, transform, order=1), "a 16 px grid, deformed")
    show(axes[1], np.hypot(dy, dx), "displacement (px)", cmap="magma", colorbar=True)
    knots = np.linspace(0, shape[0] - 1, transform.displacement.shape[1])
    for y in knots:
        for x in knots:
            axes[1].plot(x, y, "o", color="deepskyblue", markersize=5)
    axes[1].set_title("displacement (px); dots: the 3 x 3 knots", fontsize=10)
    fig.tight_layout()
    return fig


# --- chapter 3: the architecture ------------------------------------------------------------


def layer_shapes(model, input_size):
    """[(layer, output shape (H, W, C))] of every layer after the input, traced symbolically."""
    import keras

    probe = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
    specs = probe.compute_output_spec(keras.KerasTensor((1, input_size, input_size, model.input_shape[-1])))
    return [(layer, tuple(spec.shape[1:])) for layer, spec in zip(model.layers[1:], specs)]


def _operation(layer):
    """A short description of what a layer does, read from its configuration."""
    kind = type(layer).__name__
    activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
    relu = ", ReLU" if activation == "relu" else ""
    if kind == "Conv2D":
        k = layer.kernel_size
        return f"{k[0]}x{k[1]} conv{relu}" + ("" if relu else " (logits, no activation)")
    if kind == "Conv2DTranspose":
        return f"{layer.kernel_size[0]}x{layer.kernel_size[1]} up-conv, stride {layer.strides[0]}{relu}"
    if kind == "MaxPooling2D":
        return f"{layer.pool_size[0]}x{layer.pool_size[1]} max-pool"
    if kind == "Cropping2D":
        return f"crop {layer.cropping[0][0]} px per side (the copied features)"
    if kind == "Concatenate":
        return "concatenate copy and up-conv"
    return kind


@output("unet_shapes.md")
def shapes_table():
    """Markdown table of the paper network's layers and output shapes for a 572 px tile."""
    import keras

    from unet_ref.model import build_unet
    from unet_ref.sizes import output_size

    model = build_unet()  # the paper's configuration
    rows = [(layer, shape) for layer, shape in layer_shapes(model, 572) if not isinstance(layer, keras.layers.Dropout)]
    assert rows[-1][1][0] == output_size(572)  # the model and unet_ref.sizes agree
    lines = [
        "<!-- generated by docs/make_figures.py from unet_ref.model.build_unet(); do not edit -->",
        "",
        "| layer | operation | output (H x W x C) |",
        "|---|---|---|",
        "| `image` | input tile | 572 x 572 x 1 |",
    ]
    lines += [f"| `{layer.name}` | {_operation(layer)} | {' x '.join(map(str, shape))} |" for layer, shape in rows]
    lines += ["", f"{model.count_params():,} parameters; 572 &rarr; {output_size(572)}.", ""]
    return "\n".join(lines)


@output("architecture.png")
def architecture_figure():
    """The paper's Fig. 1 redrawn from the built model: one box per feature map (height ~
    its size, width ~ log2 of its channels), placed by level, for a 572 px input tile."""
    import keras
    from matplotlib.patches import FancyArrowPatch, Rectangle

    from unet_ref.model import build_unet

    model = build_unet()
    shapes = [("image", None, (572, 572, 1))] + [
        (layer.name, layer, shape) for layer, shape in layer_shapes(model, 572)
        if not isinstance(layer, (keras.layers.Dropout, keras.layers.Cropping2D, keras.layers.Concatenate))
    ]
    depth = 4

    def level(name):  # layer names of build_unet: down{l}_*, bottom_*, up{l}_*
        if name.startswith("bottom"):
            return depth
        return int(name[len("down")]) if name.startswith("down") else int(name[len("up")]) if name.startswith("up") else 0

    fig, ax = plt.subplots(figsize=(14, 6.5))
    x, gap, scale = 0.0, 0.35, 1.6 / 572  # a 572 px map is 1.6 units tall
    boxes = {}
    for name, layer, (h, w, c) in shapes:
        # a pooled map is the first map of the next level, as in the paper's figure
        lv = level(name) + isinstance(layer, keras.layers.MaxPooling2D)
        width = 0.08 * np.log2(c) + 0.05
        top = -2.0 * lv
        boxes[name] = (x, top, width, h * scale)
        ax.add_patch(Rectangle((x, top - h * scale), width, h * scale, fc="#9ecae1" if "up" not in name else "#c7e9c0",
                               ec="black", lw=0.6))
        ax.text(x + width / 2, top + 0.05, str(c), ha="center", va="bottom", fontsize=7)
        ax.text(x + width / 2, top - h * scale - 0.05, f"{h}²", ha="center", va="top", fontsize=6.5)
        x += width + gap
    arrow = dict(arrowstyle="-|>", mutation_scale=10, lw=1.2)
    for (a, _, _), (b, layer, _) in zip(shapes, shapes[1:]):
        ax_, at, aw, ah = boxes[a]
        bx, bt, bw, bh = boxes[b]
        kind = type(layer).__name__
        color = {"Conv2D": "tab:blue", "MaxPooling2D": "tab:red", "Conv2DTranspose": "tab:green"}[kind]
        if kind == "Conv2D" and b == "logits":
            color = "tab:purple"
        ax.add_patch(FancyArrowPatch((ax_ + aw, at - ah / 2), (bx, bt - bh / 2), color=color, **arrow))
    for lv in range(depth):  # copy and crop
        ax_, at, aw, ah = boxes[f"down{lv}_conv2"]
        bx, bt, bw, bh = boxes[f"up{lv}_upconv"]
        ax.add_patch(FancyArrowPatch((ax_ + aw, at - ah / 2), (bx, bt - bh / 2), color="gray", ls="--", **arrow))
    for label, color in (("3x3 conv, ReLU (valid)", "tab:blue"), ("copy and crop", "gray"), ("2x2 max-pool", "tab:red"),
                         ("2x2 up-conv, ReLU", "tab:green"), ("1x1 conv (logits)", "tab:purple")):
        ax.plot([], [], color=color, ls="--" if color == "gray" else "-", label=label)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(-0.3, x + 0.1)
    ax.set_ylim(-2.0 * depth - 0.6, 0.4)
    ax.set_axis_off()
    ax.set_title(f"build_unet(): {model.count_params():,} parameters; numbers above the boxes are channels, "
                 f"below them the spatial size (green: expanding path)", fontsize=10)
    fig.tight_layout()
    return fig


# --- chapter 4: the weight map ------------------------------------------------------------


@output("weight_map.png")
def weight_map_figure():
    """Mask, w_c, d1, d2 and w of a crop of ISBI 2012 training label 0."""
    from skimage.measure import label

    from unet_ref.weights import d1_d2, weight_map

    _, mask = isbi_pair(0)
    mask = mask[:192, :192]  # a crop, so that single membranes stay visible
    w = weight_map(mask)  # the paper's w0 = 10, sigma = 5
    w_c = weight_map(mask, w0=0)
    d1, d2 = d1_d2(label(mask >= 128, connectivity=2))
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))
    show(axes[0], mask, "mask (ISBI 2012, label 0)", colorbar=True)
    show(axes[1], w_c, "class weights $w_c$", cmap="viridis", colorbar=True)
    show(axes[2], d1, "$d_1$: nearest cell (px)", cmap="magma", colorbar=True)
    show(axes[3], d2, "$d_2$: second-nearest cell (px)", cmap="magma", colorbar=True)
    show(axes[4], w, "$w = w_c + w_0 e^{-(d_1+d_2)^2 / 2\\sigma^2}$", cmap="viridis", colorbar=True)
    fig.tight_layout()
    return fig


def voronoi_stack(shape=(24, 128, 128), spacing=(3, 1, 1), n_cells=40, seed=1):
    """A uint8 {0, 255} stack of Voronoi cells (nearest seed under `spacing`) whose membrane
    is every voxel next to another cell: the cells stay apart when 26-connected. The same
    recipe as the 3-D section of docs/weight_map.md."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.int32)
    seeds.flat[rng.choice(seeds.size, n_cells, replace=False)] = np.arange(1, n_cells + 1)
    nearest = ndimage.distance_transform_edt(seeds == 0, sampling=spacing, return_distances=False,
                                             return_indices=True)
    cell_ids = seeds[tuple(nearest)]
    membrane = ndimage.maximum_filter(cell_ids, size=3) != ndimage.minimum_filter(cell_ids, size=3)
    return np.where(membrane, 0, 255).astype(np.uint8)


@output("weightmap_3d.png")
def weight_map_3d_figure():
    """Slice and cross-section of d1, d2 and w of an anisotropic stack, spacing (3, 1, 1)."""
    from unet_ref.masks import label_cells
    from unet_ref.weights import d1_d2, weight_map

    spacing = (3, 1, 1)
    volume = voronoi_stack(spacing=spacing)
    w = weight_map(volume, spacing=spacing)
    d1, d2 = d1_d2(label_cells(volume > 0), spacing=spacing)
    z, y = volume.shape[0] // 2, volume.shape[1] // 2
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.2), gridspec_kw={"height_ratios": [128, 72 + 20]})
    for row, (cut, where, aspect) in enumerate([(np.s_[z], f"slice z = {z}", 1),
                                                (np.s_[:, y], f"section y = {y} (z stretched 3 x)", 3)]):
        show(axes[row, 0], volume[cut], f"mask, {where}", aspect=aspect)
        show(axes[row, 1], d1[cut], "$d_1$ (px)", cmap="magma", colorbar=True, aspect=aspect)
        show(axes[row, 2], d2[cut], "$d_2$ (px)", cmap="magma", colorbar=True, aspect=aspect)
        show(axes[row, 3], w[cut], "$w$", cmap="viridis", colorbar=True, aspect=aspect)
    fig.suptitle(f"3-D weight map of a {' x '.join(map(str, volume.shape))} stack, spacing (3, 1, 1): "
                 "slices 3 px thick", fontsize=11)
    fig.tight_layout()
    return fig


# --- chapter 4: the benchmark plots ---------------------------------------------------------

BENCH_JSON = BENCH_DATA / "weightmap_bench.json"


def run_weightmap_benchmark():
    """Run benchmarks/test_weightmap.py (about 10 minutes with the 3-D groups) and keep a slim
    copy of its JSON in docs/figures/data."""
    import json
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        raw = pathlib.Path(tmp) / "bench.json"
        command = [sys.executable, "-m", "pytest", "benchmarks/test_weightmap.py", "--benchmark-enable",
                   "-p", "no:cacheprovider", "-q", f"--benchmark-json={raw}"]
        print(" ".join(command), flush=True)
        load_before = os.getloadavg()  # the ratios are only as good as the machine was idle
        subprocess.run(command, cwd=ROOT, check=True)
        load_after = os.getloadavg()
        data = json.loads(raw.read_text())
    keep = ("group", "name", "params", "extra_info")
    stats = ("min", "median", "max", "rounds")
    slim = {
        "machine_info": {"cpu": data["machine_info"]["cpu"], "system": data["machine_info"]["system"],
                         "python_version": data["machine_info"]["python_version"]},
        "datetime": data["datetime"],
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "benchmarks": [{**{k: b[k] for k in keep}, "stats": {k: b["stats"][k] for k in stats}}
                       for b in data["benchmarks"]],
    }
    with atomic_write(BENCH_JSON, "w") as f:
        f.write(json.dumps(slim, indent=1) + "\n")


def _bench_plots():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import plot_weightmap

    if not BENCH_JSON.is_file():
        raise FileNotFoundError(f"{BENCH_JSON} is missing: run with --run-benchmarks")
    return plot_weightmap, *plot_weightmap.load(BENCH_JSON)


@output("weightmap_bench_size.png")
def bench_size_figure():
    plot, machine, benchmarks = _bench_plots()
    return plot.size_figure(benchmarks, machine)


@output("weightmap_bench_cells.png")
def bench_cells_figure():
    plot, machine, benchmarks = _bench_plots()
    return plot.cells_figure(benchmarks, machine)


@output("weightmap_bench_3d.png")
def bench_3d_figure():
    plot, machine, benchmarks = _bench_plots()
    return plot.volume_figure(benchmarks, machine)


# --- chapter 6: overlap-tile ----------------------------------------------------------------


@output("overlap_tile.png")
def overlap_tile_figure():
    """The paper's Fig. 2 for ISBI slice 0 and the paper's network: the mirror-padded image,
    the output tiles of predict_tiled (572 px input tiles) and the input tile of one."""
    from matplotlib.patches import Rectangle

    from unet_ref.sizes import margin, output_size
    from unet_ref.images import mirror_pad
    from unet_ref.tiling import plan_tiles  # the tiler's own tile geometry

    image, _ = isbi_pair(0)
    depth, tile = 4, 572
    plan = plan_tiles(image.shape, (tile, tile), depth)
    m, out, stride, counts = margin(depth), output_size(tile, depth), plan.stride[0], plan.count
    h, w = image.shape
    padded = mirror_pad(image, (m, m), (m, m))  # the context every border pixel sees
    box = dict(facecolor="black", alpha=0.6, pad=2, edgecolor="none")
    fig, ax = plt.subplots(figsize=(7.5, 7.8))
    ax.imshow(padded, cmap="gray", extent=(-m - 0.5, w + m - 0.5, h + m - 0.5, -m - 0.5))
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, ec="white", lw=1.2))
    colors = ["gold", "tab:orange", "limegreen", "violet"]
    for i in range(counts[0]):
        for j in range(counts[1]):
            y, x, k = i * stride, j * stride, i * counts[1] + j
            # outputs past the image are computed on mirrored context and discarded: clip
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), min(out, w - x), min(out, h - y), fill=False,
                                   ec=colors[k % 4], lw=2.5 - 0.4 * k))
            ax.text(x + 10, y + 28, f"output tile {k + 1}", color=colors[k % 4], fontsize=9, bbox=box)
    ax.add_patch(Rectangle((-m - 0.5, -m - 0.5), tile, tile, fill=False, ec="deepskyblue", lw=2.5, ls="--"))
    ax.text(-m + 8, -m + 22, f"input tile of output tile 1: {tile} x {tile}", color="deepskyblue", fontsize=9,
            bbox=box)
    ax.text(w - 8, h - 12, "image border", color="white", fontsize=9, ha="right", bbox=box)
    ax.set_xlim(-m - 0.5, w + m - 0.5)
    ax.set_ylim(h + m - 0.5, -m - 0.5)
    ax.set_title(f"ISBI slice 0 ({h} x {w}) with {m} px of mirrored context; {out} x {out} output tiles "
                 f"every {stride} px\n(the pooling grid), each predicted from the {tile} x {tile} window "
                 f"around it", fontsize=10)
    ax.set_axis_off()
    fig.tight_layout()
    return fig


# --- chapter 7: the training tile -----------------------------------------------------------


@output("training_tile.png")
def training_tile_figure():
    """One training tile of the tutorial preset on a synthetic image: where its input window,
    output crop and the weight map's context band lie (the sampler's own draw), and the tile
    triple that training_tile makes of them."""
    from matplotlib.patches import Rectangle

    from unet_ref.config import PRESETS
    from unet_ref.pipeline import TileSampler
    from unet_ref.reference import weight_context
    from unet_ref.synthetic import synthetic_sample

    preset = PRESETS["tutorial"]
    image, _, labels = synthetic_sample(256, seed=3)
    sampler = TileSampler([image], [labels], preset.tile_size, preset.depth, augment=False, seed=1)
    _, corner, _, _ = sampler.draw(0)
    tile, cells, weights = sampler.sample(0)
    (n, _), (m, _), c = sampler.tile_shape, sampler.output_shape, weight_context()
    box = dict(facecolor="black", alpha=0.6, pad=2, edgecolor="none")
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6), gridspec_kw=dict(width_ratios=[1.5, 1, 1, 1]))
    axes[0].imshow(image, cmap="gray")
    y, x = corner
    for (top, left, size), color, text in [
            ((y - (n - m) // 2, x - (n - m) // 2, n), "deepskyblue", f"input window {n} x {n}"),
            ((y - c, x - c, m + 2 * c), "gold", f"labels: crop + {c} px context band"),
            ((y, x, m), "tomato", f"output crop {m} x {m}")]:
        axes[0].add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, ec=color, lw=2))
        axes[0].text(left + 2, top + size - 4, text, color=color, fontsize=8, bbox=box)
    axes[0].set_title("one tile's geometry on a synthetic 256 x 256 image", fontsize=10)
    axes[1].imshow(tile[..., 0], cmap="gray", vmin=0, vmax=1)
    axes[1].add_patch(Rectangle(((n - m) // 2 - 0.5,) * 2, m, m, fill=False, ec="tomato", lw=1.5))
    axes[1].set_title(f"image tile ({n} x {n}), crop outlined", fontsize=10)
    axes[2].imshow(cells, cmap="gray")
    axes[2].set_title(f"label tile ({m} x {m}), 1 = cell", fontsize=10)
    shown = axes[3].imshow(weights, cmap="magma")
    fig.colorbar(shown, ax=axes[3], fraction=0.046)
    axes[3].set_title("weight tile: w_c + border term", fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


# --- chapters 6-8: figures from one tutorial training run -----------------------------------

RUN = ROOT / "runs" / "docs_figures"  # gitignored; reused until --retrain
HELD_OUT_SEED = 20_000  # synthetic images never seen in training


def tutorial_run(retrain=False):
    """(model, run folder) of the tutorial preset trained on synthetic data, cached in RUN."""
    from unet_ref.runs import load_run
    from unet_ref.train import resolve_config, train

    config = resolve_config("tutorial", {"out": str(RUN), "verbose": 2})
    if retrain or not (RUN / "model.keras").is_file() or not (RUN / "log.csv").is_file():
        if RUN.exists():
            import shutil

            shutil.rmtree(RUN)  # a fresh run, not a resumed one
        print(f"training the tutorial preset into {RUN.relative_to(ROOT)} (a few minutes)", flush=True)
        train(config)
    model, _ = load_run(RUN)
    return model


@output("training_curves.png")
def training_curves_figure():
    """Loss and validation errors per epoch of the tutorial run (its log.csv)."""
    import csv

    from unet_ref.runs import load_run

    tutorial_run()
    with open(RUN / "log.csv", newline="") as f:
        rows = list({row["epoch"]: row for row in csv.DictReader(f)}.values())  # last row per epoch
    epochs = [int(row["epoch"]) + 1 for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, style in (("loss", "-o"), ("val_loss", "-s")):
        left.plot(epochs, [float(row[key]) for row in rows], style, label=key, markersize=4)
    left.set_yscale("log")
    left.set_xlabel("epoch")
    left.set_ylabel("weighted cross-entropy (mean per pixel)")
    left.legend()
    for key, style in (("val_pixel_error", "-^"), ("val_rand_error", "-v")):
        if key in rows[0]:
            right.plot(epochs, [float(row[key]) for row in rows], style, label=key, markersize=4)
    right.set_xlabel("epoch")
    right.set_ylabel("error on the whole validation images")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    c = load_run(RUN)[1]
    fig.suptitle(f"Tutorial preset on synthetic data ({c.base_filters} filters, depth {c.depth}, {c.tile_size} px tiles, "
                 f"batch {c.batch_size}, {c.optimizer}, {len(rows)} epochs of {c.steps_per_epoch} steps), 2 CPU cores",
                 fontsize=10)
    fig.tight_layout()
    return fig


def held_out_sample(size=(300, 420)):
    from unet_ref.synthetic import synthetic_sample

    return synthetic_sample(size, seed=HELD_OUT_SEED)


@output("seams.png")
def seams_figure():
    """P(cell) of a held-out image with two tile sizes (output tile borders drawn), and
    their difference."""
    from unet_ref.model import unet_depth
    from unet_ref.sizes import output_size, valid_input_size
    from unet_ref.tiling import plan_tiles, predict_tiled  # the tiler's own tile geometry

    model = tutorial_run()
    depth = unet_depth(model)
    image, _, _ = held_out_sample()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    show(axes[0], image, f"held-out synthetic image {image.shape[0]} x {image.shape[1]}")
    cells = []
    for ax, tile in zip(axes[1:3], (valid_input_size(150, depth), valid_input_size(250, depth))):
        cell = predict_tiled(model, image, tile_size=tile)[..., 1]
        cells.append(cell)
        show(ax, cell, f"P(cell), {tile} px tiles ({output_size(tile, depth)} px outputs)", cmap="viridis", vmin=0,
             vmax=1)
        stride = plan_tiles(image.shape, (tile, tile), depth).stride[0]
        for origin in range(stride, max(image.shape), stride):
            ax.axhline(origin - 0.5, color="white", lw=0.6, ls="--")
            ax.axvline(origin - 0.5, color="white", lw=0.6, ls="--")
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
    difference = np.abs(cells[0] - cells[1])
    show(axes[3], difference, f"|difference| (scale 0 to 1e-5), max {difference.max():.1e}", cmap="magma",
         colorbar=True, vmin=0, vmax=1e-5)
    fig.tight_layout()
    return fig


@output("overview.png")
def overview_figure():
    """What U-Net does, for the index page: an image, the trained network's P(cell) of it
    (overlap-tile) and the mask P >= 0.5, beside the ground truth."""
    from unet_ref.tiling import predict_tiled

    model = tutorial_run()
    image, mask, _ = held_out_sample()
    cell = predict_tiled(model, image)[..., 1]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.0))
    show(axes[0], image, "1. the image (EM-like, synthetic)")
    show(axes[1], cell, "2. the network's P(cell) of every pixel", cmap="viridis", vmin=0, vmax=1)
    show(axes[2], cell >= 0.5, "3. the mask: cell where P >= 0.5")
    show(axes[3], mask, "the ground truth, for comparison")
    fig.tight_layout()
    return fig


@output("evaluation.png")
def evaluation_figure():
    """Prediction of a held-out image against its ground truth, with the metrics."""
    from unet_ref.evaluate import evaluate_image
    from unet_ref.tiling import predict_tiled

    model = tutorial_run()
    image, mask, _ = held_out_sample()
    cell = predict_tiled(model, image)[..., 1]
    metrics = evaluate_image(cell, mask)
    truth, predicted = mask > 0, cell >= 0.5
    errors = np.zeros(mask.shape + (3,))
    errors[truth & ~predicted] = (1.0, 0.3, 0.3)  # a cell pixel called membrane (red)
    errors[~truth & predicted] = (0.3, 0.6, 1.0)  # a membrane pixel called cell (blue)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    show(axes[0], image, "held-out synthetic image")
    show(axes[1], mask, "ground truth (white = cell)")
    show(axes[2], cell, "P(cell), overlap-tile", cmap="viridis", vmin=0, vmax=1)
    show(axes[3], errors, "errors: red = missed cell, blue = missed membrane", cmap=None)
    fig.suptitle(f"pixel error {metrics['pixel_error']:.3f}, adapted Rand error {metrics['rand_error']:.3f}, "
                 f"VI {metrics['vi']:.2f} bits (split {metrics['vi_split']:.2f}, merge {metrics['vi_merge']:.2f})",
                 fontsize=10)
    fig.tight_layout()
    return fig


@output("ablation.md")
def ablation_table():
    """The weight-map ablation's table (benchmarks/ablation.py) from the results committed in
    docs/figures/data/ablation (`python benchmarks/ablation.py publish`)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ablation

    return ("<!-- generated by docs/make_figures.py from docs/figures/data/ablation "
            "(benchmarks/ablation.py); do not edit -->\n\n" + ablation.table(BENCH_DATA / "ablation") + "\n")


@output("isbi_challenge.md")
def isbi_challenge_table():
    """The paper's Table 1 beside the reference CPU run and the ablation's paper-weighted ISBI
    runs, with the challenge's scores."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ablation

    import cpu_recipe

    lines = ablation.paper_table(BENCH_DATA / "ablation").split("\n")
    lines[3:3] = cpu_recipe.final_rows(BENCH_DATA / "recipe")  # after the paper's row
    return ("<!-- generated by docs/make_figures.py from docs/figures/data/ablation and recipe "
            "(benchmarks/ablation.py, cpu_recipe.py); do not edit -->\n\n" + "\n".join(lines) + "\n")


@output("recipe.md")
def recipe_table():
    """The CPU recipe's pilots and hour-long run on ISBI (benchmarks/cpu_recipe.py), from the
    results committed in docs/figures/data/recipe (`python benchmarks/cpu_recipe.py publish`)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import cpu_recipe

    return ("<!-- generated by docs/make_figures.py from docs/figures/data/recipe "
            "(benchmarks/cpu_recipe.py); do not edit -->\n\n" + cpu_recipe.table(BENCH_DATA / "recipe") + "\n")


@output("recipe_curve.png")
def recipe_curve_figure():
    """Loss and validation pixel error per epoch of the reference CPU run: its first seed
    (its log.csv), or the hour-long final run if no seeds are published."""
    from unet_ref.plots import plot_loss_curve

    recipe = BENCH_DATA / "recipe"
    logs = sorted(recipe.glob("seeds/*-seed0/log.csv")) or sorted(recipe.glob("final/*/log.csv"))
    if not logs:
        raise FileNotFoundError("no published run: python benchmarks/cpu_recipe.py seeds NAME 3, then publish")
    return plot_loss_curve(logs[-1], FIGURES / "recipe_curve.png")


@output("warping.png")
def warping_figure():
    """What the challenge's warping error counts (a merge, a split) and forgives (a thicker
    membrane, a hole), on the toy truth of chapter 8, with unet_ref.challenge_scores."""
    from scipy import ndimage

    from unet_ref.challenge import challenge_scores

    truth = np.zeros((64, 64), np.uint8)  # 16 square cells, 2 px membranes (chapter 8)
    for r in range(0, 64, 16):
        for c in range(0, 64, 16):
            truth[r + 1:r + 15, c + 1:c + 15] = 255
    cells = truth > 0
    merged, split, hole = cells.copy(), cells.copy(), cells.copy()
    merged[1:15, 15:17] = True  # the membrane between two cells missed
    split[16:32, 8] = False  # a spurious membrane through a cell
    hole[38:42, 38:42] = False  # a dark blob inside a cell called membrane
    thick = ndimage.binary_erosion(cells)  # every membrane 1 px thicker on each side
    cases = [("merge: counted", merged), ("split: counted", split), ("thicker membranes: forgiven", thick),
             ("a hole in a cell: forgiven", hole)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 4.2))
    for ax, (title, proposal) in zip(axes, cases):
        scores = challenge_scores(proposal.astype(np.float32), truth)
        splits, merges = scores["sweep"]["splits_merges"][0]
        picture = np.stack([cells] * 3, axis=-1).astype(float) * 0.85  # truth: gray cells
        picture[proposal & ~cells] = (0.3, 0.6, 1.0)  # predicted cell where the truth has membrane
        picture[~proposal & cells] = (1.0, 0.35, 0.3)  # predicted membrane inside a true cell
        show(ax, picture, f"{title}\n{splits} split + {merges} merge px; pixel error {scores['pixel_error']:.3f}",
             cmap=None)
    fig.suptitle("Warping error: the truth is bent towards the prediction by topology-preserving pixel flips; "
                 "only splits and merges remain (blue: extra cell, red: extra membrane)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


@output("weightmap_isbi.md")
def bench_isbi_table():
    """The ISBI group of the committed benchmark as a Markdown table (median, ratios, memory)."""
    _, machine, benchmarks = _bench_plots()
    rows = [b for b in benchmarks if b["group"].startswith("isbi")]
    if not rows:
        raise ValueError(f"{BENCH_JSON} has no ISBI group (the ISBI data was absent when it was measured)")
    base = next(b for b in rows if b["extra_info"].get("baseline"))["stats"]["median"]
    ours = next(b for b in rows if b["params"]["name"] == "weight_map")["stats"]["median"]
    lines = [
        "<!-- generated by docs/make_figures.py from docs/figures/data/weightmap_bench.json; do not edit -->",
        "",
        f"ISBI 2012 training label 0 (512 x 512, {rows[0]['extra_info']['cells']} cells); {machine}.",
        "",
        "| contender | median time | vs one scipy EDT | vs weight_map | peak memory |",
        "|---|---|---|---|---|",
    ]
    for b in sorted(rows, key=lambda b: b["stats"]["median"]):
        median = b["stats"]["median"]
        lines.append(f"| `{b['params']['name']}` | {median * 1e3:.1f} ms | {median / base:.2f} x | "
                     f"{median / ours:.1f} x | {b['extra_info']['peak_MB']:.0f} MB |")
    return "\n".join(lines) + "\n"


@output("colab.ipynb")
def colab_notebook():
    """docs/colab.ipynb from its text source docs/colab.py ("# %%" cells, the "percent"
    format of jupytext and VS Code): a notebook for Colab that the tests can run as a script.

    A "# %% [script]" cell is left out of the notebook: it defines `shell`, and each line
    `shell(f"command")` becomes the notebook's `!command`, which Colab runs in a shell and
    shows as it runs. IPython reads `{NAME}` in a `!` line as the f-string does, so only
    names may appear in braces (no `$`, backslash or expression).
    """
    import json

    cells = []
    for number, chunk in enumerate((HERE / "colab.py").read_text(encoding="utf-8").split("# %%")[1:]):
        header, _, body = chunk.partition("\n")
        if header.strip() == "[script]":
            continue
        if header.strip() == "[markdown]":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.strip().splitlines()]
            cell = {"cell_type": "markdown"}
        else:
            lines = [shell_line(line) for line in body.strip().splitlines()]
            cell = {"cell_type": "code", "execution_count": None, "outputs": []}
        source = [line + "\n" for line in lines[:-1]] + lines[-1:]
        cells.append({**cell, "id": f"cell-{number}", "metadata": {}, "source": source})
    notebook = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"accelerator": "GPU", "colab": {"provenance": []},
                             "kernelspec": {"display_name": "Python 3", "name": "python3"},
                             "language_info": {"name": "python"}}}
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


SHELL_LINE = re.compile(r"(?P<indent>\s*)shell\((?P<f>f?)(?P<quote>['\"])(?P<command>(?:(?!(?P=quote))[^\\$])*)(?P=quote)\)")


def shell_line(line):
    """`    shell(f'pip install "{SOURCE}"')` -> `    !pip install "{SOURCE}"`; other lines unchanged."""
    if "shell(" not in line:
        return line
    found = SHELL_LINE.fullmatch(line)
    fields = re.findall(r"\{([^}]*)\}", found["command"]) if found else []
    if not found or not all(field.isidentifier() for field in fields) or (fields and not found["f"]):
        raise ValueError(f"docs/colab.py: {line.strip()!r} is not a line shell(f\"command\") with only {{NAME}} fields")
    return f"{found['indent']}!{found['command']}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="outputs to make (default: all)")
    parser.add_argument("--list", action="store_true", help="list the outputs and exit")
    parser.add_argument("--retrain", action="store_true",
                        help=f"train the tutorial run again (cached in {RUN.relative_to(ROOT)})")
    parser.add_argument("--run-benchmarks", action="store_true",
                        help="re-measure benchmarks/test_weightmap.py (about 2 minutes) before plotting")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(OUTPUTS))
        return 0
    unknown = [n for n in args.names if n not in OUTPUTS]
    if unknown:
        parser.error(f"unknown output(s) {unknown}; choose from {sorted(OUTPUTS)}")
    if args.run_benchmarks:
        run_weightmap_benchmark()
    if args.retrain:
        tutorial_run(retrain=True)
    skipped = []
    for name in args.names or OUTPUTS:
        try:
            path = save(name, OUTPUTS[name]())
        except FileNotFoundError as error:  # IsbiMissing, or a run's results not published yet
            skipped.append(name)
            print(f"skipped {name}: {error}")
            continue
        print(f"wrote {path.relative_to(ROOT)}")
    if skipped:
        print(f"{len(skipped)} output(s) need data that is absent and were left as they are: {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
