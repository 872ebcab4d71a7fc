"""Overlap-tile prediction and exact weight maps of volumes larger than memory, block by
block on a Dask cluster, from zarr / OME-Zarr to OME-Zarr.

Why blockwise is exact. A valid-convolution U-Net computes each output voxel from the
input within `margin` voxels of it and from nothing else, once its tiles start on the
pooling grid (chapter 6). So the output is cut into blocks whose origins lie on that grid;
each block is predicted from the block plus its margin read from the volume (mirrored only
at the volume's own borders, as `predict_tiled` mirrors a whole image) with the overlap-tile
code of `unet_ref.tiling`, and the blocks side by side are `predict_tiled` on the whole
volume: the same computation, not an approximation. The weight map likewise: a voxel's
border term is below the tolerance unless its two nearest cells lie within
`weight_context(w0, sigma)` of it, so a block read with that much context has the whole
volume's weights. Its cells must be the whole volume's (a U-shaped cell whose arms meet
outside one block's context is still one cell): a binary mask is labelled block by block,
the labels that touch across block faces are merged, and the class weights come from
counts over the whole volume.

How it runs. Each block is one task on a `dask.distributed` cluster: it reads its region
from the zarr input, computes, writes exactly its block (one chunk of the output), then a
marker that the block is done. A job runs in OUT.partial/ (its settings, the output being
written, the markers, temporary labels) and is renamed to OUT when every block is done;
the same command run again after an interruption finishes the blocks without a marker.
The model travels to the workers as the bytes of its .keras file and is loaded once per
worker process; every worker gets its share of its machine's cores for TensorFlow's and
the weight-map kernel's threads, so that the workers do not oversubscribe the cores.
"""
import collections
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import pathlib
import shutil

import numpy as np

try:
    import distributed
    import zarr
except ImportError as error:
    raise ImportError(f'blockwise prediction needs the zarr extra ({error.name} is missing): '
                      f'pip install -e ".[zarr]"') from error

from unet_ref.checks import check_int, check_real, check_spacing, per_axis
from unet_ref.files import read_json, write_json
from unet_ref.images import check_normalize, mirror_pad, normalize_image
from unet_ref.masks import CELL_CLASS, cells_from_mask, check_labels, label_cells
from unet_ref.omezarr import create_image, open_image
from unet_ref.devices import available_cores
from unet_ref.reference import weight_context
from unet_ref.weights import weight_map

__all__ = ["predict_blockwise", "weight_map_blockwise", "dask_client", "block_grid", "DEFAULT_BLOCK"]

# Default block side (px) per number of spatial axes: a 2048^2 or 256^3 float32 block is
# 16 or 64 MiB, large beside the margin (92 px for the paper's network) and a convenient
# chunk for a viewer. Prediction rounds it to whole tiles.
DEFAULT_BLOCK = {2: 2048, 3: 256}
# the weight map's tolerance, relative to the smallest class weight; half of 1e-6 leaves
# room for the final float32 rounding within 1e-6 relative
RELATIVE_TOLERANCE = 0.5e-6


# --- blocks ------------------------------------------------------------------------------


def block_grid(shape, block):
    """The blocks of `block` px per axis that cut an array of `shape` (the last ones
    ragged): a list of (index, slices) in reading order.

    >>> *_, (index, slices) = block_grid((5, 3), (2, 3))
    >>> index, slices
    ((2, 0), (slice(4, 5, None), slice(0, 3, None)))
    """
    counts = [math.ceil(n / b) for n, b in zip(shape, block)]
    return [(index, tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, block, shape)))
            for index in itertools.product(*map(range, counts))]


def _check_block(block_size, ndim, grid=None):
    """block_size (an int or one per axis) as a tuple of positive ints, multiples of `grid`."""
    block = tuple(check_int(b, "block_size", minimum=1) for b in per_axis(block_size, ndim, "block_size"))
    for b, g in zip(block, grid or (1,) * ndim):
        if b % g:
            below, above = max(g, b - b % g), b - b % g + g
            raise ValueError(f"block_size {b} is not a multiple of the network's pooling grid ({g} px), so blocks "
                             f"would pool other voxels than the whole volume; use {below} or {above}")
    return block


def _read_mirrored(image, starts, stops):
    """The voxels of `image` (a `ZarrImage`) at spatial px [start, stop) per axis of the
    volume mirrored beyond its borders as `mirror_pad` mirrors it: (*S) or (*S, C)."""
    index = []  # per spatial axis: the voxel each px of the region reads
    for axis, start, stop in zip(image.spatial, starts, stops):
        n = image.shape[axis]
        before, after = max(0, -start), max(0, stop - n)
        index.append(mirror_pad(np.arange(n), (before,), (after,))[start + before:stop + before])
    box, take = [slice(None)] * len(image.shape), [np.arange(n) for n in image.shape]
    for axis, i in zip(image.spatial, index):
        box[axis], take[axis] = slice(i.min(), i.max() + 1), i - i.min()  # read the bounding box once
    region = image.open()[tuple(box)][np.ix_(*take)]
    return region if image.channel is None else np.moveaxis(region, image.channel, -1)


# --- the cluster -------------------------------------------------------------------------


@contextlib.contextmanager
def dask_client(workers=None, scheduler=None, *, memory_limit="auto", dashboard=False, timeout=None):
    """A `distributed.Client`: of the scheduler at `scheduler` (an address such as
    tcp://10.0.0.5:8786), or of a local cluster of `workers` processes (default: one per
    core), one task at a time each, listening on 127.0.0.1 only, with `memory_limit` per
    worker ("auto": an equal share of the memory; or bytes, or a string such as "2GB") and
    the dashboard at 127.0.0.1:8787 if `dashboard`. Closed (the local cluster stopped) on
    exit. ConnectionError naming `scheduler` when no scheduler answers within `timeout` s
    (default: dask's distributed.comm.timeouts.connect)."""
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, **({"timeout": timeout} if timeout else {}))
        except Exception as error:  # OSError, TimeoutError, ValueError for a malformed address
            raise ConnectionError(f"scheduler {scheduler}: cannot connect ({type(error).__name__}: {error})") from None
        with client:
            yield client
        return
    workers = available_cores() if workers is None else check_int(workers, "workers", minimum=1)
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:8787" if dashboard else None,
                                       memory_limit=memory_limit, silence_logs=logging.ERROR)
    with cluster, distributed.Client(cluster) as client:
        yield client


def _host_tasks(client):
    """{host: how many tasks its workers run at once (their dask threads)}."""
    tasks = collections.Counter()
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        tasks[worker["host"]] += worker["nthreads"]
    return dict(tasks)


def _task_cores(host_tasks, worker=None):
    """Cores for one task of this worker: its machine's cores shared by the tasks that run
    on the machine at once, so that the workers do not oversubscribe it."""
    worker = worker or distributed.get_worker()
    return max(1, available_cores() // host_tasks.get(distributed.comm.get_address_host(worker.address), 1))


class _ModelPlugin(distributed.WorkerPlugin):
    """Loads the model from its .keras bytes once per worker process, after giving
    TensorFlow the worker's share of the cores."""

    def __init__(self, data, host_tasks):
        self.data, self.host_tasks, self.model = data, host_tasks, None

    def setup(self, worker):
        from unet_ref.devices import import_tensorflow_quietly
        from unet_ref.runs import load_run

        import_tensorflow_quietly()  # one line per error, not TensorFlow's start-up chatter from every worker
        import tensorflow as tf

        threads = _task_cores(self.host_tasks, worker) * worker.state.nthreads
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow runs already in this process (an earlier job): it keeps its threads
            pass
        path = os.path.join(worker.local_directory, f"unet_ref-{hashlib.sha256(self.data).hexdigest()[:16]}.keras")
        with open(path, "wb") as f:
            f.write(self.data)
        self.model, _ = load_run(path)

    def teardown(self, worker):
        self.model = None


# --- a job's folder ------------------------------------------------------------------------


class _Job:
    """OUT.partial/: job.json (the settings), result.ome.zarr (the output being written),
    done-PHASE/ (one marker per finished block, holding its summary), cells/ (temporary
    labels); renamed to OUT when done. A folder holding another job's settings is refused."""

    def __init__(self, out, source, settings):
        """Check `out` against the input and an interrupted job's settings; writes nothing."""
        self.out = pathlib.Path(out)
        self.dir = self.out.with_name(self.out.name + ".partial")
        self.result = self.dir / "result.ome.zarr"
        self.settings = json.loads(json.dumps(settings))  # as JSON reads it back: lists, not tuples
        real = {os.path.realpath(p) for p in (out, self.dir)}
        source = os.path.realpath(source)
        if any(p == source or p.startswith(source + os.sep) or source.startswith(p + os.sep) for p in real):
            raise ValueError(f"out {out} would write over the input {source}: choose another out")
        if self.out.exists():
            raise FileExistsError(f"out {out} exists: choose another out or delete it")
        if (self.dir / "job.json").exists():
            previous = read_json(self.dir / "job.json")
            changed = sorted(k for k in self.settings.keys() | previous.keys()
                             if previous.get(k) != self.settings.get(k))
            if changed:
                raise ValueError(f"{self.dir} holds an interrupted job with other settings ({', '.join(changed)} "
                                 f"changed): run the same command again to finish it, or delete {self.dir}")
        elif self.dir.exists():
            raise FileExistsError(f"{self.dir} exists and holds no job (no job.json): delete it")

    def start(self):
        """Create the folder and its job.json, unless the job resumes."""
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            write_json(self.dir / "job.json", self.settings)

    def markers(self, phase):
        folder = self.dir / f"done-{phase}"
        folder.mkdir(exist_ok=True)
        return folder

    def done(self, phase):
        """{block index: summary} of the blocks of `phase` with a marker."""
        return {tuple(int(i) for i in m.stem.split("-")): read_json(m) for m in self.markers(phase).glob("*.json")}

    def marker(self, phase, index):
        return str(self.markers(phase) / ("-".join(map(str, index)) + ".json"))

    def finish(self):
        os.replace(self.result, self.out)
        shutil.rmtree(self.dir)


def _run(client, job, phase, task, blocks, progress, **kwargs):
    """Run `task(index, slices, marker, **kwargs)` on the cluster for every block without a
    marker of `phase` (every block if `job` is None); -> {index: the task's summary}."""
    from tqdm.auto import tqdm

    done = job.done(phase) if job else {}
    todo = [(index, slices) for index, slices in blocks if index not in done]
    markers = [job.marker(phase, index) if job else None for index, _ in todo]
    futures = client.map(task, [i for i, _ in todo], [s for _, s in todo], markers, pure=False, **kwargs)
    try:
        with tqdm(total=len(blocks), initial=len(blocks) - len(todo), desc=phase, unit="block",
                  disable=not progress if progress is not None else None) as bar:
            for future in distributed.as_completed(futures):
                index, summary = future.result()
                done[index] = summary
                bar.update()
    finally:
        client.cancel(futures)
    return done


@contextlib.contextmanager
def _client_or_local(client):
    """`client` itself, or the `dask_client(...)` context it is, entered (default: a local
    cluster)."""
    if isinstance(client, distributed.Client):
        yield client
    else:
        with client or dask_client() as entered:
            yield entered


# --- prediction ----------------------------------------------------------------------------


def _model_file(model):
    """A run folder or a .keras file -> the .keras file's path."""
    path = pathlib.Path(model)
    return path / "model.keras" if path.is_dir() else path


def predict_blockwise(model, source, out, *, block_size=None, tile_size=None, batch_size=1, normalize=None,
                      client=None, progress=None):
    """P(cell) of a zarr / OME-Zarr image, predicted block by block on a Dask cluster and
    written as an OME-Zarr image: equal to ``predict_tiled(model, image)[..., 1]`` on the
    whole image.

    Parameters
    ----------
    model : str or path
        A training run folder or a .keras file (it is sent to the workers as a file).
    source : str or path
        A zarr array or an OME-Zarr image with the model's 2 or 3 spatial axes (and a
        channel axis for a model of several input channels).
    out : str or path
        The OME-Zarr image to write: float32 on the source's spatial axes, with its scale,
        chunks of one block. Never an existing path nor the source.
    block_size : int or tuple of int, optional
        Output px per block and axis, a multiple of the pooling grid (2**depth). Default: a
        multiple of the tile's stride near `DEFAULT_BLOCK`.
    tile_size : int or tuple of int, optional
        As in `predict_tiled` (default: the run's, else the largest that fits the memory
        budget).
    batch_size : int
        Tiles per forward pass (default 1: the workers are the parallelism, and one tile
        at a time bounds a worker's memory).
    normalize : str or tuple, optional
        The intensity rule (`unet_ref.images`); default: the run's, as in training. A
        percentile rule takes the percentiles of the whole volume (`volume_percentiles`),
        never of one block.
    client : distributed.Client or dask_client(...), optional
        The cluster to run on, or a `dask_client` context, started once the arguments are
        checked; default: a local cluster for this call.
    progress : bool, optional
        Show a progress bar over blocks (default: tqdm's automatic choice).

    Returns
    -------
    str : `out`

    Notes
    -----
    When the block size is a multiple of the tile's stride, every tile is a tile of
    `predict_tiled` on the whole image with the same tile size: bitwise equal to it with
    batch size 1 and as many TensorFlow threads (a worker's share of its cores). Otherwise
    the same values within float32 rounding (a few 1e-7), as between two tile sizes:
    oneDNN's convolutions round differently for other tile shapes, batch sizes and thread
    counts. Intensities are normalised by a rule that is the same for every voxel, never
    per block.
    """
    from unet_ref.model import unet_pool_sizes
    from unet_ref.runs import load_run
    from unet_ref.sizes import output_size
    from unet_ref.tiling import choose_tile_size, plan_tiles

    image = open_image(source, "source")
    keras_model, config = load_run(model)
    ndim, in_channels = len(keras_model.input_shape) - 2, keras_model.input_shape[-1]
    pool_sizes = unet_pool_sizes(keras_model)  # per level, one factor per axis
    if len(image.spatial) != ndim:
        raise ValueError(f"source {source} has {len(image.spatial)} spatial axes; this model predicts {ndim}-D images")
    channels = 1 if image.channel is None else image.shape[image.channel]
    if channels != in_channels:
        raise ValueError(f"source {source} has {channels} channel(s) but the model takes {in_channels}")
    grid = tuple(math.prod(p) for p in zip(*pool_sizes)) if pool_sizes else (1,) * ndim  # per axis
    target = [min(DEFAULT_BLOCK[ndim], n) for n in image.spatial_shape]
    block = _check_block(block_size, ndim, grid) if block_size is not None else None
    tile_size = tile_size or (config.predict_tile_size if config else None)
    if tile_size:
        tile = tuple(check_int(t, "tile_size", minimum=1) for t in per_axis(tile_size, ndim, "tile_size"))
        output_size(tile, pool_sizes=pool_sizes)  # a ValueError naming the nearest valid sizes
    else:
        tile = choose_tile_size(keras_model, *(block or target))
    stride = plan_tiles(target, tile, pool_sizes=pool_sizes).stride
    if 0 in stride:
        raise ValueError(f"tile_size {tile} is too small: its output is narrower than the pooling grid {grid}")
    if block is None:  # whole tiles: every block's tiles are the whole image's
        block = tuple(s * max(1, round(t / s)) for s, t in zip(stride, target))
    batch = check_int(batch_size, "batch_size", minimum=1)
    rule = check_normalize(normalize or (config.normalize if config else "dtype"))
    if rule[0] == "percentile":  # of the whole volume: as the one image predict_tiled would read
        rule = ("range", *volume_percentiles(image, rule[1:]))
    data = _model_file(model).read_bytes()
    settings = dict(command="predict", source=os.path.realpath(source), shape=image.shape, dtype=str(image.dtype),
                    model=hashlib.sha256(data).hexdigest(), block=block, tile=tile, batch=batch, normalize=rule)
    job = _Job(out, source, settings)
    with _client_or_local(client) as client:
        job.start()
        if not job.result.exists():
            create_image(job.result, image, block, name="P(cell)")
        name = f"unet_ref-model-{settings['model'][:16]}"
        client.register_plugin(_ModelPlugin(data, _host_tasks(client)), name=name)
        try:
            _run(client, job, "predict", _predict_block, block_grid(image.spatial_shape, block), progress,
                 image=image, target=str(job.result / "0"), tile=tile, pool_sizes=pool_sizes, batch=batch,
                 rule=rule, plugin=name)
        finally:
            client.unregister_worker_plugin(name)
    job.finish()
    return str(out)


def volume_percentiles(image, percentiles):
    """np.percentile of a whole integer zarr image at `percentiles`, exactly, from the counts of
    its values read block by block (the volume need not fit in memory). ValueError for
    floats, whose percentiles would need the whole volume sorted: give a range rule."""
    array = image.open()
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"the percentile rule needs the percentiles of the whole {array.dtype} volume; give "
                         f"--normalize range:MIN,MAX (normalize=('range', MIN, MAX)) for a float volume")
    values, counts = np.empty(0, array.dtype), np.empty(0, np.int64)
    for _, block in block_grid(array.shape, array.chunks):
        new_values, new_counts = np.unique(array[block], return_counts=True)
        values, inverse = np.unique(np.concatenate([values, new_values]), return_inverse=True)
        counts = np.bincount(inverse, np.concatenate([counts, new_counts])).astype(np.int64)
    ends = np.cumsum(counts)  # order statistic k is the first value whose count reaches k + 1
    result = []
    for q in percentiles:  # numpy's "linear" method between the two order statistics around it
        position = (ends[-1] - 1) * q / 100
        below, above = (values[np.searchsorted(ends, min(k, ends[-1] - 1), side="right")]
                        for k in (int(position), int(position) + 1))
        result.append(float(np.percentile(np.array([below, above], np.float64), (position - int(position)) * 100)))
    return tuple(result)


def _predict_block(index, block, marker, *, image, target, tile, pool_sizes, batch, rule, plugin):
    """One task: read the block plus its context, predict it, write it, mark it done."""
    from unet_ref.tiling import plan_tiles, predict_padded

    model = distributed.get_worker().plugins[plugin].model
    shape = tuple(s.stop - s.start for s in block)
    plan = plan_tiles(shape, tile, pool_sizes=pool_sizes)
    starts = [s.start - before for s, (before, _) in zip(block, plan.padding)]
    stops = [s.stop + after for s, (_, after) in zip(block, plan.padding)]
    padded = normalize_image(_read_mirrored(image, starts, stops), "source", normalize=rule)  # one rule for all
    padded = padded[..., None] if image.channel is None else padded  # (*S + padding, C)
    probabilities = np.empty((*shape, model.output_shape[-1]), np.float32)
    predict_padded(model, padded, plan, probabilities, batch)
    zarr.open_array(target, mode="r+")[block] = probabilities[..., CELL_CLASS]
    write_json(marker, {})  # after the block's data: a block with a marker is complete
    return index, {}


# --- weight maps ---------------------------------------------------------------------------


def _balanced(n_background, n_cells):
    """`unet_ref.weights.balanced_class_weights` from the two counts instead of the array
    (tests hold them equal): w_c = 1 / class frequency, the rarer class weighing 1."""
    inv = [1.0 / n if n else 0.0 for n in (n_background, n_cells)]
    return inv[0] / max(inv), inv[1] / max(inv)


def _blocks_within(region, block):
    """(index, slices) of the blocks of size `block` that meet `region` (slices), each
    cut to the region."""
    ranges = [range(r.start // b, (r.stop - 1) // b + 1) for r, b in zip(region, block)]
    for index in itertools.product(*ranges):
        yield index, tuple(slice(max(r.start, i * b), min(r.stop, (i + 1) * b))
                           for i, r, b in zip(index, region, block))


def _read_cells(cells, region, block, offsets, mapping):
    """The whole volume's cell ids over `region`: each block's own labels (1..n) plus the
    block's offset, merged across block faces by `mapping` (None: not yet merged)."""
    ids = np.zeros([r.stop - r.start for r in region], np.int64)
    for index, part in _blocks_within(region, block):
        local = cells[part].astype(np.int64)
        where = tuple(slice(p.start - r.start, p.stop - r.start) for p, r in zip(part, region))
        ids[where] = np.where(local > 0, local + offsets[index], 0)
    return ids if mapping is None else mapping[ids]


def _label_block(index, block, marker, *, image, target, threshold, connectivity):
    """Pass 1 for a binary mask: label the block's cells on their own, write the labels;
    summary: label count, cell voxels, the mask's cell value (all blocks must agree)."""
    mask = image.open()[block]
    cells = cells_from_mask(mask, threshold=threshold, name="labels")
    labels = label_cells(cells, connectivity)
    zarr.open_array(target, mode="r+")[block] = labels
    value = None if threshold is not None or mask.dtype == bool or not cells.any() else mask.max().item()
    summary = {"labels": int(labels.max(initial=0)), "cells": int(np.count_nonzero(cells)), "value": value}
    write_json(marker, summary)
    return index, summary


def _count_block(index, block, marker, *, image):
    """Pass 1 for instance labels: check them, count the cell voxels."""
    labels = check_labels(image.open()[block], "labels")
    summary = {"cells": int(np.count_nonzero(labels))}
    write_json(marker, summary)
    return index, summary


def _face_pairs(index, block, marker, *, cells, shape, size, offsets, connectivity):
    """Pairs of labels that touch across the faces after this block: per axis, the 2 px
    slab across the face, 1 px wider than the block along the other axes, so that cells
    touching diagonally across an edge or corner of the block are in one slab too."""
    pairs = []
    for axis in range(len(shape)):
        if block[axis].stop == shape[axis]:
            continue
        slab = tuple(slice(b.stop - 1, b.stop + 1) if a == axis else slice(b.start, min(b.stop + 1, n))
                     for a, (b, n) in enumerate(zip(block, shape)))
        ids = _read_cells(zarr.open_array(cells, mode="r"), slab, size, offsets, None)
        joined = label_cells(ids > 0, connectivity)  # the slab's cells, connected within it
        found = np.unique(np.stack([joined[ids > 0], ids[ids > 0]]), axis=1)  # (component, id), sorted
        same = np.flatnonzero(found[0, 1:] == found[0, :-1])  # consecutive ids of one component
        pairs.append(np.stack([found[1, same], found[1, same + 1]]))
    return index, np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)


def _merged_ids(pairs, n):
    """ids 0..n -> the connected components of the graph of `pairs` (0 stays 0)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(pairs.shape[1], np.int8), (pairs[0], pairs[1])), shape=(n + 1, n + 1))
    return connected_components(graph, directed=False)[1].astype(np.int64)  # node 0 is component 0


def _weight_block(index, block, marker, *, image, target, cells, size, offsets, mapping, reach, options, host_tasks):
    """One task: read the block's labels plus `reach` px of context (clipped at the
    volume's borders: the weight map has no mirror), compute the weight map of the block,
    write it, mark it done."""
    region = tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, r, n in zip(block, reach, image.shape))
    if cells is None:
        labels = image.open()[region]
    else:
        labels = _read_cells(zarr.open_array(cells, mode="r"), region, size, offsets, mapping)
    window = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(block, region))
    w = weight_map(labels=labels, window=window, num_threads=_task_cores(host_tasks), **options)
    zarr.open_array(target, mode="r+")[block] = w
    write_json(marker, {})
    return index, {}


def weight_map_blockwise(source, out, *, w0=10.0, sigma=5.0, instances=False, threshold=None, connectivity=None,
                         spacing=None, block_size=None, client=None, progress=None):
    """The weight map of a zarr / OME-Zarr label volume, block by block on a Dask cluster,
    written as an OME-Zarr image: within 1e-6 relative of `weight_map` on the whole volume.

    Parameters
    ----------
    source : str or path
        A zarr array or an OME-Zarr image with 2 or 3 spatial axes: a binary mask (cells are
        its connected components over the whole volume) or, with `instances`, instance labels.
    out : str or path
        The OME-Zarr image to write (float32, the source's axes and scale, chunks of one
        block); never an existing path nor the source.
    w0, sigma, threshold, connectivity, spacing
        As in `weight_map`; `spacing` defaults to the OME-Zarr image's scale (else 1).
    instances : bool
        `source` holds instance labels (0 = background), not a mask.
    block_size : int or tuple of int, optional
        Voxels per block and axis (default `DEFAULT_BLOCK`).
    client, progress
        As in `predict_blockwise`.

    Returns
    -------
    str : `out`

    Notes
    -----
    Class weights are the balanced ones of the whole volume (counted in a first pass). Each
    block reads `weight_context(w0, sigma)` of context for a tolerance of half of 1e-6 of
    the smallest class weight, in the units of `spacing` (so more px along a finely sampled
    axis). Voxels whose two nearest cells lie within that context (all those with a border
    term above the tolerance) get bitwise the whole volume's weight; the others differ by
    less than the tolerance.
    """
    image = open_image(source, "labels")
    ndim = len(image.spatial)
    if image.channel is not None:
        raise ValueError(f"labels {source} has a channel axis; expected one label volume (y, x) or (z, y, x)")
    w0, sigma = check_real(w0, "w0", minimum=0), check_real(sigma, "sigma", above=0)
    spacing = check_spacing(spacing if spacing is not None else image.spacing, ndim)
    label_cells(np.zeros((1,) * ndim, bool), connectivity)  # checks connectivity before any work
    block = _check_block(block_size if block_size is not None else DEFAULT_BLOCK[ndim], ndim)
    blocks = block_grid(image.shape, block)
    settings = dict(command="weightmap", source=os.path.realpath(source), shape=image.shape, dtype=str(image.dtype),
                    block=block, w0=w0, sigma=sigma, instances=bool(instances), threshold=threshold,
                    connectivity=connectivity, spacing=spacing)
    job = _Job(out, source, settings)
    cells = offsets = mapping = None
    with _client_or_local(client) as client:
        job.start()
        if instances:
            counts = _run(client, job, "count", _count_block, blocks, progress, image=image)
        else:
            cells = str(job.dir / "cells")
            if not os.path.exists(cells):  # int32: each block's own labels, 1..n
                zarr.create_array(cells, shape=image.shape, chunks=block, dtype="int32", fill_value=0)
            counts = _run(client, job, "label", _label_block, blocks, progress, image=image, target=cells,
                          threshold=threshold, connectivity=connectivity)
            values = sorted({s["value"] for s in counts.values() if s["value"] is not None})
            if len(values) > 1:
                raise ValueError(f"labels {source} is not a binary mask: its cells hold the values {values[:6]}; pass "
                                 f"threshold= or instance labels with instances=True")
            offsets = np.zeros([len(range(0, n, b)) for n, b in zip(image.shape, block)], np.int64)
            total = 0
            for index, _ in blocks:  # reading order: the ids of block k follow those of block k - 1
                offsets[index], total = total, total + counts[index]["labels"]
            faces = _run(client, None, "merge", _face_pairs, blocks, progress, cells=cells, shape=image.shape,
                         size=block, offsets=offsets, connectivity=connectivity)
            mapping = client.scatter(_merged_ids(np.concatenate(list(faces.values()), axis=1), total), broadcast=True)
        n_cells = sum(s["cells"] for s in counts.values())
        wc = _balanced(math.prod(image.shape) - n_cells, n_cells)
        context = weight_context(w0, sigma, tolerance=RELATIVE_TOLERANCE * min(w for w in wc if w > 0))
        reach = tuple(math.ceil(context / s) for s in spacing)
        if not job.result.exists():
            create_image(job.result, image, block, name="weight map")
        options = dict(w0=w0, sigma=sigma, spacing=spacing, class_weights=wc)
        _run(client, job, "weights", _weight_block, blocks, progress, image=image, target=str(job.result / "0"),
             cells=cells, size=block, offsets=offsets, mapping=mapping, reach=reach, options=options,
             host_tasks=_host_tasks(client))
    job.finish()
    return str(out)
