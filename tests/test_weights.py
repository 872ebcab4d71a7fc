"""Specification of unet_ref.weights: d1/d2 bit-identical to the per-object reference,
the weight map equal to the notebook's formula, defined edge cases, clear errors."""
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.io import imread

from unet_ref import reference
from unet_ref.masks import label_cells
from unet_ref.fast.d1d2 import nearest_two
from unet_ref.weights import balanced_class_weights, d1_d2, weight_map

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
EIGHT = np.ones((3, 3), bool)  # 8-connectivity, the notebook's (skimage's default in 2-D)


def assert_bit_identical(actual, expected):
    for a, e, name in zip(actual, expected, ("d1", "d2")):
        assert a.dtype == np.float32 and a.shape == e.shape, name
        assert np.array_equal(np.isinf(a), np.isinf(e)), f"{name}: inf positions differ"
        assert np.array_equal(a, e), f"{name}: max diff {np.nanmax(np.abs(a - e))}"


@st.composite
def label_images(draw, max_side=40):
    """Instance labels: any integer dtype, ids anywhere in its range (gaps, near the max),
    as noise (many touching objects) or as rectangles on background; C, F or strided."""
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    top = int(np.iinfo(dtype).max)
    ids = draw(st.lists(st.one_of(st.integers(1, 6), st.integers(1, top), st.just(top)),
                        min_size=0, max_size=6, unique=True))
    labels = np.zeros((h, w), dtype)
    if ids and draw(st.booleans()):  # noise: every pixel background or one of the ids
        seed = draw(st.integers(0, 2**32 - 1))
        labels[:] = np.random.default_rng(seed).choice(np.array([0] + ids, dtype), size=(h, w))
    else:  # rectangles, possibly overlapping (touching objects) or far apart
        for k in ids:
            y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
            labels[y0:y1, x0:x1] = k
    layout = draw(st.sampled_from(["C", "F", "strided", "flipped"]))
    if layout == "F":
        labels = np.asfortranarray(labels)
    elif layout == "strided":  # a non-contiguous view of a bigger array
        big = np.zeros((2 * h, 3 * w), dtype)
        big[::2, ::3] = labels
        labels = big[::2, ::3]
    elif layout == "flipped":  # negative strides
        labels = np.ascontiguousarray(labels[::-1, ::-1])[::-1, ::-1]
    return labels


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_images())
def test_d1_d2_is_bit_identical_to_the_per_object_reference(labels):
    assert_bit_identical(d1_d2(labels), reference.d1_d2(labels))


@settings(max_examples=40, deadline=None)
@given(label_images(max_side=64), st.sampled_from(["rows", "columns"]))
def test_d1_d2_on_single_rows_and_columns(labels, kind):
    line = labels[:1, :] if kind == "rows" else labels[:, :1]  # 1 x N and N x 1
    assert_bit_identical(d1_d2(line), reference.d1_d2(line))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_images(), st.data())
def test_weight_map_of_a_window_is_the_window_of_the_weight_map(labels, data):
    # the kernel's row pass skips the rows outside the window; the column pass sees all
    h, w = labels.shape
    top, left = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    bottom, right = data.draw(st.integers(top + 1, h)), data.draw(st.integers(left + 1, w))
    window = np.s_[top:bottom, left:right]
    threads = data.draw(st.sampled_from([1, 2]))
    full = weight_map(labels=labels, class_weights=(0.5, 1.5), num_threads=threads)
    part = weight_map(labels=labels, class_weights=(0.5, 1.5), window=window, num_threads=threads)
    assert part.shape == (bottom - top, right - left)
    assert np.array_equal(part, full[window])
    # negative and open-ended slices mean what they mean in numpy
    assert np.array_equal(weight_map(labels=labels, window=np.s_[-bottom:, :right]),
                          weight_map(labels=labels)[-bottom:, :right])


# -- layouts that made the old row pass quadratic (issue 15.7) ------------------------------


def band_of_cells(h, w, cell=8):
    """Empty except a band of `cell`-px cells along the top: far rows see every cell."""
    labels = np.zeros((h, w), np.int32)
    labels[:cell] = np.arange(w) // cell + 1
    return labels


def diagonal_pixels(h, w):
    """One-pixel cells on the diagonal: every column's nearest cell is a different one."""
    labels = np.zeros((h, w), np.int32)
    i = np.arange(min(h, w))
    labels[i, i] = i + 1
    return labels


def comb(h, w):
    """Two labels alternating along the top row: each label's columns are far from contiguous."""
    labels = np.zeros((h, w), np.int32)
    labels[0] = np.arange(w) % 2 + 1
    return labels


def sparse_points(h, w, n=40, seed=0):
    labels = np.zeros((h, w), np.int32)
    labels.flat[np.random.default_rng(seed).choice(h * w, n, replace=False)] = np.arange(1, n + 1)
    return labels


ADVERSARIAL = [band_of_cells, diagonal_pixels, comb, sparse_points]


@pytest.mark.parametrize("layout", ADVERSARIAL)
def test_adversarial_layouts_are_exact(layout):
    labels = layout(61, 97)
    assert_bit_identical(d1_d2(labels), reference.d1_d2(labels))
    assert_bit_identical(d1_d2(labels.T), reference.d1_d2(labels.T))


@pytest.mark.parametrize("layout", ADVERSARIAL)
@pytest.mark.parametrize("side", [64, 512])
def test_row_pass_scans_at_most_four_positions_per_pixel(layout, side):
    # the bound proved in ext/_d1d2.pyx: the row's envelope of d1 candidates, and the
    # runs' envelopes together scan every column at most three times; the old outward scan
    # visited O(W^2 / cell width) columns per row on these layouts
    for labels in (layout(side, side), layout(side, side).T):
        d1, d2 = (np.empty_like(labels, dtype=np.float32) for _ in range(2))  # same layout
        work = nearest_two(labels, d1=d1, d2=d2, num_threads=2)
        assert work <= 4 * labels.size


def test_d1_d2_with_one_thread_equals_all_threads():
    labels = np.random.default_rng(0).integers(0, 30, size=(97, 131)) * (np.random.default_rng(1).random((97, 131)) < 0.05)
    assert_bit_identical(d1_d2(labels, num_threads=2), reference.d1_d2(labels))
    assert_bit_identical(d1_d2(labels, num_threads=1), reference.d1_d2(labels))
    np.testing.assert_allclose(weight_map(labels=labels, num_threads=2), weight_map(labels=labels), rtol=0)


def test_d1_d2_of_a_hand_computed_case():
    labels = np.array([[1, 0, 0, 0, 2],
                       [0, 0, 0, 0, 0]])
    d1, d2 = d1_d2(labels)
    np.testing.assert_array_equal(d1, np.float32([[0, 1, 2, 1, 0], [1, 2**0.5, 5**0.5, 2**0.5, 1]]))
    np.testing.assert_array_equal(d2, np.float32([[4, 3, 2, 3, 4], [17**0.5, 10**0.5, 5**0.5, 10**0.5, 17**0.5]]))


def test_d1_d2_is_inf_where_objects_are_missing():
    d1, d2 = d1_d2(np.zeros((3, 4), np.uint8))
    assert np.isinf(d1).all() and np.isinf(d2).all()
    d1, d2 = d1_d2(np.array([[0, 7, 7, 0]]))
    np.testing.assert_array_equal(d1, np.float32([[1, 0, 0, 1]]))
    assert np.isinf(d2).all()


def test_d1_d2_of_bool_and_byte_swapped_labels():
    labels = np.array([[1, 0, 2, 2, 0, 1]], dtype=">i4")
    assert_bit_identical(d1_d2(labels), reference.d1_d2(labels.astype(np.int32)))
    mask = np.array([[True, False, False]])
    assert_bit_identical(d1_d2(mask), reference.d1_d2(mask.astype(np.uint8)))


@pytest.mark.parametrize("dtype", INT_DTYPES + [bool])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_d1_d2_and_weight_map_accept_read_only_labels(dtype, layout):
    # np.load(mmap_mode="r"), tifffile.memmap and np.frombuffer give arrays with writeable=False
    labels = np.zeros((9, 13), dtype)
    labels[1:4, 2:5], labels[6:8, 1:3], labels[5:9, 9:12] = 1, (0 if dtype is bool else 5), 1
    if dtype is not bool:
        labels[0, 12] = 7
    expected = reference.d1_d2(labels.astype(np.int64))
    if layout == "F":
        labels = np.asfortranarray(labels)
    elif layout == "strided":
        big = np.zeros((18, 26), dtype)
        big[::2, ::2] = labels
        labels = big[::2, ::2]
    labels.flags.writeable = False
    assert_bit_identical(d1_d2(labels), expected)
    writable = labels.copy()
    assert np.array_equal(weight_map(labels=labels), weight_map(labels=writable))
    assert np.array_equal(weight_map(labels=labels, window=np.s_[2:7, 3:11]), weight_map(labels=writable)[2:7, 3:11])


def test_d1_d2_of_memory_mapped_and_buffer_labels(tmp_path):
    labels = np.zeros((20, 30), np.uint16)
    labels[2:8, 3:9], labels[12:18, 20:27] = 3, 9
    np.save(tmp_path / "labels.npy", labels)
    mapped = np.load(tmp_path / "labels.npy", mmap_mode="r")
    from_bytes = np.frombuffer(labels.tobytes(), np.uint16).reshape(labels.shape)
    assert not mapped.flags.writeable and not from_bytes.flags.writeable
    expected = reference.d1_d2(labels)
    assert_bit_identical(d1_d2(mapped), expected)
    assert_bit_identical(d1_d2(from_bytes), expected)


# -- the 25 ISBI 2012 training labels: ~2 s of reference per slice, so 4 slices by default
ISBI_SLICES = range(25) if os.environ.get("UNET_REF_ALL_ISBI") == "1" else (0, 8, 16, 24)


@pytest.mark.parametrize("index", ISBI_SLICES)
def test_isbi_labels_d1_d2_and_weight_map_match_the_reference(isbi_label_paths, index):
    mask = imread(isbi_label_paths[index])
    assert mask.shape == (512, 512) and mask.dtype == np.uint8
    labels, _ = ndimage.label(mask >= 128, structure=EIGHT)
    assert_bit_identical(d1_d2(labels), reference.d1_d2(labels))
    # the formula's float64 operations are the reference's, but exp may round differently
    np.testing.assert_allclose(weight_map(mask), reference.weight_map(mask), rtol=1e-6, atol=0)


# -- the weight map against the notebook formula --------------------------------------


def notebook_formula(cells, labels, w_c, w0=10.0, sigma=5.0, spacing=None):
    """w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2)) with d1, d2 from the reference."""
    d1, d2 = (d.astype(np.float64) for d in reference.d1_d2(labels, spacing))
    return np.where(cells, w_c[1], w_c[0]) + w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**32 - 1), st.floats(0.05, 0.95))
def test_weight_map_of_random_masks_matches_the_reference(h, w, seed, p):
    mask = np.where(np.random.default_rng(seed).random((h, w)) < p, 255, 0).astype(np.uint8)
    np.testing.assert_allclose(weight_map(mask), reference.weight_map(mask), rtol=1e-6, atol=0)


def test_weight_map_of_two_single_pixel_cells_by_hand():
    # 2 cells, 2 membrane pixels: w_c = 1; d1 + d2 = 3 everywhere on the line
    w = weight_map(np.array([[255, 0, 0, 255]], np.uint8), w0=10, sigma=5)
    np.testing.assert_allclose(w, np.full((1, 4), 1 + 10 * np.exp(-9 / 50)), rtol=1e-6)


def test_weight_map_class_weights_are_inverse_frequencies_rarer_class_one():
    mask = np.zeros((4, 8), np.uint8)
    mask[1:3, 1:3] = 255  # one cell of 4 pixels, 28 membrane pixels: no border term
    w = weight_map(mask)
    np.testing.assert_allclose(w, np.where(mask == 255, 1.0, 4 / 28), rtol=1e-6)
    assert balanced_class_weights(mask == 255) == pytest.approx((4 / 28, 1.0))


def test_weight_map_options_match_the_formula():
    labels = np.zeros((20, 24), np.int32)
    labels[2:9, 3:10], labels[2:9, 11:20], labels[12:18, 5:22] = 3, 9, 40  # ids with gaps
    cells = labels > 0
    n = cells.mean()
    balanced = ((n / (1 - n), 1.0) if n < 0.5 else (1.0, (1 - n) / n))
    expected = notebook_formula(cells, labels, balanced, w0=7.0, sigma=3.0)
    np.testing.assert_allclose(weight_map(labels=labels, w0=7.0, sigma=3.0), expected, rtol=1e-6)
    # the same cells as a mask, labelled 8-connected, give the same map
    np.testing.assert_allclose(weight_map(cells, w0=7.0, sigma=3.0), expected, rtol=1e-6)
    expected = notebook_formula(cells, labels, (1.0, 1.0))
    np.testing.assert_allclose(weight_map(labels=labels, class_weights=None), expected, rtol=1e-6)
    expected = notebook_formula(cells, labels, (0.25, 2.0))
    np.testing.assert_allclose(weight_map(labels=labels, class_weights=(0.25, 2.0)), expected, rtol=1e-6)
    # border term on background only: cells keep their class weight
    expected = np.where(cells, 2.0, notebook_formula(cells, labels, (0.25, 2.0)))
    got = weight_map(labels=labels, class_weights=(0.25, 2.0), border="background")
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_weight_map_keeps_touching_instances_apart_only_when_given_labels():
    labels = np.array([[1, 1, 2, 2]])
    # no membrane pixels: the cell class weighs 1; d1 = 0, d2 = 1 or 2
    np.testing.assert_allclose(weight_map(labels=labels), 1 + 10 * np.exp(-np.float64([[4, 1, 1, 4]]) / 50), rtol=1e-6)
    np.testing.assert_array_equal(weight_map(labels > 0), np.ones((1, 4), np.float32))  # one cell


def test_weight_map_connectivity_decides_whether_diagonal_pixels_are_one_cell():
    mask = np.array([[255, 0], [0, 255]], np.uint8)
    np.testing.assert_array_equal(weight_map(mask, connectivity=2), np.ones((2, 2), np.float32))
    # two cells: d1 + d2 = 0 + sqrt 2 on the cells, 1 + 1 on the membrane
    expected = 1 + 10 * np.exp(-np.float64([[2, 4], [4, 2]]) / 50)
    np.testing.assert_allclose(weight_map(mask, connectivity=1), expected, rtol=1e-6)


@pytest.mark.parametrize("value", [0, 255])
def test_weight_map_of_a_single_class_is_one_everywhere(value):
    # the notebook divides by zero here; the present class weighs 1, no border term (< 2 cells)
    mask = np.full((5, 7), value, np.uint8)
    np.testing.assert_array_equal(weight_map(mask), np.ones((5, 7), np.float32))
    np.testing.assert_array_equal(reference.weight_map(mask), np.ones((5, 7), np.float32))


def test_weight_map_accepts_bool_and_01_integer_masks_and_keeps_layout():
    mask = np.zeros((9, 11), bool)
    mask[1:4, 1:4] = mask[5:8, 6:10] = True
    expected = weight_map(np.where(mask, 255, 0).astype(np.uint8))
    np.testing.assert_array_equal(weight_map(mask), expected)
    np.testing.assert_array_equal(weight_map(mask.astype(np.int64)), expected)
    np.testing.assert_array_equal(weight_map(np.asfortranarray(mask)), expected)
    assert weight_map(mask).dtype == np.float32 and weight_map(mask).shape == (9, 11)


# -- 3-D and anisotropic spacing (issue 12) ----------------------------------------------

# spacings whose squares and sums are not exact in float64 (0.1, 1/3, pi), tiny and large
ODD_SPACINGS = [0.1, 0.3, 1 / 3, 0.7, 1.1, 2.5, math.pi, 1e-3, 40.0]


def assert_within_one_ulp(actual, expected):
    for a, e, name in zip(actual, expected, ("d1", "d2")):
        assert a.dtype == np.float32 and a.shape == e.shape, name
        assert np.array_equal(np.isinf(a), np.isinf(e)), f"{name}: inf positions differ"
        finite = np.isfinite(e)
        # non-negative floats are ordered like their bit patterns: the gap in ulps
        gap = np.abs(a[finite].view(np.int32).astype(np.int64) - e[finite].view(np.int32))
        assert gap.max(initial=0) <= 1, f"{name}: {gap.max()} ulps apart"


@st.composite
def volumes(draw, max_side=24):
    """3-D instance labels as label_images draws them (every dtype, ids anywhere in its
    range, noise or boxes, C, F, strided or flipped), from 1 x 1 x 1 to max_side^3, and
    lines along each axis (1 x N x 1 ...)."""
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    shape = list(draw(st.tuples(*[st.integers(1, max_side)] * 3)))
    if draw(st.booleans()) and draw(st.booleans()):  # a line along one axis
        axis = draw(st.integers(0, 2))
        shape = [draw(st.integers(1, 3 * max_side)) if k == axis else 1 for k in range(3)]
    top = int(np.iinfo(dtype).max)
    ids = draw(st.lists(st.one_of(st.integers(1, 6), st.integers(1, top), st.just(top)),
                        min_size=0, max_size=6, unique=True))
    labels = np.zeros(shape, dtype)
    if ids and draw(st.booleans()):  # sparse or dense noise: touching objects, gaps
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        labels[:] = rng.choice(np.array(ids, dtype), size=shape) * (rng.random(shape) < draw(st.floats(0.01, 1)))
    else:  # boxes, possibly overlapping
        for k in ids:
            lo = [draw(st.integers(0, n - 1)) for n in shape]
            hi = [draw(st.integers(a + 1, n)) for a, n in zip(lo, shape)]
            labels[tuple(slice(a, b) for a, b in zip(lo, hi))] = k
    layout = draw(st.sampled_from(["C", "F", "strided", "flipped"]))
    if layout == "F":
        labels = np.asfortranarray(labels)
    elif layout == "strided":
        big = np.zeros([2 * n for n in shape], dtype)
        big[::2, ::2, ::2] = labels
        labels = big[::2, ::2, ::2]
    elif layout == "flipped":
        labels = np.ascontiguousarray(labels[::-1, ::-1, ::-1])[::-1, ::-1, ::-1]
    return labels


integer_spacings = st.one_of(st.none(), st.tuples(*[st.integers(1, 4)] * 3))
odd_spacings = st.tuples(*[st.sampled_from(ODD_SPACINGS + [1.0, 2.0])] * 3).filter(
    lambda s: not all(float(v).is_integer() for v in s))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volumes(), integer_spacings)
def test_d1_d2_3d_is_bit_identical_to_the_reference_for_integer_spacings(labels, spacing):
    # squared distances stay integers: exact in int64, float32(sqrt) as scipy's
    assert_bit_identical(d1_d2(labels, spacing=spacing), reference.d1_d2(labels, spacing))


@pytest.mark.parametrize("spacing", [(1, 2, 3), (3, 1, 1), (1, 1, 4), (2, 4, 1), (4, 3, 2)])
@pytest.mark.parametrize("kind", ["noise", "boxes"])
def test_d1_d2_3d_of_fortran_ordered_volumes_with_anisotropic_integer_spacings(kind, spacing):
    # The kernel runs a Fortran-ordered volume as its C-ordered transpose on the exact integer
    # path, with the spacing reversed; the hypothesis test above draws this case in a few
    # percent of its examples only. Three different side lengths: no axis stands for another.
    rng = np.random.default_rng(sum(spacing))
    shape = (7, 12, 17)
    if kind == "noise":
        labels = rng.integers(1, 6, size=shape) * (rng.random(shape) < 0.05)
    else:
        labels = np.zeros(shape, np.int64)
        labels[1:3, 2:6, 1:4], labels[4:7, 7:12, 10:17], labels[0:2, 9:11, 12:15] = 3, 1, 2
    labels = np.asfortranarray(labels.astype(np.uint16))
    assert labels.flags.f_contiguous and not labels.flags.c_contiguous
    expected = reference.d1_d2(np.ascontiguousarray(labels), spacing)
    assert_bit_identical(d1_d2(labels, spacing=spacing), expected)
    np.testing.assert_array_equal(weight_map(labels=labels, spacing=spacing),
                                  weight_map(labels=np.ascontiguousarray(labels), spacing=spacing))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volumes(), odd_spacings)
def test_d1_d2_3d_is_within_one_ulp_of_the_reference_for_other_spacings(labels, spacing):
    # float64 as scipy computes it; only the choice among features within float64 rounding
    # of each other may differ (ext/_d1d2.pyx)
    assert_within_one_ulp(d1_d2(labels, spacing=spacing), reference.d1_d2(labels, spacing))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label_images(), st.one_of(st.tuples(*[st.integers(1, 5)] * 2), st.tuples(*[st.sampled_from(ODD_SPACINGS)] * 2)))
def test_d1_d2_2d_with_spacing_matches_the_reference(labels, spacing):
    expected = reference.d1_d2(labels, spacing)
    if all(float(v).is_integer() for v in spacing):
        assert_bit_identical(d1_d2(labels, spacing=spacing), expected)
    else:
        assert_within_one_ulp(d1_d2(labels, spacing=spacing), expected)


def test_d1_d2_with_odd_spacings_is_bit_identical_on_these_volumes():
    # the 1-ulp bound above is what can be proved; on these seeded volumes (and on every
    # volume tried while writing the kernel) the float32 results are scipy's, bit for bit
    rng = np.random.default_rng(12)
    for spacing in [(0.1, 0.1, 0.1), (1 / 3, 0.7, 0.7), (math.pi, 1.0, 0.3), (2.5, 0.1, 1.1)]:
        labels = (rng.integers(1, 9, size=(14, 19, 23)) * (rng.random((14, 19, 23)) < 0.03)).astype(np.int32)
        assert_bit_identical(d1_d2(labels, spacing=spacing), reference.d1_d2(labels, spacing))


@pytest.mark.parametrize("order", ["C", "F"])
def test_huge_integer_spacings_take_scipys_float64_path(order):
    # squared distances beyond 2^53 are not exact in scipy's float64 either: computed as scipy
    # does, in the order of the axes, also for a Fortran-ordered volume
    rng = np.random.default_rng(5)
    labels = (rng.integers(1, 5, size=(6, 9, 11)) * (rng.random((6, 9, 11)) < 0.1)).astype(np.int32)
    labels = np.asfortranarray(labels) if order == "F" else labels
    spacing = (3 * 10**8, 10**8 + 1, 7)
    assert_within_one_ulp(d1_d2(labels, spacing=spacing), reference.d1_d2(labels, spacing))


def test_d1_d2_3d_by_hand_with_anisotropic_spacing():
    labels = np.zeros((3, 1, 4), np.uint8)
    labels[0, 0, 0], labels[2, 0, 3] = 1, 2  # slices 3 apart, columns 0.5 apart
    d1, d2 = d1_d2(labels, spacing=(3, 1, 0.5))
    np.testing.assert_array_equal(d1[1, 0], np.float32([3, 9.25**0.5, 9.25**0.5, 3]))
    np.testing.assert_array_equal(d2[1, 0], np.float32([11.25**0.5, 10**0.5, 10**0.5, 11.25**0.5]))
    assert d1_d2(labels, spacing=2.0)[0][1, 0, 0] == 2  # one number: every axis


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(volumes(max_side=20), st.one_of(integer_spacings, odd_spacings), st.data())
def test_weight_map_3d_of_a_window_is_the_window_of_the_weight_map(labels, spacing, data):
    box = []
    for n in labels.shape:
        a = data.draw(st.integers(0, n - 1))
        box.append(slice(a, data.draw(st.integers(a + 1, n))))
    window = tuple(box)
    threads = data.draw(st.sampled_from([1, 2]))
    full = weight_map(labels=labels, class_weights=(0.5, 1.5), spacing=spacing, sigma=2.0, num_threads=threads)
    part = weight_map(labels=labels, class_weights=(0.5, 1.5), spacing=spacing, sigma=2.0, window=window,
                      num_threads=threads)
    assert part.shape == tuple(s.stop - s.start for s in box)
    assert np.array_equal(part, full[window])


@pytest.mark.parametrize("spacing", [None, (3, 1, 1), (2.5, 0.7, 0.7)])
def test_weight_map_3d_options_match_the_formula(spacing):
    labels = np.zeros((9, 14, 16), np.int32)
    labels[1:4, 2:7, 3:9], labels[1:4, 8:12, 3:9], labels[6:9, 2:12, 10:15] = 3, 9, 40  # ids with gaps
    cells = labels > 0
    n = cells.mean()
    balanced = (n / (1 - n), 1.0) if n < 0.5 else (1.0, (1 - n) / n)
    kw = dict(w0=7.0, sigma=3.0, spacing=spacing)
    expected = notebook_formula(cells, labels, balanced, **kw)
    np.testing.assert_allclose(weight_map(labels=labels, **kw), expected, rtol=1e-6)
    np.testing.assert_allclose(weight_map(cells, **kw), expected, rtol=1e-6)  # labelled, 26-connected
    np.testing.assert_allclose(reference.weight_map(cells, **kw), expected, rtol=1e-6)
    expected = notebook_formula(cells, labels, (0.25, 2.0), **kw)
    np.testing.assert_allclose(weight_map(labels=labels, class_weights=(0.25, 2.0), **kw), expected, rtol=1e-6)
    got = weight_map(labels=labels, class_weights=(0.25, 2.0), border="background", **kw)
    np.testing.assert_allclose(got, np.where(cells, 2.0, expected), rtol=1e-6)
    expected = notebook_formula(cells, labels, (1.0, 1.0), **kw)
    np.testing.assert_allclose(weight_map(labels=labels, class_weights=None, **kw), expected, rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1), st.floats(0.05, 0.95))
def test_weight_map_3d_of_random_masks_matches_the_reference(d, h, w, seed, p):
    mask = np.where(np.random.default_rng(seed).random((d, h, w)) < p, 255, 0).astype(np.uint8)
    np.testing.assert_allclose(weight_map(mask), reference.weight_map(mask), rtol=1e-6, atol=0)
    np.testing.assert_allclose(weight_map(mask, spacing=(3, 1, 1)), reference.weight_map(mask, spacing=(3, 1, 1)),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("connectivity, n_cells", [(1, 3), (2, 2), (3, 1), (None, 1)])
def test_weight_map_3d_connectivity_6_18_26(connectivity, n_cells):
    mask = np.zeros((4, 5, 5), bool)
    mask[0, 0, 0] = mask[0, 1, 1] = True  # an edge apart: one 18- and 26-connected cell
    mask[1, 2, 2] = True  # a corner from (0, 1, 1): 26-connected only
    labels = label_cells(mask, connectivity)
    assert labels.max() == n_cells
    expected = notebook_formula(mask, labels, balanced_class_weights(mask))
    np.testing.assert_allclose(weight_map(mask, connectivity=connectivity), expected, rtol=1e-6)


@pytest.mark.parametrize("shape", [(40, 1, 1), (1, 40, 1), (1, 1, 40), (1, 30, 50), (5, 70, 3)])
def test_3d_lines_and_slabs_match_the_reference_and_the_2d_case(shape):
    rng = np.random.default_rng(3)
    labels = (rng.integers(1, 5, size=shape) * (rng.random(shape) < 0.1)).astype(np.int16)
    spacing = (2, 3, 1)
    d = d1_d2(labels, spacing=spacing)
    assert_bit_identical(d, reference.d1_d2(labels, spacing))
    if shape[0] == 1:  # a (1, H, W) volume is the 2-D image
        assert_bit_identical([x[0] for x in d], d1_d2(labels[0], spacing=spacing[1:]))


@pytest.mark.parametrize("layout", [band_of_cells, diagonal_pixels, comb, sparse_points])
def test_each_3d_pass_scans_at_most_four_positions_per_voxel(layout):
    labels = np.stack([layout(48, 48)] * 4 + [layout(48, 48).T] * 4)  # (8, 48, 48)
    for volume in (labels, labels.transpose(1, 0, 2).copy(), labels.transpose(2, 1, 0).copy()):
        d1, d2 = (np.empty(volume.shape, np.float32) for _ in range(2))
        work = nearest_two(volume, d1=d1, d2=d2, spacing=(1.0, 1.0, 1.0), num_threads=2)
        assert work <= 2 * 4 * volume.size  # two passes after the column pass
        assert_bit_identical((d1, d2), reference.d1_d2(volume))


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("spacing, match", [
    ((1, 1), "one number per axis"),
    ((1, 1, 1, 1), "one number per axis"),
    ("abc", "spacing values must be finite numbers"),
    ((1, 0, 1), "finite numbers > 0"),
    ((1, -2, 1), "finite numbers > 0"),
    ((1, float("nan"), 1), "finite numbers > 0"),
    ((1, float("inf"), 1), "finite numbers > 0"),
    ((True, 1, 1), "finite numbers > 0"),
    (0.0, "finite numbers > 0"),
    ((1e-200, 1, 1), "1e-100"),
])
def test_spacing_must_be_one_positive_number_per_axis(spacing, match):
    labels = np.zeros((3, 4, 5), np.int32)
    with pytest.raises(ValueError, match=match):
        d1_d2(labels, spacing=spacing)
    with pytest.raises(ValueError, match=match):
        weight_map(labels=labels, spacing=spacing)


def test_3d_window_must_be_three_slices():
    with pytest.raises(ValueError, match="window must be a triple of slices"):
        weight_map(labels=np.zeros((3, 4, 5), np.int32), window=np.s_[1:2, 1:3])
    with pytest.raises(ValueError, match="non-empty step-1"):
        weight_map(labels=np.zeros((3, 4, 5), np.int32), window=np.s_[1:2, 1:3, 4:2])


@pytest.mark.parametrize("labels, error, match", [
    (np.zeros((2, 3, 4, 5), np.int32), ValueError, r"2-D \(H, W\) or 3-D \(D, H, W\)"),  # 4-D
    (np.zeros(5, np.int32), ValueError, "2-D"),
    (np.zeros((0, 5), np.int32), ValueError, "empty"),
    (np.zeros((3, 3), np.float32), TypeError, "integer"),
    (np.array([[0, -1]]), ValueError, "negative"),
    (np.array([["a", "b"]]), TypeError, "integer"),
])
def test_d1_d2_rejects_bad_labels(labels, error, match):
    with pytest.raises(error, match=match):
        d1_d2(labels)
    with pytest.raises(error, match=match):
        weight_map(labels=labels)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(mask=np.zeros((4, 4), np.float64)), TypeError, "mask"),
    (dict(mask=np.array([[0, 1, 255]], np.uint8)), ValueError, "not a binary mask.*threshold"),
    (dict(mask=np.array([[0, 2, 3]], np.int32)), ValueError, "mask"),
    (dict(mask=np.array([[0, 1, 255]], np.uint8), threshold=np.nan), ValueError, "threshold"),
    (dict(mask=np.zeros((2, 2, 2, 2), np.uint8)), ValueError, "2-D .* or 3-D"),
    (dict(mask=np.zeros((3, 0), np.uint8)), ValueError, "empty"),
    (dict(), ValueError, "exactly one"),
    (dict(mask=np.zeros((2, 2), bool), labels=np.zeros((2, 2), int)), ValueError, "exactly one"),
    (dict(mask=np.zeros((2, 2), bool), border="cells"), ValueError, "border"),
    (dict(mask=np.zeros((2, 2), bool), connectivity=3), ValueError, "connectivity"),
    (dict(mask=np.zeros((2, 2), bool), class_weights=(1.0,)), ValueError, "class_weights"),
    (dict(mask=np.zeros((2, 2), bool), class_weights="inverse"), ValueError, "class_weights"),
    (dict(mask=np.zeros((2, 2), bool), sigma=0.0), ValueError, "sigma"),
    (dict(mask=np.zeros((2, 2), bool), num_threads=0), ValueError, "num_threads"),
    (dict(mask=np.zeros((4, 4), bool), window=(1, 2)), ValueError, "window must be a pair of slices"),
    (dict(mask=np.zeros((4, 4), bool), window=np.s_[1:3]), ValueError, "window must be a pair of slices"),
    (dict(mask=np.zeros((4, 4), bool), window=np.s_[3:1, :]), ValueError, "non-empty step-1"),
    (dict(mask=np.zeros((4, 4), bool), window=np.s_[::2, :]), ValueError, "non-empty step-1"),
    (dict(mask=np.zeros((4, 4), bool), window=np.s_[5:9, :]), ValueError, "non-empty step-1"),
])
def test_weight_map_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        weight_map(**kwargs)


@settings(max_examples=200, deadline=None)
@given(label_images(max_side=14))
def test_the_kernels_idea_in_plain_python_equals_the_kernel(labels):
    # unet_ref.one_pass: the two nearest distinct labels per column, then the row minima
    from unet_ref import one_pass

    assert_bit_identical(one_pass.d1_d2(labels), d1_d2(labels))
    assert_bit_identical(one_pass.d1_d2(labels), reference.d1_d2(labels))


def test_the_kernels_idea_keeps_two_labels_per_column_by_hand():
    # column of 1, 1, 0, 2, 3: the pixel at index 2 has 1 (1 px up) and 2 (1 px down), not 3
    from unet_ref import one_pass

    labels = np.array([[1], [1], [0], [2], [3]])
    d1, d2 = one_pass.d1_d2(labels)
    assert d1.ravel().tolist() == [0, 0, 1, 0, 0] and d2.ravel().tolist() == [3, 2, 1, 1, 1]
