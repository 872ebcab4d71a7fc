"""Benchmarks of the U-Net training step: the cost of the pixel weights, and memory.

    python -m pytest benchmarks/test_model.py --benchmark-enable
    UNET_REF_BENCH_MEMORY=1 python -m pytest benchmarks/test_model.py --benchmark-enable -k memory -s

1. Train-step time of the tutorial-sized network (8 filters, depth 3, 156 px tiles, batch 4)
   with the weighted loss (`compile_unet` + per-pixel sample_weight) against the same
   network with Keras' built-in SparseCategoricalCrossentropy and no weights (baseline).
2. Peak memory of ONE training step of the paper's network (64 filters, depth 4, 572 px
   tiles) at batch 1 and 4, float32 / XLA (`jit_compile=True`) / mixed_float16: each in a
   fresh subprocess, `ru_maxrss` after the step minus `ru_maxrss` after building and
   compiling the model. This is what ran the notebook out of GPU memory (batch 4 of 572
   tiles). Long (minutes) and memory hungry: only with UNET_REF_BENCH_MEMORY=1.

Measured 2026-11-25 on 2 cores, no GPU, TensorFlow 2.21 CPU, shared with other jobs
(load 4-11, so times are noisy; memory is not):

- Weighting overhead: weighted / unweighted train step 0.52-0.99x in four pytest runs and
  0.72-1.22x in interleaved runs where two identical models differ by up to 10%: not
  measurable. It adds one multiply per output pixel (4 x 68 x 68) to a step of convolutions.
- One paper training step (572 px), MB above the built model (~735 MB), time of step 2:
  float32 batch 1: 1171-1190 MB, 9.5 s (idle); batch 4: 4038 MB, 85 s (loaded);
  XLA batch 1: 1906 MB, 38 s; batch 4: 5561 MB, 83 s (XLA on CPU: more memory, no gain);
  mixed_float16 batch 1: 1288 MB, 145 s; batch 4: 2562 MB, 258 s (float16 activations
  save 37% at batch 4; slow: no float16 oneDNN kernels without AVX-512).
  The float32 activations alone are 781 MB per tile (3122 MB at batch 4).
"""
import json
import os
import resource
import sys
import time

import numpy as np
import pytest

TUTORIAL = dict(base_filters=8, depth=3, tile=156, batch=4)


def _batch(batch, tile, depth, seed=0):
    from unet_ref.sizes import output_size

    m = output_size(tile, depth)
    rng = np.random.default_rng(seed)
    x = rng.random((batch, tile, tile, 1), dtype=np.float32)
    labels = rng.integers(0, 2, (batch, m, m)).astype(np.int32)
    weights = rng.uniform(1, 11, (batch, m, m)).astype(np.float32)
    return x, labels, weights


def _model(weighted):
    import keras

    from unet_ref.loss import compile_unet
    from unet_ref.model import build_unet

    keras.utils.set_random_seed(0)
    model = build_unet(base_filters=TUTORIAL["base_filters"], depth=TUTORIAL["depth"], dropout=0.0)
    if weighted:
        return compile_unet(model, optimizer="sgd", pixel_accuracy=(weighted == "with accuracy"))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=3e-3, momentum=0.99),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("weighted", [False, "no accuracy", "with accuracy"],
                         ids=["builtin_unweighted", "weighted", "weighted+pixel_accuracy"])
def test_train_step_weighting_overhead(benchmark, weighted):
    pytest.importorskip("tensorflow")
    benchmark.group = "train step, 8 filters, depth 3, batch 4 x 156 px"
    x, labels, weights = _batch(TUTORIAL["batch"], TUTORIAL["tile"], TUTORIAL["depth"])
    model = _model(weighted)
    sample_weight = weights if weighted else None
    for _ in range(3):  # trace and warm up
        model.train_on_batch(x, labels, sample_weight=sample_weight)
    benchmark.extra_info["baseline"] = not weighted
    benchmark.pedantic(model.train_on_batch, args=(x, labels), kwargs=dict(sample_weight=sample_weight),
                       rounds=40, iterations=1, warmup_rounds=2)


# --- peak memory of one training step of the paper's network, each in a fresh process ---

MEMORY_CASES = [  # (batch, jit_compile, mixed precision)
    (1, False, False), (4, False, False), (1, True, False), (4, True, False), (1, False, True), (4, False, True),
]


def _activation_mb(model, batch, tile):
    """Sum of every layer's output size, float32: what the backward pass must keep."""
    import keras

    every_layer = keras.Model(model.input, [layer.output for layer in model.layers[1:]])
    shapes = every_layer.compute_output_shape((batch, tile, tile, 1))
    return 4 * sum(int(np.prod(shape)) for shape in shapes) / 2**20


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_memory(batch, jit_compile, mixed):
    """Run in a fresh process: one paper-configuration training step; returns a dict."""
    import keras

    from unet_ref.loss import compile_unet
    from unet_ref.model import build_unet

    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    model = compile_unet(build_unet(), optimizer="sgd", jit_compile=jit_compile)
    x, labels, weights = _batch(batch, 572, 4)
    before = _maxrss_mb()
    start = time.perf_counter()
    loss = model.train_on_batch(x, labels, sample_weight=weights, return_dict=True)["loss"]
    first = time.perf_counter() - start
    peak = _maxrss_mb()
    start = time.perf_counter()
    model.train_on_batch(x, labels, sample_weight=weights)
    second = time.perf_counter() - start
    return dict(step_peak_mb=round(peak - before), after_build_mb=round(before), first_step_s=round(first, 1),
                second_step_s=round(second, 1), activations_f32_mb=round(_activation_mb(model, batch, 572)),
                loss_finite=bool(np.isfinite(loss)))


@pytest.mark.skipif(not os.environ.get("UNET_REF_BENCH_MEMORY"), reason="long (minutes), several GB: set UNET_REF_BENCH_MEMORY=1")
@pytest.mark.parametrize("batch, jit_compile, mixed", MEMORY_CASES,
                         ids=[f"batch{b}{'-xla' if j else ''}{'-mixed_float16' if m else ''}" for b, j, m in MEMORY_CASES])
def test_peak_memory_of_paper_train_step(benchmark, fresh_process, batch, jit_compile, mixed):
    benchmark.group = "one training step, paper network (64 filters, depth 4, 572 px), fresh process"
    benchmark.extra_info["baseline"] = (batch, jit_compile, mixed) == (1, False, False)
    result = benchmark.pedantic(fresh_process, args=(__file__, [batch, jit_compile, mixed]), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["loss_finite"]


if __name__ == "__main__":  # the subprocess of test_peak_memory_of_paper_train_step
    print(json.dumps(measure_memory(*json.loads(sys.argv[1]))))
