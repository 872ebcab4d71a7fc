"""Quick segmentation metrics at one threshold: pixel error, adapted Rand error, VI, cell IoU.

These are a quick view for training logs, the demo and a first look: NOT the ISBI 2012
challenge's scores. The challenge (and the U-Net paper's Table 1) sweeps thresholds, keeps
the best, counts Rand pairs its own way and adds the warping error: that is
`unet_ref.challenge.challenge_scores`. Numbers from the two modules are comparable in
size, not identical.

The network predicts, per pixel, the probability of the *cell* class (class 1; class 0 is
membrane). Every metric here compares that prediction, thresholded at 0.5, with a binary
ground truth (read by the one mask rule of `unet_ref.masks`: cell = True / > 0):

- pixel error: the fraction of pixels whose class is wrong.
- adapted Rand error and variation of information (VI) compare *segmentations*, not
  classes. Both segmentations are the connected components of the cell class
  (by default every neighbour, the one rule of `unet_ref.masks`: 8 in 2-D, as the
  notebook's labelling, and 26 in (D, H, W) volumes; connectivity=1 joins only the
  4 / 6 face neighbours). They are restricted to the
  ground truth's cells ("foreground-restricted", as in ISBI 2012 and SNEMI3D): ground
  truth membrane pixels are not scored. Predicted membrane pixels inside a true cell are
  given to the nearest predicted cell (`skimage.segmentation.expand_labels`), so that a
  thick but closed predicted membrane is not counted as a split; only the topology
  (missed or spurious boundaries) is. (The challenge's V scores instead thin the
  proposal's membranes by a watershed.) Computed with
  `skimage.metrics.adapted_rand_error` and `skimage.metrics.variation_of_information`.
- cell IoU: |predicted cells AND true cells| / |predicted cells OR true cells|, over
  pixels (the Jaccard index of the cell class), an easy-to-read extra.

References: Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation
algorithms for connectomics", Front. Neuroanat. 9:142, 2015; Meila, "Comparing
clusterings - an information based distance", J. Multivariate Anal. 98, 2007.
"""
import numpy as np
from skimage.metrics import adapted_rand_error, variation_of_information
from skimage.segmentation import expand_labels

from unet_ref.checks import check_threshold
from unet_ref.masks import CELL_CLASS, cells_from_mask, label_cells, to_instance_labels

__all__ = [
    "cell_segments", "pixel_error", "rand_error", "vi", "cell_iou", "evaluate_image",
    "evaluate_images", "table_rows", "format_table", "as_cell_probability", "pair_by_name", "instance_scores",
    "METRICS",
]

METRICS = ("pixel_error", "rand_error", "vi_split", "vi_merge", "vi", "cell_iou")


def _predicted_cells(prediction, threshold):
    """Cell probabilities (or a bool mask) -> bool cells, prediction >= threshold."""
    prediction = np.asarray(prediction)
    if prediction.ndim not in (2, 3):
        raise ValueError(f"prediction must be a 2-D (H, W) image or a 3-D (D, H, W) volume, got shape {prediction.shape}")
    if prediction.size == 0:
        raise ValueError("prediction is empty")
    check_threshold(threshold)
    if prediction.dtype == bool:
        return prediction
    if np.issubdtype(prediction.dtype, np.floating):
        if not np.all(np.isfinite(prediction)) or prediction.min() < 0 or prediction.max() > 1:
            raise ValueError("prediction must be cell probabilities in [0, 1] (or a bool mask)")
        return prediction >= threshold
    raise TypeError(f"prediction must be float probabilities in [0, 1] or a bool mask, got dtype {prediction.dtype}")


def _as_cell_masks(prediction, truth, threshold):
    """(prediction, truth) -> two bool (H, W) (or (D, H, W)) cell masks, with clear errors."""
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.ndim not in (2, 3) or truth.ndim not in (2, 3):
        raise ValueError(
            f"prediction and truth must be 2-D (H, W) images or 3-D (D, H, W) volumes, got shapes "
            f"{prediction.shape} and {truth.shape}"
        )
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from truth shape {truth.shape}")
    return _predicted_cells(prediction, threshold), cells_from_mask(truth, name="truth")


def cell_segments(mask, connectivity=None):
    """Label the connected components of the cell class (1..n; 0 = membrane).

    `connectivity` as `unet_ref.masks.label_cells`: None (default) = every neighbour (8 in
    2-D, the notebook's choice; 26 in 3-D), 1 = the 4 (6) face neighbours.
    """
    return label_cells(np.asarray(mask, dtype=bool), connectivity)


def _segmentations(prediction, truth, threshold, connectivity):
    """Ground-truth cells (0 = membrane, ignored) and predicted cells covering every pixel."""
    predicted, true_cells = _as_cell_masks(prediction, truth, threshold)
    # Why expand: a predicted membrane pixel belongs to no predicted cell; giving it to the
    # nearest one stands in for the challenge's thinning of the proposal's membranes.
    predicted_segments = expand_labels(cell_segments(predicted, connectivity), distance=np.inf)
    return cell_segments(true_cells, connectivity), predicted_segments


def pixel_error(prediction, truth, threshold=0.5):
    """Fraction of pixels whose class (cell / membrane) differs from the ground truth.

    Parameters
    ----------
    prediction : (H, W) float array of cell probabilities in [0, 1], or bool cell mask.
    truth : (H, W) binary mask, cell = value > 0 (e.g. uint8 {0, 255} or bool).
    threshold : float, a pixel is cell where prediction >= threshold.

    Examples
    --------
    >>> pixel_error(np.array([[0.9, 0.2], [0.7, 0.4]]), np.array([[1, 1], [1, 0]]))
    0.25
    """
    predicted, true_cells = _as_cell_masks(prediction, truth, threshold)
    return float(np.mean(predicted != true_cells))


def rand_error(prediction, truth, threshold=0.5, connectivity=None):
    """Adapted Rand error (1 - Rand F-score), foreground-restricted; 0 is perfect.

    See the module docstring for the segmentation convention.
    """
    true_segments, predicted_segments = _segmentations(prediction, truth, threshold, connectivity)
    if not true_segments.any():
        return float("nan")  # no ground-truth cell: nothing to score
    are, _, _ = adapted_rand_error(true_segments, predicted_segments, ignore_labels=(0,))
    return float(are)


def vi(prediction, truth, threshold=0.5, connectivity=None):
    """Variation of information (bits) as (split, merge), foreground-restricted.

    split = H(prediction | truth) (over-segmentation), merge = H(truth | prediction)
    (under-segmentation); VI = split + merge; 0 is perfect.
    """
    true_segments, predicted_segments = _segmentations(prediction, truth, threshold, connectivity)
    if not true_segments.any():
        return float("nan"), float("nan")
    split, merge = variation_of_information(true_segments, predicted_segments, ignore_labels=(0,))
    return float(split), float(merge)


def cell_iou(prediction, truth, threshold=0.5):
    """Intersection over union of the cell class (1.0 when both have no cell pixel)."""
    predicted, true_cells = _as_cell_masks(prediction, truth, threshold)
    union = np.count_nonzero(predicted | true_cells)
    return 1.0 if union == 0 else float(np.count_nonzero(predicted & true_cells) / union)


def evaluate_image(prediction, truth, threshold=0.5, connectivity=None):
    """All metrics of one image as a dict with the keys of `METRICS`."""
    split, merge = vi(prediction, truth, threshold, connectivity)
    return {
        "pixel_error": pixel_error(prediction, truth, threshold),
        "rand_error": rand_error(prediction, truth, threshold, connectivity),
        "vi_split": split,
        "vi_merge": merge,
        "vi": split + merge,
        "cell_iou": cell_iou(prediction, truth, threshold),
    }


def evaluate_images(predictions, truths, names=None, threshold=0.5, connectivity=None):
    """Metrics per image and their mean.

    Returns {"images": [{"name": ..., <metric>: ...}, ...], "mean": {<metric>: ...},
    "threshold": ..., "connectivity": ...}.
    """
    predictions, truths = list(predictions), list(truths)
    if len(predictions) != len(truths):
        raise ValueError(f"got {len(predictions)} predictions but {len(truths)} ground-truth masks")
    if not predictions:
        raise ValueError("no images to evaluate")
    names = [f"image_{i}" for i in range(len(predictions))] if names is None else [str(n) for n in names]
    if len(names) != len(predictions):
        raise ValueError(f"got {len(names)} names for {len(predictions)} images")
    rows = []
    for name, prediction, truth in zip(names, predictions, truths):
        try:
            rows.append({"name": name, **evaluate_image(prediction, truth, threshold, connectivity)})
        except (ValueError, TypeError) as error:
            raise type(error)(f"{name}: {error}") from None
    mean = {key: float(np.nanmean([row[key] for row in rows])) for key in METRICS}
    return {"images": rows, "mean": mean, "threshold": threshold, "connectivity": connectivity}


def table_rows(results):
    """The per-image rows of `evaluate_images` and a last row named "mean" (for tables and
    `unet_ref.files.write_csv`)."""
    return results["images"] + [{"name": "mean", **results["mean"]}]


def format_table(results):
    """The per-image rows and the mean of `evaluate_images` as a fixed-width text table."""
    rows = table_rows(results)
    width = max(8, *(len(row["name"]) for row in rows))
    lines = [f"{'image':<{width}}" + "".join(f"{key:>13}" for key in METRICS)]
    for i, row in enumerate(rows):
        if i == len(rows) - 1:
            lines.append("-" * len(lines[0]))
        lines.append(f"{row['name']:<{width}}" + "".join(f"{row[key]:>13.5f}" for key in METRICS))
    return "\n".join(lines)


def as_cell_probability(prediction, name="prediction", ndim=2):
    """A saved prediction -> P(cell) float32 in [0, 1].

    Float maps are probabilities (checked); a (H, W, n_classes) softmax gives its cell
    channel; integer or bool predictions are masks by the rule of `unet_ref.masks`
    (0 and one value > 0, e.g. the *_mask.png of `unet-ref predict`) and become 0 / 1.
    `ndim=3`: a (D, H, W) volume, or its (D, H, W, n_classes) softmax.
    """
    prediction = np.asarray(prediction)
    if prediction.ndim == ndim + 1 and prediction.shape[-1] in (2, 3) and np.issubdtype(prediction.dtype, np.floating):
        prediction = prediction[..., CELL_CLASS]  # (H, W, n_classes) softmax
    if np.issubdtype(prediction.dtype, np.floating):
        if prediction.size == 0 or not np.isfinite(prediction).all() or prediction.min() < 0 or prediction.max() > 1:
            raise ValueError(f"{name} must hold cell probabilities in [0, 1] (or be a binary mask)")
        return prediction.astype(np.float32, copy=False)
    return cells_from_mask(prediction, name=name).astype(np.float32)


def pair_by_name(predictions, truths):
    """Pair predictions with ground truths by name: [(name, prediction, truth)], in the
    truths' order.

    `predictions` and `truths` are lists of (name, array), e.g. from
    `unet_ref.datasets.read_images`. The prediction of truth "x" is named "x", else
    "x_prob", else "x_mask" (the files `unet-ref predict` writes; where both exist, the
    probabilities are used). A truth without a prediction, or a prediction that belongs to
    no truth, is a ValueError naming them.
    """
    by_name = dict(predictions)
    pairs, used, missing = [], set(), []
    for name, truth in truths:
        match = next((n for n in (name, f"{name}_prob", f"{name}_mask") if n in by_name), None)
        if match is None:
            missing.append(name)
            continue
        used.update(n for n in (name, f"{name}_prob", f"{name}_mask") if n in by_name)
        pairs.append((name, by_name[match], truth))
    extra = [n for n, _ in predictions if n not in used]
    if missing or extra:
        raise ValueError(f"predictions and ground truths do not pair by name: no prediction for {missing[:5]}, "
                         f"no ground truth for {extra[:5]} (a prediction of x is named x, x_prob or x_mask)")
    return pairs


def instance_scores(prediction, truth, threshold=0.5, iou=0.5, connectivity=None, min_piece=0.1):
    """Object-level scores: how many cells come out as separate objects.

    Parameters
    ----------
    prediction : (H, W) cell probabilities in [0, 1] (or a bool mask); its objects are the
        connected components of prediction >= threshold (`unet_ref.masks.label_cells`).
    truth : (H, W) instance labels (0 = background, one id per cell), or a binary mask
        whose components are the cells (`unet_ref.masks.to_instance_labels`).
    iou : float
        Matching: a predicted and a true object match if their intersection over union is
        above `iou` (for iou >= 0.5 a match is one-to-one by construction).
    min_piece : float
        A predicted object counts as a piece of a split cell if it covers at least this
        fraction of the cell.

    Returns
    -------
    dict with
        true_objects, predicted_objects, matched;
        precision = matched / predicted_objects, recall = matched / true_objects (1 when
        there is nothing to find), f1;
        merges: true cells lost in merges, k - 1 for a predicted object that covers more
        than half of each of k >= 2 true cells;
        splits: extra pieces, k - 1 for a true cell divided among k >= 2 predicted objects
        that each lie mostly (more than half of their pixels) inside it and cover at least
        `min_piece` of it.
    """
    predicted = _predicted_cells(prediction, threshold)
    truth = to_instance_labels(truth, name="truth")
    if truth.shape != predicted.shape:
        raise ValueError(f"prediction shape {predicted.shape} differs from truth shape {truth.shape}")
    ours = label_cells(predicted, connectivity)
    n_true, n_pred = int(truth.max()), int(ours.max())
    # overlap[t, p]: pixels of true object t in predicted object p (row/column 0: background)
    overlap = np.bincount(truth.ravel().astype(np.int64) * (n_pred + 1) + ours.ravel(),
                          minlength=(n_true + 1) * (n_pred + 1)).reshape(n_true + 1, n_pred + 1)
    true_size, pred_size = overlap.sum(axis=1), overlap.sum(axis=0)
    inter = overlap[1:, 1:]
    union = true_size[1:, None] + pred_size[None, 1:] - inter
    matched = int(np.count_nonzero(inter > iou * union))
    covers_half = inter * 2 > true_size[1:, None]  # p holds more than half of t
    merges = int(np.maximum(covers_half.sum(axis=0) - 1, 0).sum())
    pieces = (inter * 2 > pred_size[None, 1:]) & (inter >= min_piece * true_size[1:, None])
    splits = int(np.maximum(pieces.sum(axis=1) - 1, 0).sum())
    precision = matched / n_pred if n_pred else 1.0
    recall = matched / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"true_objects": n_true, "predicted_objects": n_pred, "matched": matched, "precision": precision,
            "recall": recall, "f1": f1, "merges": merges, "splits": splits}
