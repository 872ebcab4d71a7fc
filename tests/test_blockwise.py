"""Blockwise prediction and weight maps on a local Dask cluster of two worker processes.

The oracles are the in-process functions on the whole array: `predict_tiled` (run on a
worker too, where TensorFlow has the same threads as the blocks' tasks, for the bitwise
check) and `weight_map`. The cluster starts once for the module; volumes are small and the
models tiny, but blocks are ragged, smaller than the margin, and cells cross their borders.
"""
import sys

import numpy as np
import pytest

pytest.importorskip("distributed")
keras = pytest.importorskip("keras")

import cloudpickle  # noqa: E402  (comes with distributed)
import zarr  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402
from ome_zarr.writer import write_image  # noqa: E402

from unet_ref import blockwise  # noqa: E402
from unet_ref.blockwise import block_grid, dask_client, predict_blockwise, weight_map_blockwise  # noqa: E402
from unet_ref.model import build_unet  # noqa: E402
from unet_ref.tiling import predict_tiled  # noqa: E402
from unet_ref.weights import balanced_class_weights, weight_map  # noqa: E402

ANISOTROPIC = ((1, 2, 2), (2, 2, 2))  # pooling grid (2, 4, 4) px, margins (12, 20, 20)


@pytest.fixture(scope="module")
def client():
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    with dask_client(workers=2) as client:
        yield client


def _save(model, folder, name):
    path = folder / f"{name}.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def unet2d(tmp_path_factory):
    """Depth 2: margin 20 px, pooling grid 4 px; tile 92 has 52 px output tiles, stride 52."""
    keras.utils.set_random_seed(0)
    model = build_unet(base_filters=4, depth=2, dropout=0.0)
    return model, _save(model, tmp_path_factory.mktemp("models"), "unet2d")


@pytest.fixture(scope="module")
def unet3d(tmp_path_factory):
    keras.utils.set_random_seed(1)
    model = build_unet(base_filters=2, depth=None, ndim=3, pool_sizes=ANISOTROPIC, in_channels=2, dropout=0.0)
    return model, _save(model, tmp_path_factory.mktemp("models"), "unet3d")


def _zarr(path, array, chunks):
    zarr.create_array(path, data=array, chunks=chunks)
    return path


def _ome_zarr(path, array, axes, scale):
    write_image(array, str(path), axes=axes, scale=scale, scale_factors=())
    return path


def _result(path):
    return zarr.open_array(path / "0", mode="r")[:] if (path / "zarr.json").exists() else None


def _on_a_worker(client, model_file, image, **options):
    """predict_tiled of the whole image in a worker process, where TensorFlow runs with the
    threads the blocks' tasks had (the thread count changes oneDNN's rounding)."""
    def whole():
        from unet_ref.runs import load_run

        return predict_tiled(load_run(model_file)[0], image, **options)[..., 1]
    return client.submit(whole, pure=False).result()


# --- prediction ----------------------------------------------------------------------------


def test_blocks_of_whole_tiles_are_bitwise_predict_tiled_of_the_whole_image(client, unet2d, tmp_path):
    model, model_file = unet2d
    image = np.random.default_rng(0).integers(0, 256, (203, 157), dtype=np.uint8)
    source = _zarr(tmp_path / "image.zarr", image, chunks=(50, 50))  # chunks unrelated to the blocks
    # 104 x 52 px blocks: 2 x 1 output tiles of tile 92, ragged at the far edges (203 = 104 + 99, 157 = 3 * 52 + 1)
    predict_blockwise(model_file, source, tmp_path / "p.ome.zarr", block_size=(104, 52), tile_size=92, batch_size=1,
                      client=client, progress=False)
    result = _result(tmp_path / "p.ome.zarr")
    np.testing.assert_array_equal(result, _on_a_worker(client, model_file, image, tile_size=92, batch_size=1))
    # in this process TensorFlow has other threads: the same values within float32 rounding
    np.testing.assert_allclose(result, predict_tiled(model, image, tile_size=92)[..., 1], atol=1e-6)


def test_blocks_smaller_than_the_margin_and_off_the_tile_stride_agree_within_float32_rounding(client, unet2d, tmp_path):
    model, model_file = unet2d
    image = np.random.default_rng(1).random((61, 75)).astype(np.float32)
    source = _zarr(tmp_path / "image.zarr", image, chunks=(61, 75))
    predict_blockwise(model_file, source, tmp_path / "p.ome.zarr", block_size=(12, 16), client=client, progress=False)
    np.testing.assert_allclose(_result(tmp_path / "p.ome.zarr"), predict_tiled(model, image)[..., 1], atol=1e-6)


def test_a_percentile_rule_takes_the_percentiles_of_the_whole_volume_not_of_a_block(client, unet2d, tmp_path):
    # a 12-bit camera image whose blocks differ in brightness: per-block percentiles would differ
    from unet_ref.images import normalize_image
    from unet_ref.omezarr import open_image

    model, model_file = unet2d
    image = (np.random.default_rng(5).gamma(2, 300, (98, 70)) * np.linspace(0.3, 1, 70)).astype(np.uint16)
    source = _zarr(tmp_path / "image.zarr", image, chunks=(20, 30))
    assert blockwise.volume_percentiles(open_image(source), (1, 99.8)) == tuple(np.percentile(image, (1, 99.8)))
    predict_blockwise(model_file, source, tmp_path / "p.ome.zarr", block_size=(52, 52), tile_size=92,
                      normalize="percentile", client=client, progress=False)
    expected = predict_tiled(model, normalize_image(image, normalize="percentile"), tile_size=92)[..., 1]
    np.testing.assert_allclose(_result(tmp_path / "p.ome.zarr"), expected, atol=1e-6)
    with pytest.raises(ValueError, match="range:MIN,MAX"):  # float volumes: no exact percentiles blockwise
        blockwise.volume_percentiles(open_image(_zarr(tmp_path / "f.zarr", image / 4095.0, (50, 50))), (1, 99))


def test_the_default_block_is_whole_tiles_on_the_pooling_grid(client, unet2d, tmp_path, monkeypatch):
    monkeypatch.setitem(blockwise.DEFAULT_BLOCK, 2, 70)  # -> 52 px: one output tile of tile 92
    _, model_file = unet2d
    image = np.random.default_rng(2).integers(0, 2**16, (130, 90), dtype=np.uint16)
    source = _zarr(tmp_path / "image.zarr", image, chunks=(64, 64))
    predict_blockwise(model_file, source, tmp_path / "p.ome.zarr", tile_size=92, batch_size=1, client=client,
                      progress=False)
    np.testing.assert_array_equal(_result(tmp_path / "p.ome.zarr"),
                                  _on_a_worker(client, model_file, image, tile_size=92, batch_size=1))
    assert zarr.open_array(tmp_path / "p.ome.zarr" / "0").chunks == (52, 52)


def test_3d_ome_zarr_with_channels_and_anisotropic_pooling_equals_predict_tiled_and_keeps_axes_and_scale(
        client, unet3d, tmp_path):
    model, model_file = unet3d
    volume = np.random.default_rng(3).integers(0, 256, (2, 13, 37, 41), dtype=np.uint8)  # (c, z, y, x)
    source = _ome_zarr(tmp_path / "volume.ome.zarr", volume, "czyx", {"c": 1.0, "z": 4.0, "y": 0.5, "x": 0.5})
    # blocks on the (2, 4, 4) grid, smaller than the (12, 20, 20) margins, ragged on every axis
    predict_blockwise(model_file, source, tmp_path / "p.ome.zarr", block_size=(4, 12, 16), client=client,
                      progress=False)
    whole = predict_tiled(model, np.moveaxis(volume, 0, -1))[..., 1]
    np.testing.assert_allclose(_result(tmp_path / "p.ome.zarr"), whole, atol=1e-6)
    node = next(iter(Reader(parse_url(tmp_path / "p.ome.zarr"))()))  # as napari-ome-zarr reads it
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert node.metadata["coordinateTransformations"][0][0] == {"type": "scale", "scale": [4.0, 0.5, 0.5]}
    assert node.data[0].shape == (13, 37, 41) and node.data[0].chunksize == (4, 12, 16)


def test_block_sizes_off_the_pooling_grid_or_not_positive_and_invalid_tiles_are_refused(client, unet2d, tmp_path):
    _, model_file = unet2d
    source = _zarr(tmp_path / "image.zarr", np.zeros((40, 40), np.uint8), chunks=(40, 40))
    for size, message in ((30, "block_size 30 is not a multiple of the network's pooling grid (4 px)"),
                          ((0, 8), "block_size must be an integer >= 1, got 0"),
                          (8.5, "block_size must be an integer")):
        with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(").replace(")", r"\)")):
            predict_blockwise(model_file, source, tmp_path / "p.ome.zarr", block_size=size, client=client)
    with pytest.raises(ValueError, match="input size 91 on axis 0 is not valid .* nearest valid input sizes are 88 or 92"):
        predict_blockwise(model_file, source, tmp_path / "p.ome.zarr", tile_size=91, client=client)
    assert not list(tmp_path.glob("p.ome.zarr*"))


# --- weight maps ---------------------------------------------------------------------------


def _u_and_a_bar(shape=(64, 96)):
    """A U-shaped cell whose arms are 2 px apart along a 44 px slit and join at the bottom,
    far outside the context of the blocks at the top, and a bar beside it."""
    mask = np.zeros(shape, np.uint8)
    mask[4:56, 10:30] = 255
    mask[4:48, 19:21] = 0  # the slit
    mask[4:60, 36:44] = 255
    return mask


def _two_bars_14_px_apart():
    """With blocks 12 px wide and spacing 0.6 along x, the px at x = 23 (the last of a block)
    has one bar 1 px away and the other 14 px away: 9 units, within the border term's reach
    (12 units for sigma 2), but beyond 12 / 0.6 = 20 px only if the reach is not converted
    from units to px along x."""
    mask = np.zeros((32, 60), np.uint8)
    mask[:, 14:23] = mask[:, 37:46] = 255
    return mask


@pytest.mark.parametrize("mask, spacing", [(_u_and_a_bar(), None), (_u_and_a_bar(), (1.0, 0.6)),
                                           (_two_bars_14_px_apart(), (1.0, 0.6))], ids=["u", "u-aniso", "bars-aniso"])
def test_2d_mask_weights_equal_the_whole_images_with_cells_joined_outside_a_blocks_context(client, tmp_path, mask,
                                                                                          spacing):
    source = _zarr(tmp_path / "mask.zarr", mask, chunks=mask.shape)
    weight_map_blockwise(source, tmp_path / "w.ome.zarr", w0=10, sigma=2, spacing=spacing, block_size=(16, 12),
                         client=client, progress=False)
    whole = weight_map(mask, w0=10, sigma=2, spacing=spacing)
    np.testing.assert_allclose(_result(tmp_path / "w.ome.zarr"), whole, rtol=1e-6, atol=0)


def test_3d_instance_weights_take_the_spacing_from_the_ome_zarr_scale(client, tmp_path):
    labels = np.zeros((9, 30, 34), np.uint16)
    labels[1:8, 2:14, 3:30], labels[1:8, 15:28, 3:16], labels[2:9, 15:28, 17:31] = 5, 300, 9  # across block borders
    source = _ome_zarr(tmp_path / "labels.ome.zarr", labels, "zyx", {"z": 3.0, "y": 1.0, "x": 1.0})
    weight_map_blockwise(source, tmp_path / "w.ome.zarr", instances=True, w0=10, sigma=3, block_size=(4, 10, 10),
                         client=client, progress=False)
    whole = weight_map(labels=labels, w0=10, sigma=3, spacing=(3, 1, 1))
    np.testing.assert_allclose(_result(tmp_path / "w.ome.zarr"), whole, rtol=1e-6, atol=0)


@pytest.mark.parametrize("connectivity", [None, 1])
def test_3d_cells_touching_diagonally_across_a_block_corner_are_one_cell_with_full_connectivity(
        client, tmp_path, connectivity):
    mask = np.zeros((12, 12, 12), bool)
    mask[2:6, 2:6, 2:6] = mask[6:10, 6:10, 6:10] = True  # corner to corner at the block corner (6, 6, 6)
    mask[2:6, 8:11, 2:6] = True  # a third cell beside them
    source = _zarr(tmp_path / "mask.zarr", mask, chunks=(12, 12, 12))
    weight_map_blockwise(source, tmp_path / "w.ome.zarr", w0=10, sigma=2, connectivity=connectivity,
                         block_size=6, client=client, progress=False)
    whole = weight_map(mask, w0=10, sigma=2, connectivity=connectivity)
    np.testing.assert_allclose(_result(tmp_path / "w.ome.zarr"), whole, rtol=1e-6, atol=0)


def test_blocks_whose_cells_hold_different_values_are_not_a_binary_mask(client, tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[2:8, 2:8], mask[12:18, 12:18] = 1, 255  # each block alone is binary
    source = _zarr(tmp_path / "mask.zarr", mask, chunks=(20, 20))
    with pytest.raises(ValueError, match=r"not a binary mask: its cells hold the values \[1, 255\]"):
        weight_map_blockwise(source, tmp_path / "w.ome.zarr", block_size=10, client=client, progress=False)
    weight_map_blockwise(source, tmp_path / "t.ome.zarr", threshold=1, block_size=10, client=client, progress=False)
    np.testing.assert_allclose(_result(tmp_path / "t.ome.zarr"), weight_map(mask, threshold=1), rtol=1e-6)


def test_class_weights_from_counts_equal_balanced_class_weights():
    rng = np.random.default_rng(4)
    for cells in [rng.random((7, 9)) < p for p in (0.0, 0.03, 0.5, 0.97, 1.0)]:
        n = int(np.count_nonzero(cells))
        assert blockwise._balanced(cells.size - n, n) == balanced_class_weights(cells)


# --- jobs: resuming, refusing --------------------------------------------------------------


def test_an_interrupted_job_finishes_only_the_blocks_without_a_marker(client, tmp_path, monkeypatch):
    mask = _u_and_a_bar((40, 48))
    source, out = _zarr(tmp_path / "mask.zarr", mask, chunks=(40, 48)), tmp_path / "w.ome.zarr"
    options = dict(w0=10, sigma=2, block_size=(16, 16), client=client, progress=False)

    def interrupted(job):
        raise KeyboardInterrupt
    monkeypatch.setattr(blockwise._Job, "finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        weight_map_blockwise(source, out, **options)
    monkeypatch.undo()
    partial = tmp_path / "w.ome.zarr.partial"
    written = zarr.open_array(partial / "result.ome.zarr" / "0", mode="r+")
    (partial / "done-weights" / "0-1.json").unlink()  # as if killed before these blocks were written
    (partial / "done-weights" / "2-2.json").unlink()
    written[0:16, 16:32] = written[32:40, 32:48] = np.nan
    written[16:32, 0:16] = -1.0  # a block with its marker: it must not be computed again
    with pytest.raises(ValueError, match="holds an interrupted job with other settings \\(sigma changed\\)"):
        weight_map_blockwise(source, out, **dict(options, sigma=3))
    weight_map_blockwise(source, out, **options)
    assert not partial.exists()
    result, whole = _result(out), weight_map(mask, w0=10, sigma=2)
    assert (result[16:32, 0:16] == -1).all()
    result[16:32, 0:16] = whole[16:32, 0:16]
    np.testing.assert_allclose(result, whole, rtol=1e-6, atol=0)


def test_out_is_never_the_input_nor_an_existing_path(client, tmp_path):
    source = _zarr(tmp_path / "mask.zarr", np.zeros((8, 8), bool), chunks=(8, 8))
    (tmp_path / "taken").mkdir()
    for out, error, message in ((source, ValueError, "would write over the input"),
                                (source / "0", ValueError, "would write over the input"),
                                (tmp_path / "taken", FileExistsError, "exists: choose another out")):
        with pytest.raises(error, match=message):
            weight_map_blockwise(source, out, client=client)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.zarr", "taken"]


def test_the_blocks_cover_the_array_once():
    shape, block = (13, 7, 5), (4, 7, 2)
    count = np.zeros(shape, int)
    for _, slices in block_grid(shape, block):
        count[slices] += 1
    assert (count == 1).all() and len(block_grid(shape, block)) == 4 * 1 * 3


def test_a_local_cluster_listens_on_the_loopback_address_only(client):
    addresses = [client.scheduler.address, *client.scheduler_info(n_workers=-1)["workers"]]
    assert addresses and all(a.startswith("tcp://127.0.0.1:") for a in addresses)
    assert len(addresses) == 3
