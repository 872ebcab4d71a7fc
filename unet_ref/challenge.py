"""The ISBI 2012 challenge's own scores: pixel, Rand and warping errors, V_Rand and V_Info.

`unet_ref.evaluate` gives quick metrics at one threshold (0.5). The challenge ranked
entries with the organisers' Fiji code instead, public in the GitHub repository
fiji/Trainable_Segmentation, package trainableSegmentation.metrics, as called by the
ImageJ scripts "Segmentation evaluation metrics" (version of January 22, 2015: pixel,
foreground-restricted Rand and warping errors; the U-Net paper's table) and "Segmentation
evaluation after border thinning" (January 12, 2016: V_Rand and V_Info, the leaderboard
since). We follow the current Java code; this module reproduces it, the kernels of
ext/_challenge.pyx hold the loops. Every score sweeps thresholds of the probability map
and keeps the best one, so a proposal is not judged at a threshold it was not tuned for.

References: Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation
algorithms for connectomics", Front. Neuroanat. 9:142, 2015; Jain et al., "Boundary
learning by optimization with topological constraints", CVPR 2010; Bertrand & Malandain,
"A new characterization of three-dimensional simple points", Pattern Recogn. Lett. 15, 1994.
"""
import functools
import math

import numpy as np
from scipy import ndimage

from unet_ref import _challenge
from unet_ref.masks import cells_from_mask, label_cells

__all__ = ["challenge_scores", "format_scores", "PAPER_TABLE_1", "THRESHOLDS", "WARPING_THRESHOLDS"]

# Ronneberger et al. (2015), Table 1: the u-net's ISBI 2012 scores on the challenge's test
# set (30 slices whose labels only the organisers hold)
PAPER_TABLE_1 = {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}
_COLUMNS = ("warping_error", "rand_error", "pixel_error", "v_rand", "v_info")


def _sweep(stop):
    # `for (double th = 0; th <= stop; th += 0.1)`: accumulated in doubles, so the values
    # are 0.30000000000000004, ..., 0.9999999999999999, and P = 1.0 is a cell at the last
    th, values = 0.0, []
    while th <= stop:
        values.append(th)
        th += 0.1
    return tuple(values)


THRESHOLDS = _sweep(1.0)  # 11 values: pixel error, Rand error, V_Rand, V_Info
WARPING_THRESHOLDS = _sweep(0.9)  # 10 values: the script's warping sweep stops at 0.9
WARPING_RADIUS = 20  # px; the script's window for re-labelling a mismatch's neighbourhood


@functools.cache
def _neighbourhoods():
    """Two uint8[256] tables over the 8 neighbours of a pixel, `code` bit k = the k-th
    neighbour (row-major order) is a cell.

    simple: 1 if the pixel can flip without changing the topology, cells 4-connected and
    membrane 8-connected: one cell piece touching its 4-neighbours and one membrane piece
    around it (topological numbers T4 = T8' = 1, Bertrand & Malandain). Checked equal, on
    all 256 codes, to the 3-D test WarpingError.simple2DBertrand(patch, 4) that the
    organisers call. pieces: the number of 4-connected cell pieces among the neighbours."""
    four, eight = ndimage.generate_binary_structure(2, 1), ndimage.generate_binary_structure(2, 2)
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False
    simple, pieces = np.zeros(256, np.uint8), np.zeros(256, np.uint8)
    for code in range(256):
        cells = np.zeros((3, 3), bool)
        cells[ring] = [(code >> k) & 1 for k in range(8)]
        labels, pieces[code] = ndimage.label(cells, four)
        t4 = len(set(labels[[0, 1, 1, 2], [1, 0, 2, 1]].tolist()) - {0})
        simple[code] = t4 == 1 and ndimage.label(ring & ~cells, eight)[1] == 1
    return simple, pieces


def _as_inputs(probabilities, truth):
    """-> (N, H, W) float64 holding float32 probabilities, (N, H, W) bool truth cells."""
    prob = np.asarray(probabilities)
    if prob.dtype != bool and not (np.issubdtype(prob.dtype, np.integer) or np.issubdtype(prob.dtype, np.floating)):
        raise TypeError(f"probabilities must be a real array of P(cell) in [0, 1], got dtype {prob.dtype}")
    if prob.ndim not in (2, 3):
        raise ValueError(f"probabilities must be an (H, W) image or an (N, H, W) stack, got shape {prob.shape}")
    if prob.size == 0:
        raise ValueError(f"probabilities is empty (shape {prob.shape})")
    truth = np.asarray(truth)
    if truth.shape != prob.shape:
        raise ValueError(f"truth shape {truth.shape} differs from probabilities shape {prob.shape}")
    if prob.dtype.kind == "f" and np.isnan(prob).any():
        raise ValueError("probabilities contain NaN; expected P(cell) in [0, 1]")
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError(f"probabilities must be P(cell) in [0, 1], got values in [{prob.min()}, {prob.max()}]")
    cells = cells_from_mask(truth, name="truth")
    # ImageJ holds the map as 32-bit floats and compares them, promoted, with double thresholds
    prob = prob.astype(np.float32).astype(np.float64)
    return prob.reshape((-1,) + prob.shape[-2:]), cells.reshape((-1,) + cells.shape[-2:])


def _f_score(tp, fp, fn):
    # ClassificationStatistics: no false positives (negatives) means precision (recall) 1
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _pair_sums(truth_labels, labels):
    return _challenge._pair_sums(truth_labels.ravel(), np.ascontiguousarray(labels).ravel(),
                                 int(truth_labels.max()), int(labels.max()))


def _rand_counts(sums):
    """Ordered pixel pairs (N^2 normalisation, RandError.getForegroundRestrictedRandIndexStatsN2)
    within the truth cells: (TP, FP, FN). A proposal membrane pixel is its own segment."""
    _, c0, sum_a2, sum_b2, sum_c2 = sums[:5]
    tp = sum_c2 + c0
    return tp, sum_b2 + c0 - tp, sum_a2 - tp


def _v_scores(sums):
    """(V_Rand, V_Info) of one slice (RandError.getForegroundRestrictedRandAfterThinningStatsN2,
    VariationOfInformation.foregroundRestrictedFscore)."""
    n, _, _, _, _, sum_alog, sum_blog, sum_clog, n_truth, n_prop = sums
    if n == 0:
        return 0.0, 0.0  # no truth cell in the slice: the organisers' code scores it 0
    v_rand = _f_score(*_rand_counts(sums))
    # entropies of p = count / n; zero exactly for a single segment, where the Java code
    # divides rounding noise by rounding noise
    h_truth = 0.0 if n_truth == 1 else math.log(n) - sum_alog / n
    h_prop = 0.0 if n_prop == 1 else math.log(n) - sum_blog / n
    if h_truth == 0 or h_prop == 0:
        return v_rand, 0.0
    mutual = h_truth + h_prop - (math.log(n) - sum_clog / n)
    precision, recall = mutual / h_truth, mutual / h_prop  # C(A|B), C(B|A) in the paper
    # no shared information: 0/0 in Java too, a NaN that no maximum ever picks
    return v_rand, 2 * precision * recall / (precision + recall) if precision + recall else math.nan


def _thin(proposal):
    """Proposal segments after thinning its membranes to 1 px (WatershedTransform2D(.., 4)
    on the image cells = 0 / membrane = 255); 0 on the remaining membrane."""
    out = np.empty(proposal.shape[::-1], np.int32)
    _challenge._thin(np.ascontiguousarray(proposal.T, dtype=np.uint8), out)  # scanned x-major
    return out.T


def _warped_truth(cells, prob, th):
    """The truth warped towards prob > th by flipping simple points
    (WarpingError.simplePointWarp2d): (warped cells, rows, cols of the mismatches left, in
    the organisers' order)."""
    H, W = cells.shape
    source = np.zeros((H + 2, W + 2), np.uint8)  # the Java code pads with membrane
    source[1:-1, 1:-1] = cells
    # mismatches in the Java scan order (x outer, y inner), most confident first: a stable
    # sort on the float |P - th|
    cols, rows = np.nonzero((prob > th).T != cells.T)
    confidence = np.abs(prob[rows, cols] - th).astype(np.float32)
    first = np.argsort(-confidence, kind="stable")
    order = ((rows[first] + 1) * (W + 2) + cols[first] + 1).astype(np.intp)
    left = order[:_challenge._warp(source, order, _neighbourhoods()[0])]
    return source[1:-1, 1:-1].astype(bool), left // (W + 2) - 1, left % (W + 2) - 1


def _splits_merges(cells, prob, th):
    """(splits, merges) left after warping the truth towards prob > th
    (WarpingError.simplePointWarp2d, classifyMismatches2d with radius WARPING_RADIUS)."""
    H, W = cells.shape
    warped, rows, cols = _warped_truth(cells, prob, th)
    # radius > W or > H: the Java code re-labels the whole image, which a big radius does
    radius = WARPING_RADIUS if WARPING_RADIUS <= min(H, W) else max(H, W)
    return _challenge._splits_merges(label_cells(warped, connectivity=1), rows, cols, radius, _neighbourhoods()[1])


def _best(values, thresholds, lower_is_better):
    """The value and threshold the Java loops keep: the first strict improvement on 0 (on
    +inf for an error), so a NaN is never kept."""
    best, at = (math.inf if lower_is_better else 0.0), thresholds[0]
    for value, th in zip(values, thresholds):
        if (value < best) if lower_is_better else (value > best):
            best, at = value, th
    return best, at


def challenge_scores(probabilities, truth):
    """The ISBI 2012 scores of a probability map: pixel, Rand and warping errors, V_Rand, V_Info.

    Parameters
    ----------
    probabilities : (H, W) or (N, H, W) array of float in [0, 1]
        P(cell) per pixel; read as float32, as ImageJ holds the map. bool and integer
        0/1 arrays are accepted as binary proposals.
    truth : array of the same shape
        Binary ground truth, cell = True / > 0 (bool, 0/1 or 0/255;
        `unet_ref.masks.cells_from_mask`).

    Returns
    -------
    dict
        ``pixel_error``, ``rand_error``, ``warping_error`` (lower is better) and ``v_rand``,
        ``v_info`` (higher is better, 1 = perfect), each as a float with the threshold
        that gave it in ``<name>_threshold``; and ``sweep``, the values over the
        thresholds: ``thresholds`` (`THRESHOLDS`), ``pixel_counts`` and ``rand_counts``
        ((11, 3) int: TP, FP, FN of pixels / ordered pixel pairs, summed over slices),
        ``splits_merges`` ((10, 2) int over `WARPING_THRESHOLDS`, summed over slices),
        ``v_rand`` and ``v_info`` ((11,) float, averaged over slices).

    Notes
    -----
    A proposal pixel is a cell where P > th; segments are 4-connected cells of each 2-D
    slice (`unet_ref.masks.label_cells`). The Java code reads the truth as value > th (> 0
    for the pixel error), which for a binary truth is value > 0 at every threshold.
    Followed, class by class and method by method:

    - Pixel error (PixelError.getPrecisionRecallStats): 1 - the best F-score of the cell
      class, TP, FP, FN summed over slices, over th = 0, 0.1, ..., 1 (`THRESHOLDS`).
    - Rand error (RandError.getForegroundRestrictedRandIndexMaximalFScore): 1 - the best
      Rand F-score over the same thresholds. Only truth cell pixels count; a proposal
      membrane pixel among them is a segment of its own; pairs are ordered pixel pairs
      (N^2 normalisation: each pixel pairs with itself too); pair counts summed over slices.
    - Warping error (WarpingError.getMinimumSplitsAndMergersErrorValue(0, 0.9, 0.1, false,
      20)): the truth is warped towards the proposal by flipping simple points (cells
      4-connected, membrane 8-connected; outside the image is membrane): all mismatches,
      sorted by |P - th| (most confident first, ties in column-major order), are visited
      in turn and every one simple at its turn is flipped; passes repeat until one flips
      nothing. A mismatch left is counted if it is a SPLIT (a truth cell pixel whose
      removal would cut its cell, judged in the 41 x 41 window around it) or a MERGE (a
      membrane pixel touching two truth cells), pixel by pixel (clusterByError = false);
      hole and object additions or deletions are forgiven (classifyMismatches2d).
      Error = (splits + merges) / all pixels of all slices, minimum over th = 0, ..., 0.9
      (`WARPING_THRESHOLDS`). Cost per slice and threshold, for P pixels: the warping
      O(P log P) (a pass revisits only the neighbours of a flip; rescanning every
      mismatch per pass, as the Java loop does, is O(P^2) when a chain of flips runs
      against the order, e.g. a spiral), the classification at most
      (2 WARPING_RADIUS + 1)^2 steps per mismatch left (benchmarks/test_challenge.py).
    - V_Rand, V_Info ("after border thinning": RandError.getMaximalVRandAfterThinning(..,
      true), VariationOfInformation.getMaximalVInfoAfterThinning): the proposal's
      membranes are thinned to 1 px by a 4-connected watershed flooding from its cells
      (the truth is not thinned), then V_Rand is the Rand F-score above and V_Info the
      harmonic mean of I/H(truth) and I/H(proposal), foreground-restricted in the same
      way; per-slice scores are averaged, and the maximum over `THRESHOLDS` is kept.

    The best threshold is the first strict improvement (the Java loops). Sums of counts
    are exact integers here, so scores agree with the Java doubles to rounding. Where the
    Java code is degenerate: a slice without truth cells adds no pairs to the Rand error
    (Java: NaN, F-score 0) and scores V_Rand = V_Info = 0 (as Java); a single truth or
    proposal segment gives V_Info 0 exactly.

    Examples
    --------
    >>> truth = np.zeros((8, 7), np.uint8)
    >>> truth[:, :3] = truth[:, 4:] = 255          # two cells, a 1 px membrane
    >>> scores = challenge_scores(truth / 255.0, truth)
    >>> scores["rand_error"], scores["warping_error"], scores["v_rand"], scores["v_info"]
    (0.0, 0.0, 1.0, 1.0)
    >>> gap = truth / 255.0
    >>> gap[3, 3] = 1.0                            # a 1-pixel gap: the two cells merge
    >>> scores = challenge_scores(gap, truth)
    >>> scores["warping_error"] * gap.size, scores["warping_error_threshold"]
    (1.0, 0.0)
    >>> gap[3, 3] = 0.9            # float32(0.9) < 0.8999999999999999, the last threshold
    >>> challenge_scores(gap, truth)["warping_error_threshold"]
    0.8999999999999999
    """
    prob, cells = _as_inputs(probabilities, truth)
    n_slices = len(prob)
    truth_labels = [label_cells(c, connectivity=1) for c in cells]
    pixel = np.zeros((len(THRESHOLDS), 3), np.int64)
    rand = np.zeros((len(THRESHOLDS), 3), np.int64)
    v = np.zeros((len(THRESHOLDS), 2))
    splits_merges = np.zeros((len(WARPING_THRESHOLDS), 2), np.int64)
    for k, th in enumerate(THRESHOLDS):
        for z in range(n_slices):
            proposal = prob[z] > th
            pixel[k] += [np.count_nonzero(proposal & cells[z]), np.count_nonzero(proposal & ~cells[z]),
                         np.count_nonzero(~proposal & cells[z])]
            rand[k] += _rand_counts(_pair_sums(truth_labels[z], label_cells(proposal, connectivity=1)))
            v[k] += _v_scores(_pair_sums(truth_labels[z], _thin(proposal)))
            if k < len(WARPING_THRESHOLDS):
                splits_merges[k] += _splits_merges(cells[z], prob[z], th)
    v /= n_slices
    warping = splits_merges.sum(axis=1) / cells.size
    scores = {}
    for name, values, thresholds, lower in [
        ("pixel_error", [_f_score(*c) for c in pixel], THRESHOLDS, False),  # best F-score
        ("rand_error", [_f_score(*c) for c in rand], THRESHOLDS, False),
        ("warping_error", warping, WARPING_THRESHOLDS, True),
        ("v_rand", v[:, 0], THRESHOLDS, False),
        ("v_info", v[:, 1], THRESHOLDS, False),
    ]:
        value, th = _best([float(x) for x in values], thresholds, lower)
        scores[name] = 1.0 - value if name in ("pixel_error", "rand_error") else value
        scores[f"{name}_threshold"] = th
    scores["sweep"] = {"thresholds": THRESHOLDS, "pixel_counts": pixel, "rand_counts": rand,
                       "splits_merges": splits_merges, "v_rand": v[:, 0], "v_info": v[:, 1]}
    return scores


def format_scores(scores, name="these images"):
    """`challenge_scores` as a text table beside the paper's Table 1 row (which has no
    V_Rand / V_Info: the challenge added them in 2016), with the threshold of each score."""
    width = max(len(name), 36)
    lines = [f"{'':<{width}}" + "".join(f"{c.replace('_', ' '):>15}" for c in _COLUMNS),
             f"{name:<{width}}" + "".join(f"{scores[c]:>15.6f}" for c in _COLUMNS),
             f"{'  at threshold':<{width}}" + "".join(f"{scores[c + '_threshold']:>15.1f}" for c in _COLUMNS),
             f"{'U-Net paper, Table 1 (ISBI test set)':<{width}}"
             + "".join(f"{PAPER_TABLE_1[c]:>15.6f}" if c in PAPER_TABLE_1 else f"{'-':>15}" for c in _COLUMNS)]
    return "\n".join(lines)
