"""Log-log plots of the weight-map benchmark (benchmarks/test_weightmap.py).

Reads the JSON that pytest-benchmark writes with --benchmark-json and draws the median
time of every contender against the image size and against the number of cells:

    python -m pytest benchmarks/test_weightmap.py --benchmark-enable --benchmark-json bench.json
    python benchmarks/plot_weightmap.py bench.json --out docs/figures

docs/make_figures.py calls `size_figure` and `cells_figure` on the JSON committed in
docs/figures/data/, so the tutorial's plots are these.
"""
import argparse
import json
import os
import pathlib
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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
    return machine, data["benchmarks"]


def series(benchmarks, axis):
    """{contender: ([x...], [median seconds...])} over the benchmarks parametrised by `axis`."""
    out = {}
    for bench in benchmarks:
        params = bench.get("params") or {}
        if axis not in params or "name" not in params:
            continue
        xs, ys = out.setdefault(params["name"], ([], []))
        xs.append(params[axis])
        ys.append(bench["stats"]["median"])
    for name, (xs, ys) in out.items():
        order = sorted(range(len(xs)), key=xs.__getitem__)
        out[name] = ([xs[i] for i in order], [ys[i] for i in order])
    return out


def _figure(benchmarks, machine, axis, xlabel, title):
    data = series(benchmarks, axis)
    if not data:
        raise ValueError(f"no benchmark is parametrised by {axis!r}; run benchmarks/test_weightmap.py")
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for name, (label, style) in CONTENDERS.items():
        if name in data:
            xs, ys = data[name]
            ax.loglog(xs, ys, label=label, markersize=5, **style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("median time per call (s)")
    ax.set_title(f"{title}\n{machine}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
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


def _save(fig, path):
    """Atomically: temp file in the same folder, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, metadata={"Software": None})
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--out", default=".", help="folder for the two PNGs (default: .)")
    args = parser.parse_args(argv)
    machine, benchmarks = load(args.json)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in (("weightmap_bench_size.png", size_figure), ("weightmap_bench_cells.png", cells_figure)):
        _save(make(benchmarks, machine), out / name)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
