"""Metrics against hand-computed cases and an independent pair-counting / entropy oracle."""
import csv
import json
import math

import numpy as np
import pytest
from scipy import ndimage

from unet_ref import evaluate
from unet_ref.evaluate import (
    as_cell_probability, cell_iou, instance_scores, pair_by_name, evaluate_image, evaluate_images, format_table, pixel_error, rand_error, table_rows,
    vi,
)
from unet_ref.files import write_csv, write_json


def _oracle(true_segments, predicted_segments):
    """Adapted Rand error and VI (split, merge) from the contingency table, by pair counting
    and entropies, over the pixels where the ground truth is a cell (label > 0)."""
    inside = true_segments > 0
    t, p = true_segments[inside], predicted_segments[inside]
    pairs = {}
    for a, b in zip(t.tolist(), p.tolist()):
        pairs[(a, b)] = pairs.get((a, b), 0) + 1
    n_ij = np.array(list(pairs.values()), dtype=float)
    t_i = np.array([np.sum(t == a) for a in np.unique(t)], dtype=float)
    s_j = np.array([np.sum(p == b) for b in np.unique(p)], dtype=float)
    same_both = np.sum(n_ij * (n_ij - 1) / 2)
    precision = same_both / np.sum(s_j * (s_j - 1) / 2)
    recall = same_both / np.sum(t_i * (t_i - 1) / 2)
    are = 1 - 2 * precision * recall / (precision + recall)

    def entropy(counts):
        q = counts / counts.sum()
        return -np.sum(q * np.log2(q))

    h_joint, h_true, h_pred = entropy(n_ij), entropy(t_i), entropy(s_j)
    return are, (h_joint - h_true, h_joint - h_pred)  # split = H(P|T), merge = H(T|P)


def _two_cells():
    """5 x 7 truth: a membrane column (x = 3) between two 5 x 3 cells."""
    truth = np.full((5, 7), 255, np.uint8)
    truth[:, 3] = 0
    return truth


def test_pixel_error_counts_misclassified_pixels_at_threshold_one_half():
    truth = _two_cells()
    probability = np.where(truth > 0, 0.9, 0.1).astype(np.float32)
    probability[0, 0] = 0.4  # a cell pixel called membrane
    probability[2, 3] = 0.5  # a membrane pixel called cell (>= 0.5 is cell)
    assert pixel_error(probability, truth) == pytest.approx(2 / 35)
    assert pixel_error(probability >= 0.5, truth) == pytest.approx(2 / 35)


def test_a_missed_membrane_merges_two_equal_cells_rand_0_375_and_one_bit_merge():
    # By hand: 30 cell pixels, cells of 15 and 15, one predicted segment of 30.
    # Pairs together in both = 2 * C(15, 2) = 210 = pairs in truth; pairs in prediction C(30, 2) = 435.
    # F = 2 * 210 / (210 + 435) -> error = 1 - 420 / 645; VI split 0, merge H(truth) = 1 bit.
    truth = _two_cells()
    everything_cell = np.ones(truth.shape, np.float32)
    assert rand_error(everything_cell, truth) == pytest.approx(1 - 420 / 645)
    split, merge = vi(everything_cell, truth)
    assert split == pytest.approx(0.0, abs=1e-12)
    assert merge == pytest.approx(1.0)


def test_a_spurious_closed_boundary_splits_a_cell():
    truth = _two_cells()
    prediction = truth > 0
    prediction[:, 1] = False  # splits the left cell (15 px) into 5 + 5, plus 5 boundary px
    are, (split, merge) = rand_error(prediction, truth), vi(prediction, truth)
    # By hand: the 5 boundary px join one side -> the left cell splits 10 + 5; it holds half
    # of the 30 cell px, so split = 0.5 * H(1/3, 2/3) bits and merge = 0.
    assert merge == pytest.approx(0.0, abs=1e-12)
    assert split == pytest.approx(0.5 * -(np.log2(1 / 3) / 3 + 2 * np.log2(2 / 3) / 3))
    # Against the oracle on the segmentation defined in the module docstring: boundary pixels
    # at x = 1 go to the nearest predicted cell; both neighbours are at distance 1, so take
    # skimage's choice from the output and only check the formula on it.
    true_segments, predicted_segments = evaluate._segmentations(prediction, truth, 0.5, 2)
    oracle_are, (oracle_split, oracle_merge) = _oracle(true_segments, predicted_segments)
    assert are == pytest.approx(oracle_are)
    assert (split, merge) == pytest.approx((oracle_split, oracle_merge), abs=1e-12)


def test_a_thick_but_closed_predicted_membrane_has_zero_rand_and_vi_but_pixel_error():
    truth = _two_cells()
    prediction = truth > 0
    prediction[:, 2:5] = False  # membrane 3 px wide instead of 1: same topology
    assert pixel_error(prediction, truth) == pytest.approx(10 / 35)
    assert rand_error(prediction, truth) == pytest.approx(0.0, abs=1e-12)
    assert vi(prediction, truth) == pytest.approx((0.0, 0.0), abs=1e-12)


def _nearest_cells(cells, connectivity):
    """Cells labelled by scipy (8 or 4 neighbours), and for every pixel the set of cell
    labels at the smallest Euclidean distance from it, by brute force over the cell pixels."""
    structure = ndimage.generate_binary_structure(2, 2 if connectivity in (None, 2) else 1)
    labels = ndimage.label(cells, structure)[0]
    ys, xs = np.nonzero(labels)
    yy, xx = np.indices(cells.shape)
    d2 = (yy.ravel()[:, None] - ys[None, :]) ** 2 + (xx.ravel()[:, None] - xs[None, :]) ** 2  # (pixels, cell pixels)
    nearest = d2 == d2.min(axis=1, keepdims=True)
    ids = labels[ys, xs]
    return labels, [set(ids[row].tolist()) for row in nearest], np.sqrt(d2.min(axis=1)).reshape(cells.shape)


@pytest.mark.parametrize("connectivity", [None, 1])
@pytest.mark.parametrize("seed", range(3))
def test_predicted_membrane_pixels_join_a_nearest_predicted_cell_however_far(seed, connectivity):
    # sparse predicted cells: membrane pixels up to ~10 px from the nearest cell
    rng = np.random.default_rng(seed)
    truth = rng.random((24, 30)) > 0.3
    smooth = ndimage.gaussian_filter(rng.normal(size=truth.shape), 2)
    probability = (smooth > np.quantile(smooth, 0.85)).astype(np.float32)  # 15 % cells
    _, segments = evaluate._segmentations(probability, truth, 0.5, connectivity)
    labels, nearest, distance = _nearest_cells(probability >= 0.5, connectivity)
    assert distance.max() > 4 and labels.max() >= 3
    cells = labels > 0
    # the same cells under other numbers: one scipy label per segment label and back
    pairs = set(zip(segments[cells].tolist(), labels[cells].tolist()))
    ours_to_scipy = dict(pairs)
    assert len(pairs) == len(ours_to_scipy) == len(set(ours_to_scipy.values())) == labels.max()
    for y, x in zip(*np.nonzero(~cells)):
        assert ours_to_scipy.get(int(segments[y, x])) in nearest[y * truth.shape[1] + x], (y, x)


def test_a_wide_predicted_membrane_inside_true_cells_costs_no_rand_error_or_vi():
    # True cells: columns 0-6 and 8-14 (membrane column 7). Predicted cells: columns 0-1 and
    # 13-14, 11 px of membrane between. By distance, columns 2-6 join the left predicted cell
    # and 8-12 the right one (column 7, equidistant, is not scored): the same segments.
    truth = np.full((5, 15), 255, np.uint8)
    truth[:, 7] = 0
    prediction = np.zeros((5, 15), bool)
    prediction[:, :2] = prediction[:, 13:] = True
    assert rand_error(prediction, truth) == pytest.approx(0, abs=1e-12)
    assert vi(prediction, truth) == pytest.approx((0, 0), abs=1e-12)


def test_rand_and_vi_match_the_pair_counting_oracle_on_random_segmentations():
    rng = np.random.default_rng(0)
    for _ in range(5):
        truth = rng.random((40, 50)) > 0.35
        probability = np.clip(truth + rng.normal(0, 0.45, truth.shape), 0, 1)
        true_segments, predicted_segments = evaluate._segmentations(probability, truth, 0.5, 2)
        assert (predicted_segments > 0).all() or not (probability >= 0.5).any()
        are, (split, merge) = _oracle(true_segments, predicted_segments)
        assert rand_error(probability, truth) == pytest.approx(are, abs=1e-12)
        assert vi(probability, truth) == pytest.approx((split, merge), abs=1e-9)


def test_cell_iou_by_hand_and_perfect_prediction_scores_zero_errors():
    truth = _two_cells()
    prediction = truth > 0
    prediction[0, :] = True  # adds membrane pixel (0, 3): 31 predicted, 30 true, overlap 30
    assert cell_iou(prediction, truth) == pytest.approx(30 / 31)
    perfect = evaluate_image(truth / 255.0, truth)
    assert perfect["pixel_error"] == 0 and perfect["cell_iou"] == 1
    assert perfect["rand_error"] == pytest.approx(0, abs=1e-12) and perfect["vi"] == pytest.approx(0, abs=1e-12)


def test_connectivity_one_separates_diagonal_neighbours():
    block = np.ones((2, 2), np.uint8)
    truth = np.block([[block, 0 * block], [0 * block, block]])  # two 2 x 2 cells touching at a corner
    merged = np.ones((4, 4), bool)
    assert rand_error(merged, truth, connectivity=2) == pytest.approx(0.0, abs=1e-12)  # 8-conn.: one cell
    # 4-conn.: cells of 4 + 4; pairs: truth 2 * 6 = 12, prediction C(8, 2) = 28, both 12.
    assert rand_error(merged, truth, connectivity=1) == pytest.approx(1 - 2 * 12 / (12 + 28))


@pytest.mark.parametrize(
    "prediction, truth, message",
    [
        (np.zeros((3, 3)), np.zeros((3, 4)), "differs from truth shape"),
        (np.zeros((2, 2, 3, 3)), np.zeros((2, 2, 3, 3)), r"must be 2-D \(H, W\) images or 3-D \(D, H, W\) volumes"),
        (np.zeros((2, 3, 3)), np.zeros((3, 3)), "must be 2-D .* or 3-D|differs from truth shape"),
        (np.full((3, 3), 1.5), np.zeros((3, 3)), r"probabilities in \[0, 1\]"),
        (np.zeros((3, 3), np.int64), np.zeros((3, 3)), "float probabilities"),
        (np.zeros((3, 3)), np.arange(9).reshape(3, 3), "binary mask"),
    ],
)
def test_bad_input_raises_an_error_naming_the_problem(prediction, truth, message):
    with pytest.raises((ValueError, TypeError), match=message):
        evaluate_image(prediction, truth)


def test_evaluate_images_means_table_json_and_csv(tmp_path):
    truth = _two_cells()
    results = evaluate_images([truth / 255.0, np.ones(truth.shape)], [truth, truth], names=["good", "merged"])
    assert results["mean"]["rand_error"] == pytest.approx((0 + 1 - 420 / 645) / 2)
    assert results["mean"]["pixel_error"] == pytest.approx(5 / 35 / 2)
    table = format_table(results)
    assert "merged" in table and table.splitlines()[-1].startswith("mean")
    write_json(tmp_path / "m.json", results)
    write_csv(tmp_path / "m.csv", table_rows(results))
    assert json.loads((tmp_path / "m.json").read_text())["mean"] == results["mean"]
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [r["name"] for r in rows] == ["good", "merged", "mean"]
    assert math.isclose(float(rows[1]["vi_merge"]), 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "m.json"]  # no temp file left
    with pytest.raises(ValueError, match="2 predictions but 1"):
        evaluate_images([truth, truth], [truth])


def test_saved_predictions_become_cell_probabilities_by_the_mask_rule():
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    assert np.array_equal(as_cell_probability(mask), [[0, 1], [1, 0]])
    softmax = np.stack([1 - mask / 255.0, mask / 255.0], axis=-1)  # (H, W, 2)
    assert np.array_equal(as_cell_probability(softmax), mask / 255.0)
    with pytest.raises(ValueError, match="p.png is not a binary mask"):
        as_cell_probability(np.array([[0, 3, 254, 255]], np.uint8), "p.png")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        as_cell_probability(np.array([[0.5, 1.5]]))


def test_instance_scores_count_matches_merges_and_splits_by_hand():
    truth = np.zeros((10, 20), np.int32)
    truth[1:9, 1:6], truth[1:9, 7:12], truth[1:9, 14:19] = 1, 2, 3  # three cells
    perfect = (truth > 0).astype(float)
    assert instance_scores(perfect, truth) == {"true_objects": 3, "predicted_objects": 3, "matched": 3,
                                               "precision": 1.0, "recall": 1.0, "f1": 1.0, "merges": 0, "splits": 0}
    merged = perfect.copy()
    merged[1:9, 6] = 1.0  # the gap between cells 1 and 2 closed: one object covers both
    merged[4, 14:19] = 0.0  # cell 3 cut in two pieces of 15 and 20 px
    scores = instance_scores(merged, truth)
    # objects: {1+2} (IoU 81/81 with neither: 40/81 < 0.5), two pieces of 3 (IoU 15/40, 20/40: not > 0.5)
    assert (scores["predicted_objects"], scores["matched"], scores["merges"], scores["splits"]) == (3, 0, 1, 1)
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.0
    # a binary truth mask gives the same cells (its components)
    assert instance_scores(merged, (truth > 0) * 255) == scores
    with pytest.raises(ValueError, match="differs from truth shape"):
        instance_scores(perfect, truth[:5])


def test_predictions_pair_with_truths_by_name_never_by_order():
    truths = [("20", "t20"), ("3", "t3")]
    # files of `unet-ref predict`: x_prob and x_mask; the probabilities are used
    predictions = [("3_mask", "m3"), ("20_prob", "p20"), ("20_mask", "m20"), ("3_prob", "p3")]
    assert pair_by_name(predictions, truths) == [("20", "p20", "t20"), ("3", "p3", "t3")]
    assert pair_by_name([("3_mask", "m3"), ("20", "p20")], truths) == [("20", "p20", "t20"), ("3", "m3", "t3")]
    with pytest.raises(ValueError, match=r"no prediction for \['3'\], no ground truth for \['4_prob'\]"):
        pair_by_name([("20_prob", "p20"), ("4_prob", "p4")], truths)


def test_volumes_are_scored_over_every_voxel_and_their_cells_in_3d():
    truth = np.zeros((6, 8, 8), np.uint8)
    truth[:, :, :3] = truth[:, :, 5:] = 255  # two slabs of cells, a membrane slab between them
    perfect = (truth > 0).astype(np.float32)
    assert evaluate_image(perfect, truth)["pixel_error"] == 0 and rand_error(perfect, truth) == 0
    merged = perfect.copy()
    merged[2, :, 3:5] = 1  # one voxel-thick bridge in one section: the two cells are one in 3-D
    assert pixel_error(merged, truth) == pytest.approx(16 / truth.size)
    n = 2 * 144  # truth voxels in cells; skimage counts pairs without self-pairs: sum n_ij^2 - n
    precision = (2 * 144**2 - n) / (n**2 - n)  # the one predicted cell holds both true ones; recall 1
    assert rand_error(merged, truth) == pytest.approx(1 - 2 * precision / (precision + 1))


def test_default_connectivity_is_every_neighbour_in_2d_and_3d():
    """One rule with unet_ref.masks: by default cells touching at a corner are one segment
    (8 neighbours in 2-D, 26 in 3-D); connectivity=1 separates them."""
    from unet_ref.evaluate import cell_segments

    plane = np.zeros((4, 4), bool)
    plane[0:2, 0:2] = plane[2:4, 2:4] = True
    volume = np.zeros((4, 4, 4), bool)
    volume[0:2, 0:2, 0:2] = volume[2:4, 2:4, 2:4] = True  # touching at one vertex only
    for mask in (plane, volume):
        assert cell_segments(mask).max() == 1 == cell_segments(mask, connectivity=mask.ndim).max()
        assert cell_segments(mask, connectivity=1).max() == 2
    truth = np.where(volume, 255, 0).astype(np.uint8)
    assert rand_error(volume, truth) == rand_error(volume, truth, connectivity=3)
