"""Weight map speed and memory: the one-pass kernel against the per-cell reference and
against ONE Euclidean distance transform (scipy; the `edt` package) of the same image, in
2-D and in 3-D with an anisotropic spacing.

    python -m pytest benchmarks/test_weightmap.py --benchmark-enable      # ~8 minutes
    python -m pytest benchmarks/test_weightmap.py --benchmark-enable -k "volume"  # 3-D only

The baseline of every group is one `scipy.ndimage.distance_transform_edt` of the cell
mask (with the same `sampling` in 3-D): the weight map (labelling + d1/d2 + formula, all
in) costs that ratio of one EDT. extra_info carries peak_MB, the peak extra memory of one
call (tracemalloc: numpy arrays included), bytes_per_px, and cells. The reference is
O(pixels x n_cells) in time and memory, so it runs 3 rounds on ISBI, once elsewhere, and
only where it fits: 2-D sizes <= 512, cell counts <= 100. Volumes of 16 M voxels and more
run 2 rounds. The adversarial-layout group (issue 15.7) has its own baseline, a dense
tessellation.
"""
import functools
import os
import pathlib
import time
import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from unet_ref import reference
from unet_ref.masks import label_cells
from unet_ref.synthetic import synthetic_sample
from unet_ref.weights import d1_d2, weight_map

edt = pytest.importorskip("edt", reason="the edt package is a benchmark extra: pip install edt")

ROOT = pathlib.Path(__file__).resolve().parents[1]
ISBI_LABEL = pathlib.Path(os.environ.get("UNET_REF_ISBI", ROOT.parent / "shared" / "data" / "isbi2012")) / "train" / "label" / "0.png"


def peak_mb(fn):
    """Peak memory allocated during one call of fn, in MB (numpy arrays included)."""
    tracemalloc.start()
    try:
        fn()
        return round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    finally:
        tracemalloc.stop()


def contenders(mask, spacing=None):
    """name -> (callable, rounds or None, baseline?) for one uint8 {0, 255} mask."""
    cells = mask >= 128
    labels = label_cells(cells)  # 8-connected in 2-D, 26 in 3-D, as weight_map(mask) labels them
    anisotropy = (1.0,) * mask.ndim if spacing is None else spacing
    return {
        "scipy_edt": (lambda: ndimage.distance_transform_edt(cells, sampling=spacing), None, True),
        "edt_package": (lambda: edt.edt(cells, anisotropy=anisotropy), None, False),  # one thread
        "weight_map": (lambda: weight_map(mask, spacing=spacing), None, False),  # default: every core
        "weight_map_1thread": (lambda: weight_map(mask, spacing=spacing, num_threads=1), None, False),
        "d1_d2_only": (lambda: d1_d2(labels, spacing=spacing), None, False),
        "reference": (lambda: reference.weight_map(mask, spacing=spacing), 3, False),
    }


def run(benchmark, group, mask, name, with_reference=True, spacing=None):
    fn, rounds, baseline = contenders(mask, spacing)[name]
    if name == "reference" and not with_reference:
        pytest.skip("the per-cell reference is O(pixels x n_cells): too slow / too big here")
    benchmark.group = group
    benchmark.extra_info["baseline"] = baseline
    benchmark.extra_info["reference"] = name == "reference"
    benchmark.extra_info["cells"] = int(label_cells(mask >= 128).max())
    benchmark.extra_info["peak_MB"] = peak_mb(fn)
    benchmark.extra_info["bytes_per_px"] = round(benchmark.extra_info["peak_MB"] * 2**20 / mask.size, 1)
    if rounds:  # the reference: a few rounds only, and one beyond ISBI size
        benchmark.pedantic(fn, rounds=rounds if "isbi" in group else 1, iterations=1)
    elif mask.size >= 2**24:  # seconds per call: two rounds
        benchmark.pedantic(fn, rounds=2, iterations=1)
    else:
        benchmark(fn)


NAMES = ["scipy_edt", "edt_package", "weight_map", "weight_map_1thread", "d1_d2_only", "reference"]


@pytest.mark.parametrize("name", NAMES)
def test_isbi_512(benchmark, name):
    if not ISBI_LABEL.is_file():  # as tests/conftest.py's missing_data
        reason = f"ISBI 2012 label not found at {ISBI_LABEL}"
        if os.environ.get("UNET_REF_REQUIRE_DATA", "0") == "1":
            pytest.fail(f"{reason}; UNET_REF_REQUIRE_DATA=1 requires it", pytrace=False)
        pytest.skip(reason)
    from skimage.io import imread

    run(benchmark, "isbi 512x512 (slice 0)", imread(ISBI_LABEL), name)


@functools.lru_cache
def synthetic_mask(size):
    return synthetic_sample(size, seed=0)[1]  # ISBI-like cell density: cells grow with area


@pytest.mark.parametrize("size", [256, 512, 1024, 2048])
@pytest.mark.parametrize("name", NAMES)
def test_size(benchmark, name, size):
    run(benchmark, f"synthetic {size}x{size}", synthetic_mask(size), name, with_reference=size <= 512)


def voronoi_ids(n_cells, shape, spacing=None, seed=0):
    """Voronoi cells 1..n_cells of uniformly drawn seeds (nearest seed under `spacing`)."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(int(np.prod(shape)), n_cells, replace=False)
    background = np.ones(shape, bool)
    background.flat[flat] = False
    nearest = ndimage.distance_transform_edt(background, sampling=spacing, return_distances=False,
                                             return_indices=True)
    ids = np.zeros(shape, np.int32)
    ids.flat[flat] = np.arange(1, n_cells + 1)
    return ids[tuple(nearest)]


@functools.lru_cache
def voronoi_mask(n_cells, size=512, seed=0):
    """Mask of n_cells Voronoi cells with 2 px membranes (both sides of each boundary)."""
    ids = voronoi_ids(n_cells, (size, size), seed=seed)
    membrane = np.zeros(ids.shape, bool)
    membrane[1:] |= ids[1:] != ids[:-1]
    membrane[:-1] |= ids[1:] != ids[:-1]
    membrane[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    membrane[:, :-1] |= ids[:, 1:] != ids[:, :-1]
    return np.where(membrane, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("n_cells", [10, 100, 1000, 5000])
@pytest.mark.parametrize("name", NAMES)
def test_cell_count(benchmark, name, n_cells):
    run(benchmark, f"{n_cells} cells in 512x512", voronoi_mask(n_cells), name, with_reference=n_cells <= 100)


# -- adversarial layouts (issue 15.7) --------------------------------------------------------
# The row pass is linear on every input (ext/_d1d2.pyx). These layouts made the old outward
# scan quadratic per row; each is timed against a dense tessellation of the same size, on one
# thread (the bound is per thread). Target, asserted below: every ratio <= 3.

LAYOUT_SIDE = 4096


def dense_tessellation(size):
    """ISBI-like: Voronoi cells of ~2000 px with 2 px membranes (instance labels)."""
    mask = voronoi_mask(size * size // 2000, size)
    return label_cells(mask >= 128, connectivity=1)


def band_of_cells(size, cell=8):
    """Empty except a band of 8-px cells along the top (the issue's 30 s case)."""
    labels = np.zeros((size, size), np.int32)
    labels[:cell] = np.arange(size) // cell + 1
    return labels


def diagonal_pixels(size):
    """One-pixel cells on the diagonal: each column's nearest cell is another one."""
    labels = np.zeros((size, size), np.int32)
    labels[np.arange(size), np.arange(size)] = np.arange(1, size + 1)
    return labels


def comb(size):
    """Two labels alternating along the top row: runs of one column, labels repeating."""
    labels = np.zeros((size, size), np.int32)
    labels[0] = np.arange(size) % 2 + 1
    return labels


def sparse_points(size, n=1000):
    labels = np.zeros((size, size), np.int32)
    labels.flat[np.random.default_rng(0).choice(size * size, n, replace=False)] = np.arange(1, n + 1)
    return labels


def noise(size, n=1000):
    """Every pixel a random one of n ids (no background): a label change at every step."""
    return np.random.default_rng(0).integers(1, n + 1, size=(size, size), dtype=np.int32)


def column_stripes(size):
    """One id per column: every column its own run."""
    return np.broadcast_to(np.arange(1, size + 1, dtype=np.int32), (size, size)).copy()


LAYOUTS = {f.__name__: f for f in (dense_tessellation, band_of_cells, diagonal_pixels, comb, sparse_points,
                                    noise, column_stripes)}


@functools.lru_cache
def layout_labels(name, size=LAYOUT_SIDE):
    return LAYOUTS[name](size)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout(benchmark, layout):
    labels = layout_labels(layout)
    benchmark.group = f"layouts {LAYOUT_SIDE}x{LAYOUT_SIDE}: d1_d2 on 1 thread vs a dense tessellation"
    benchmark.extra_info["baseline"] = layout == "dense_tessellation"
    benchmark(lambda: d1_d2(labels, num_threads=1))


def test_every_adversarial_layout_takes_at_most_3_times_the_dense_tessellation():
    """Interleaved runs (every layout in turn, three times) in CPU seconds of this process,
    medians compared: a shared machine's load does not bias them."""
    times = {name: [] for name in LAYOUTS}
    for _ in range(3):
        for name in LAYOUTS:
            labels = layout_labels(name)
            start = time.process_time()
            d1_d2(labels, num_threads=1)
            times[name].append(time.process_time() - start)
    base = float(np.median(times["dense_tessellation"]))
    ratios = {name: float(np.median(t)) / base for name, t in times.items()}
    print("\n" + ", ".join(f"{name} {ratio:.2f} x" for name, ratio in ratios.items()))
    assert max(ratios.values()) <= 3, ratios


# -- 3-D (issue 12) --------------------------------------------------------------------------
# Voronoi cells with one-voxel membranes on both sides, seeds drawn uniformly, distances with
# the anisotropic spacing of an EM stack whose slices are 3 times thicker than a pixel. Every
# contender uses that spacing (scipy's sampling, the edt package's anisotropy).

SPACING_3D = (3.0, 1.0, 1.0)
VOLUME_SHAPES = [(64, 64, 64), (64, 128, 128), (128, 256, 256), (256, 512, 512)]
VOXELS_PER_CELL = 8000  # cells grow with the volume, ~20 x 20 x 20 voxels each
CELLS_SHAPE = (48, 128, 128)  # small enough for the per-cell reference at 100 cells
CELL_COUNTS_3D = [10, 100, 1000, 5000]


@functools.lru_cache
def voronoi_volume(n_cells, shape):
    """Mask of n_cells Voronoi cells whose membrane is every voxel with a voxel of another
    cell among its 26 neighbours: the cells stay apart under 26-connected labelling."""
    ids = voronoi_ids(n_cells, shape, spacing=SPACING_3D)
    membrane = (ndimage.maximum_filter(ids, size=3) != ids) | (ndimage.minimum_filter(ids, size=3) != ids)
    return np.where(membrane, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", VOLUME_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", NAMES)
def test_volume_size(benchmark, name, shape):
    mask = voronoi_volume(int(np.prod(shape)) // VOXELS_PER_CELL, shape)
    run(benchmark, f"3-D {'x'.join(map(str, shape))}, spacing (3, 1, 1)", mask, name, with_reference=False,
        spacing=SPACING_3D)


@pytest.mark.parametrize("cells_3d", CELL_COUNTS_3D)
@pytest.mark.parametrize("name", NAMES)
def test_volume_cell_count(benchmark, name, cells_3d):
    group = f"3-D {cells_3d} cells in {'x'.join(map(str, CELLS_SHAPE))}, spacing (3, 1, 1)"
    run(benchmark, group, voronoi_volume(cells_3d, CELLS_SHAPE), name, with_reference=cells_3d <= 100,
        spacing=SPACING_3D)
