"""Blockwise on a local Dask cluster against the in-process functions, on the same cores.

    python -m pytest benchmarks/test_blockwise.py --benchmark-enable -s
    UNET_REF_BENCH_MEMORY=1 python -m pytest benchmarks/test_blockwise.py -k memory -s   # ~15 min, 5 GB disk

Throughput: voxels per second of `predict_blockwise` (a job from zarr to OME-Zarr: reading
each block's region, its tiles, writing the block and its marker, scheduling) against
`predict_tiled` on the same volume in memory, in this process; and of `weight_map_blockwise`
against `weight_map`. The cluster has as many single-threaded worker processes as cores, so
both sides use every core; runs are interleaved (blockwise, in-process, blockwise, ...),
so that a shared machine's drifting load does not bias the ratio, and the cluster is warm
(TensorFlow imported in its workers) before timing. On one machine no speed-up is
expected: the ratio is the price of going blockwise.

Memory: a local cluster whose workers may use less memory than the volume (the nanny
kills a worker above 95 % of its limit, and the job then fails) runs a prediction and a
weight map at two volume sizes; each worker's peak resident memory (VmHWM, Linux) is
printed, and it must not grow with the volume. A benchmark, not a test: volumes larger
than a worker's memory take minutes to write and to process on 2 cores. Off by default
(UNET_REF_BENCH_MEMORY=1).
"""
import os
import shutil
import sys
import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("distributed")

import cloudpickle  # noqa: E402  (comes with distributed)
import zarr  # noqa: E402

from unet_ref.blockwise import dask_client, predict_blockwise, weight_map_blockwise  # noqa: E402
from unet_ref.model import build_unet  # noqa: E402
from unet_ref.tiling import predict_tiled  # noqa: E402
from unet_ref.weights import weight_map  # noqa: E402

ROUNDS = 3


def _cells(shape, seed, count):
    """Instance labels: `count` random boxes of cells, some touching, some crossing blocks."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for k in range(1, count + 1):
        lo = [int(rng.integers(0, n - 4)) for n in shape]
        labels[tuple(slice(a, min(n, a + int(rng.integers(3, 24)))) for a, n in zip(lo, shape))] = k
    return labels


def _interleaved(blockwise, in_process, voxels, what):
    """Median seconds of each over ROUNDS interleaved runs; prints voxels/s and the ratio."""
    times = {"blockwise": [], "in-process": []}
    for _ in range(ROUNDS):
        for name, run in (("blockwise", blockwise), ("in-process", in_process)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    b, p = (float(np.median(t)) for t in times.values())
    print(f"\n{what}: blockwise {voxels / b / 1e6:.2f} Mvox/s ({b:.1f} s), in-process {voxels / p / 1e6:.2f} Mvox/s "
          f"({p:.1f} s), time ratio blockwise / in-process {b / p:.2f} (median of {ROUNDS}, interleaved; "
          f"load average {os.getloadavg()[0]:.1f})")
    return b / p


@pytest.fixture(scope="module")
def client():
    with dask_client() as client:
        yield client


def _fresh(*paths):
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(f"{path}.partial", ignore_errors=True)


@pytest.mark.parametrize("ndim", [2, 3])
def test_blockwise_prediction_throughput_against_predict_tiled(client, tmp_path, ndim):
    keras.utils.set_random_seed(0)
    if ndim == 2:  # the paper's depth, 16 filters; 4 blocks of 1024^2
        model, shape, block = build_unet(base_filters=16, depth=4, dropout=0.0), (2048, 2048), 1024
    else:  # a 3-D U-Net of depth 2, 8 filters; 4 blocks of 64 x 128 x 128
        model, shape, block = build_unet(base_filters=8, depth=2, ndim=3, dropout=0.0), (64, 256, 256), (64, 128, 128)
    model.save(tmp_path / "model.keras")
    image = np.random.default_rng(ndim).random(shape).astype(np.float32)
    zarr.create_array(tmp_path / "image.zarr", data=image, chunks=(256,) * ndim)
    out = tmp_path / "p.ome.zarr"

    def blockwise():
        _fresh(out)
        predict_blockwise(tmp_path / "model.keras", tmp_path / "image.zarr", out, block_size=block, client=client,
                          progress=False)

    blockwise()  # warm up: TensorFlow in every worker, the graphs for this tile
    predict_tiled(model, image, progress=False)
    ratio = _interleaved(blockwise, lambda: predict_tiled(model, image, progress=False), image.size,
                         f"predict {ndim}-D {shape}, block {block}")
    assert np.allclose(zarr.open_array(out / "0")[:], predict_tiled(model, image, progress=False)[..., 1], atol=1e-5)
    assert ratio > 0


@pytest.mark.parametrize("instances", [True, False], ids=["instances", "mask"])
def test_blockwise_weight_map_throughput_against_weight_map(client, tmp_path, instances):
    labels = _cells((128, 512, 512), seed=0, count=3000)
    data = labels if instances else (labels > 0)
    zarr.create_array(tmp_path / "labels.zarr", data=data, chunks=(64, 256, 256))
    out, options = tmp_path / "w.ome.zarr", dict(w0=10, sigma=5, spacing=(2, 1, 1))

    def blockwise():
        _fresh(out)
        weight_map_blockwise(tmp_path / "labels.zarr", out, instances=instances, block_size=128, client=client,
                             progress=False, **options)

    def in_process():
        return weight_map(labels=labels, **options) if instances else weight_map(data, **options)

    blockwise()
    _interleaved(blockwise, in_process, labels.size, f"weight map of {'instance labels' if instances else 'a mask'} "
                                                     f"{labels.shape}, spacing (2, 1, 1), block 128")
    np.testing.assert_allclose(zarr.open_array(out / "0")[:], in_process(), rtol=1e-6)


# --- memory ----------------------------------------------------------------------------------

def _peak_mb():
    """This process's peak resident memory (VmHWM), MB; then resets it (Linux)."""
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return peak


@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("UNET_REF_BENCH_MEMORY") != "1", reason="minutes long: UNET_REF_BENCH_MEMORY=1")
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="VmHWM and clear_refs are Linux's")
@pytest.mark.parametrize("job", ["predict", "weightmap"])
def test_a_workers_peak_memory_follows_the_block_not_the_volume(tmp_path, job):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers must not import this module (and TensorFlow)
    keras.utils.set_random_seed(0)
    build_unet(base_filters=2, depth=1, dropout=0.0).save(tmp_path / "tiny.keras")
    limit, shapes = {  # memory limit per worker, volume sizes: every volume is larger than a worker may hold
        "predict": ("1GiB", [(17408, 17408), (20480, 20480)]),  # float32: 1.13 and 1.56 GiB
        "weightmap": ("512MiB", [(384, 1024, 1024), (512, 1024, 1024)]),  # uint16: 0.75 and 1 GiB
    }[job]
    with dask_client(workers=2, memory_limit=limit) as client:
        for shape in shapes:
            source, out = tmp_path / "volume.zarr", tmp_path / "out.ome.zarr"
            _fresh(source, out)
            if job == "predict":
                volume = zarr.create_array(source, shape=shape, chunks=(1024, 1024), dtype="float32")
                for y in range(0, shape[0], 1024):  # written in strips: this process must not hold it either
                    volume[y:y + 1024] = np.random.default_rng(y).random((min(1024, shape[0] - y), shape[1]),
                                                                         dtype=np.float32)
            else:
                # chunks no larger than a block: a task decompresses every chunk its region meets
                volume = zarr.create_array(source, shape=shape, chunks=(64, 256, 256), dtype="uint16")
                for z in range(0, shape[0], 64):
                    volume[z:z + 64] = _cells((64, 1024, 1024), seed=z, count=4000)
            workers = set(client.scheduler_info(n_workers=-1)["workers"])
            client.run(_peak_mb)
            start = time.perf_counter()
            if job == "predict":  # 1024^2 blocks, one tile each (its activations ~80 MB)
                predict_blockwise(tmp_path / "tiny.keras", source, out, block_size=1024, client=client, progress=False)
            else:
                weight_map_blockwise(source, out, instances=True, block_size=128, client=client, progress=False)
            seconds = time.perf_counter() - start
            peaks = client.run(_peak_mb)
            assert set(client.scheduler_info(n_workers=-1)["workers"]) == workers, "a worker was restarted"
            print(f"\n{job} {shape} {volume.dtype} ({volume.nbytes / 2**30:.2f} GiB), workers limited to {limit}: "
                  f"done in {seconds:.0f} s ({volume.size / seconds / 1e6:.2f} Mvox/s), peak resident memory per "
                  f"worker {sorted(peaks.values())} MB (load average {os.getloadavg()[0]:.1f})")
            _fresh(source, out)
