"""Is the data pipeline ever the bottleneck? Tiles/s of the tf.data pipeline vs the model.

    python -m pytest benchmarks/test_pipeline.py --benchmark-enable

Two configurations, one benchmark group each, every round = BATCHES batches of 4 tiles:

- "tutorial": `train.PRESETS["tutorial"]` (base_filters 16, depth 3, 188 px tiles -> 100 px
  output), the configuration the docs train on a CPU;
- "depth4-252": build_unet(base_filters=16, depth=4) on 252 px tiles (68 px output).

Baseline of each group: `train_on_batch` of that model (compiled with `compile_unet`) on
one fixed batch, i.e. what training consumes. Contenders: pulling the same number of
batches from `make_dataset` on the fast path (augmentation + exact weight map per tile,
the compiled loops and kernel) and on the plain one (`sampler="plain"`:
`unet_ref.tiles.training_tile`, scipy and the per-cell reference weight map, one distance
transform per cell). The data: 8 synthetic 512 x 512 images (ISBI-like, ~130 cells each).
ratio < 0.1 for the fast pipeline means it is more than 10 x faster than the model
consumes. Measured separately, not
concurrently; on a 2-core machine that trains and augments at once they share the cores,
which the "fit-tutorial" group measures: rounds of steady-state `fit` steps on the live
pipeline vs on tiles computed beforehand.
"""
import os
import threading
import time

import numpy as np
import pytest

os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
keras = pytest.importorskip("keras")

from unet_ref.loss import compile_unet  # noqa: E402
from unet_ref.model import build_unet  # noqa: E402
from unet_ref.pipeline import make_dataset  # noqa: E402
from unet_ref.synthetic import synthetic_dataset  # noqa: E402
from unet_ref.train import PRESETS  # noqa: E402

BATCH, BATCHES = 4, 10
TUTORIAL = PRESETS["tutorial"]
CONFIGS = {
    "tutorial": dict(base_filters=TUTORIAL.base_filters, depth=TUTORIAL.depth, tile_size=TUTORIAL.tile_size),
    "depth4-252": dict(base_filters=16, depth=4, tile_size=252),
}


_DATA = {}


def data():
    if "images" not in _DATA:
        _DATA["images"] = synthetic_dataset(8, size=512, seed=0)
    return _DATA["images"]


def timed(function, cpu_seconds):
    """`function`, also recording the process CPU time (all threads) of each call."""
    def run():
        start = time.process_time()
        function()
        cpu_seconds.append(time.process_time() - start)
    return run


def per_tile(benchmark, cpu_seconds):
    """tiles/s from the median wall time; CPU ms per tile: what it costs on a shared machine."""
    tiles = BATCH * BATCHES
    benchmark.extra_info["tiles_per_s"] = round(tiles / benchmark.stats.stats.median, 1)
    benchmark.extra_info["cpu_ms_per_tile"] = round(1e3 * float(np.median(cpu_seconds)) / tiles, 2)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_training_step(benchmark, config):
    c = CONFIGS[config]
    benchmark.group = config
    benchmark.extra_info["baseline"] = True
    keras.utils.set_random_seed(0)
    model = compile_unet(build_unet(base_filters=c["base_filters"], depth=c["depth"], dropout=0.0),
                         optimizer="adam")
    batch = next(iter(make_dataset(*data(), tile_size=c["tile_size"], depth=c["depth"], batch_size=BATCH)))
    model.train_on_batch(*batch[:2], sample_weight=batch[2])  # build and trace outside the timing

    def steps():
        for _ in range(BATCHES):
            model.train_on_batch(batch[0], batch[1], sample_weight=batch[2])

    cpu_seconds = []
    benchmark.pedantic(timed(steps, cpu_seconds), rounds=3, iterations=1)
    per_tile(benchmark, cpu_seconds)


@pytest.mark.parametrize("sampler", ["fast", "plain"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_pipeline(benchmark, config, sampler):
    c = CONFIGS[config]
    benchmark.group = config
    images, labels = data()
    dataset = make_dataset(images, labels, tile_size=c["tile_size"], depth=c["depth"], batch_size=BATCH,
                           sampler=sampler)
    iterator = iter(dataset)
    for _ in range(3):  # decode, cache, spline coefficients of the images; fill the prefetch buffer
        next(iterator)

    def pull():
        for _ in range(BATCHES):
            next(iterator)

    cpu_seconds = []
    benchmark.pedantic(timed(pull, cpu_seconds), rounds=3, iterations=1)
    per_tile(benchmark, cpu_seconds)


class Pacer(keras.callbacks.Callback):
    """Holds `fit` (running in a thread) after every `steps` batches until the benchmark
    asks for the next round: rounds of steady-state training, without fit's start-up and
    the iterator's teardown (tf.data sometimes takes ~0.5 s to stop an autotuned map)."""

    def __init__(self, steps):
        super().__init__()
        self.steps, self.go, self.done = steps, threading.Semaphore(0), threading.Semaphore(0)

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.steps == 0:
            self.done.release()
            self.go.acquire()

    def next_round(self):
        self.go.release()
        self.done.acquire()


@pytest.mark.parametrize("source", ["cached-tiles", "live-pipeline"])
def test_fit_tutorial(benchmark, source):
    """End to end, the cores shared: `model.fit` of the tutorial model on the live pipeline
    vs on tiles computed beforehand (baseline). The ratio is what augmenting on the fly
    costs the training wall time on this machine."""
    import tensorflow as tf

    c = CONFIGS["tutorial"]
    benchmark.group = "fit-tutorial"
    benchmark.extra_info["baseline"] = source == "cached-tiles"
    keras.utils.set_random_seed(0)
    model = compile_unet(build_unet(base_filters=c["base_filters"], depth=c["depth"], dropout=0.0),
                         optimizer="adam")
    live = make_dataset(*data(), tile_size=c["tile_size"], depth=c["depth"], batch_size=BATCH)
    if source == "cached-tiles":
        tiles = [tf.concat(parts, 0) for parts in zip(*live.take(BATCHES))]
        dataset = tf.data.Dataset.from_tensor_slices(tuple(tiles)).batch(BATCH).repeat().prefetch(2)
    else:
        dataset = live
    rounds, pacer = 5, Pacer(BATCHES)
    fit = threading.Thread(target=model.fit, args=(dataset,), kwargs=dict(
        steps_per_epoch=BATCHES * (rounds + 2), epochs=1, verbose=0, shuffle=False, callbacks=[pacer]))
    fit.start()
    pacer.done.acquire()  # the first round traces the step and fills the pipeline
    cpu_seconds = []
    benchmark.pedantic(timed(pacer.next_round, cpu_seconds), rounds=rounds, iterations=1)
    model.stop_training = True
    pacer.go.release()
    fit.join()
    per_tile(benchmark, cpu_seconds)
