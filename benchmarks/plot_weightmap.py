"""Log-log plots of the weight-map benchmark (benchmarks/test_weightmap.py).

Reads the JSON that pytest-benchmark writes with --benchmark-json and draws the median
time of every contender against the image size and against the number of cells, in 2-D
and (one figure, two panels) in 3-D:

    python -m pytest benchmarks/test_weightmap.py --benchmark-enable --benchmark-json bench.json
    python benchmarks/plot_weightmap.py bench.json --out docs/figures

docs/make_figures.py calls `size_figure`, `cells_figure` and `volume_figure` on the JSON
committed in docs/figures/data/, so the tutorial's plots are these.
"""
import argparse
import json
import pathlib

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from unet_ref.plots import save_figure  # noqa: E402

# contender (the `name` parameter of the benchmark) -> (legend, matplotlib style)
CONTENDERS = {
    "reference": ("per-cell reference (the notebook)", dict(color="tab:red", marker="s")),
    "scipy_edt": ("ONE scipy distance_transform_edt (d1 only)", dict(color="tab:gray", marker="o")),
    "edt_package": ("ONE edt-package EDT (d1 only)", dict(color="tab:olive", marker="^")),
    "weight_map": ("weight_map (labelling + d1/d2 + formula), every core", dict(color="tab:blue", marker="D",
                                                                                 linewidth=2.5)),
    "weight_map_1thread": ("weight_map, 1 thread", dict(color="tab:cyan", marker="d", linestyle="--")),
    "d1_d2_only": ("d1_d2 only", dict(color="tab:purple", marker="v", linestyle=":")),
}


def load(path):
    """pytest-benchmark JSON -> (machine description, list of benchmark dicts)."""
    with open(path) as f:
        data = json.load(f)
    if "benchmarks" not in data:
        raise ValueError(f"{path} is not pytest-benchmark JSON (no 'benchmarks' key); "
                         f"write it with --benchmark-json")
    cpu = data.get("machine_info", {}).get("cpu", {})
    machine = f"{cpu.get('brand_raw', 'unknown CPU')}, {cpu.get('count', '?')} cores, no GPU"
    load = data.get("load_average")  # written by docs/make_figures.py --run-benchmarks
    if load:
        machine += f", load average {load['before'][0]:.1f} -> {load['after'][0]:.1f} during the run"
    return machine, data["benchmarks"]


def series(benchmarks, axis, x=lambda value: value):
    """{contender: ([x...], [median seconds...])} over the benchmarks parametrised by `axis`,
    with x(param) on the horizontal axis."""
    out = {}
    for bench in benchmarks:
        params = bench.get("params") or {}
        if axis not in params or "name" not in params:
            continue
        xs, ys = out.setdefault(params["name"], ([], []))
        xs.append(x(params[axis]))
        ys.append(bench["stats"]["median"])
    for name, (xs, ys) in out.items():
        order = sorted(range(len(xs)), key=xs.__getitem__)
        out[name] = ([xs[i] for i in order], [ys[i] for i in order])
    return out


def _panel(ax, benchmarks, axis, xlabel, title, x=lambda value: value):
    data = series(benchmarks, axis, x)
    if not data:
        raise ValueError(f"no benchmark is parametrised by {axis!r}; run benchmarks/test_weightmap.py")
    for name, (label, style) in CONTENDERS.items():
        if name in data:
            xs, ys = data[name]
            ax.loglog(xs, ys, label=label, markersize=5, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("median time per call (s)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _figure(benchmarks, machine, axis, xlabel, title):
    fig, ax = plt.subplots(figsize=(7, 4.6))
    _panel(ax, benchmarks, axis, xlabel, f"{title}\n{machine}")
    fig.tight_layout()
    return fig


def size_figure(benchmarks, machine):
    """Time against the side of a square synthetic ISBI-like label (cells grow with area)."""
    fig = _figure(benchmarks, machine, "size", "image side (px), square synthetic EM labels",
                  "Weight map: time against image size")
    fig.axes[0].set_xscale("log", base=2)
    return fig


def cells_figure(benchmarks, machine):
    """Time against the number of cells in a 512 x 512 label."""
    return _figure(benchmarks, machine, "n_cells", "cells in a 512 x 512 label",
                   "Weight map: time against the number of cells")


def volume_figure(benchmarks, machine):
    """3-D, spacing (3, 1, 1): time against the voxel count (cells grow with the volume) and
    against the number of cells in a 48 x 128 x 128 volume."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    _panel(left, benchmarks, "shape", "voxels (64^3 ... 256 x 512 x 512, ~8000 voxels per cell)",
           "3-D weight map: time against volume size", x=lambda shape: int(np.prod(shape)))
    _panel(right, benchmarks, "cells_3d", "cells in a 48 x 128 x 128 volume",
           "3-D weight map: time against the number of cells")
    fig.suptitle(f"3-D, voxel spacing (3, 1, 1) for every contender; {machine}", fontsize=10)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", default=".", help="folder for the three PNGs (default: .)")
    args = parser.parse_args(argv)
    machine, benchmarks = load(args.json)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in (("weightmap_bench_size.png", size_figure), ("weightmap_bench_cells.png", cells_figure),
                       ("weightmap_bench_3d.png", volume_figure)):
        save_figure(make(benchmarks, machine), out / name, tight=False)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
