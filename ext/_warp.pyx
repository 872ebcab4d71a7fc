# cython: language_level=3
"""The hot loops of the elastic deformation: sampling an image or labels at warped
positions with mirrored borders, for images and volumes alike.

Validation and the spline prefilter live in unet_ref/fast/warp.py (`warp`,
`position_field`, `spline_coefficients`) and unet_ref/fast/cells.py (`warp_cells`); the plain
functions they accelerate are unet_ref/augment.py's `sample_positions` and `warp`. Every loop works on volumes
(D, H, W); an image is a volume of one plane (D = 1), and its positions have two rows,
(y, x), instead of three. Arrays are C-contiguous except explicit positions, which may be
any view.

Positions. The displacement field is a tensor-product cubic spline of the knots, so
contracting the knots with the weights of every axis but the last gives a small table
`partial` (ndim, d, h, g), and the position of pixel (k, i, j) along axis a is base[a] +
(k, i, j)[a] + partial[a, k, i] . weights_x[:, j]. The loops take either an array of
positions or that field (a `PositionField`, `_rows`), from which they compute one row at
a time (`_field_row`: g multiply-adds per position, vectorised along the row; j comes from
a table of doubles, since SSE2 has no vector conversion of int64 to double).
`field_positions` writes them all out. For a 3-D training sample's label region (70 x 78
x 78 voxels) that array is 10 MB, written and read once per sample; a row is 2 KB.

`nearest_sample` (instance labels, order 0) copies the sample nearest to each position:
the position is mirrored into [0, L - 1] per axis, then rounded half to even (numpy's
rint; the two steps commute, the mirror axes being whole samples). Ids are never mixed.

`cell_sample` (the training tiles' cells) samples the same way the image's connected
regions, and numbers the cells of the mirrored image: the copy of the image a position
lies in, per axis, joined across the borders its region crosses (unet_ref.fast.cells.
border_crossings), is part of the cell's id. Per axis a table of about 4096 positions
around the image gives the sample and the four possible copy numbers (`Axis`, `_look`).

`cubic_sample` (images, order 3) computes what scipy.ndimage.map_coordinates(coefficients[..., c], positions, order=3,
mode="mirror", prefilter=False) computes, channel by channel (double precision
throughout, float32 only at the end):

1. the position is mirrored into [0, L - 1] per axis (period 2 (L - 1), the edge sample
   not repeated: numpy's "reflect");
2. the cubic B-spline weights of its fractional part t, for the samples
   floor(x) - 1 .. floor(x) + 2:
       (1 - t)^3 / 6,  (3 t^3 - 6 t^2 + 4) / 6,  (-3 t^3 + 3 t^2 + 3 t + 1) / 6,  t^3 / 6;
3. the 4 x 4 (x 4) coefficients around it, their indices mirrored again where the support
   leaves the image, weighted and summed (planes of weight 0 skipped: an image's single
   plane, a position on a whole plane) by ext/_taps.h, two taps along x at a time. Its sum
   runs in another order than scipy's, so the doubles may differ in the last bits
   (tests/test_fast.py compares the float32 results with scipy's to 1e-6).

The sampling loops check that every position is finite (they return False or a status
otherwise, and `warp` raises), so a NaN never becomes an index.

Why not scipy: map_coordinates is generic (any rank, order, mode and dtype); these loops
are specialised to order 3 and the mirror mode, which keeps the training-data pipeline
ahead of the model (benchmarks/test_pipeline.py, benchmarks/test_3d_unet.py and the docs'
performance page measure it). The GIL is released, so tf.data's parallel calls run them
on every core.
"""
from libc.math cimport fabs, fmod, isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from _types cimport sample_t

import numpy as np


cdef extern from "_taps.h" nogil:
    # the sum of the 64 (16) weighted coefficients, two taps at a time (ext/_taps.h)
    double unet_ref_cubic_taps(const double* first, Py_ssize_t plane_stride, const Py_ssize_t* planes,
                               const Py_ssize_t* rows, const double* wz, const double* wy, const double* wx)

# adding and subtracting 1.5 * 2^52 rounds a double in [0, 2^51) to an integer, half to even
cdef double ROUNDING = 6755399441055744.0


cdef inline double _mirror_coordinate(double x, double last) noexcept nogil:
    # x reflected into [0, last] with period 2 last (last = L - 1 > 0)
    x = fabs(x)
    if x > last:
        if x > 2.0 * last:  # fmod is a libm call: only where one reflection is not enough
            x = fmod(x, 2.0 * last)
        if x > last:
            x = 2.0 * last - x
    return x


cdef inline Py_ssize_t _mirror_index(Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    # an index within 2 of [0, n - 1] reflected into it (n >= 2); tiny images may need
    # more than one reflection, hence the loop
    while i < 0 or i >= n:
        if i < 0:
            i = -i
        else:
            i = 2 * (n - 1) - i
    return i


cdef inline Py_ssize_t _nearest(double x, Py_ssize_t n) noexcept nogil:
    # the index of the sample nearest to x along an axis of n samples: mirrored, then
    # rounded half to even as numpy's rint does, by the branch-free 1.5 * 2^52 trick
    # (exact for 0 <= x < 2^51 in IEEE double arithmetic; libm's nearbyint is a function
    # call, half the cost of the whole loop)
    if n == 1:
        return 0
    x = _mirror_coordinate(x, <double>(n - 1))
    return <Py_ssize_t>((x + ROUNDING) - ROUNDING)


cdef inline void _spline_weights(double t, double* w) noexcept nogil:
    # x (1 / 6) instead of / 6: a division costs as much as the rest together; the
    # weights differ from scipy's in the last bit at most
    cdef double t2 = t * t
    cdef double t3 = t2 * t
    cdef double s = 1.0 - t
    cdef double sixth = 1.0 / 6.0
    w[0] = s * s * s * sixth
    w[1] = (3.0 * t3 - 6.0 * t2 + 4.0) * sixth
    w[2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) * sixth
    w[3] = t3 * sixth


cdef inline void _support(double x, Py_ssize_t n, Py_ssize_t* index, double* w) noexcept nogil:
    # the 4 sample indices and spline weights of position x along an axis of n samples
    cdef Py_ssize_t k, start
    if n == 1:  # a single sample: the spline is constant
        for k in range(4):
            index[k] = 0
            w[k] = 0.0
        w[1] = 1.0
        return
    x = _mirror_coordinate(x, <double>(n - 1))
    start = <Py_ssize_t>x  # floor: x >= 0 here
    _spline_weights(x - start, w)
    start -= 1
    if start >= 0 and start + 3 < n:
        for k in range(4):
            index[k] = start + k
    else:
        for k in range(4):
            index[k] = _mirror_index(start + k, n)


cdef struct Rows:
    # the positions of a window's pixels, one row (k, i) at a time, read from an array
    # (rows, d, h, w) by its data and byte strides, or computed from a position field
    # (`field_positions`) into `buffer`; rows = 2 for an image (z = 0)
    Py_ssize_t rows, width
    const char* data
    Py_ssize_t strides[4]
    const double* partial  # (rows, D, H, grid), C order
    Py_ssize_t component, plane, grid  # partial's strides in doubles along its first two axes; its last
    const double* weights  # (grid, W), C order
    Py_ssize_t weights_width
    double base[3]
    Py_ssize_t start[3]  # the window's first pixel in the field
    double* buffer  # (rows, width)
    double* ramp  # 0.0, 1.0, ..., width - 1: j as a double, which vectorises (int64 to double does not)
    # the current row: where its z (NULL for an image), y and x start, and the bytes from
    # one pixel's to the next
    const char* z
    const char* y
    const char* x
    Py_ssize_t step


cdef object _rows(Rows* r, object positions, Py_ssize_t width):
    """Fill r from positions: an array (rows, d, h, w) float64, or a position field
    (partial (rows, D, H, grid), weights (grid, W), base (rows,), start (3,)); returns the
    objects r points into, which the caller keeps alive."""
    cdef const double[:, :, :, :] array
    cdef const double[:, :, :, ::1] partial
    cdef const double[:, ::1] weights
    cdef double[:, ::1] buffer
    cdef Py_ssize_t a
    r.width = width
    if isinstance(positions, tuple):
        partial, weights = positions[0], positions[1]
        r.data, r.rows, r.grid = NULL, partial.shape[0], partial.shape[3]
        r.partial, r.plane = &partial[0, 0, 0, 0], partial.shape[2] * r.grid
        r.component = partial.shape[1] * r.plane
        r.weights, r.weights_width = &weights[0, 0], weights.shape[1]
        for a in range(r.rows):
            r.base[a] = positions[2][a]
        for a in range(3):
            r.start[a] = positions[3][a]
        rows_and_ramp = np.empty((r.rows + 1, width))
        rows_and_ramp[r.rows] = np.arange(width)
        buffer = rows_and_ramp
        r.buffer, r.ramp = &buffer[0, 0], &buffer[r.rows, 0]
        return (partial, weights, buffer)
    array = positions
    r.rows, r.data = array.shape[0], <const char*>&array[0, 0, 0, 0]
    for a in range(4):
        r.strides[a] = array.strides[a]
    return array


cdef inline void _field_row(const Rows* r, Py_ssize_t k, Py_ssize_t i, Py_ssize_t j0, Py_ssize_t j1, double* out,
                            Py_ssize_t out_stride) noexcept nogil:
    # the positions of pixels j0 .. j1 - 1 of row (k, i) of the window, axis a at out + a out_stride:
    # base[a] + (k, i, j)[a] in the field + sum_c partial[a, k, i, c] weights[c, j], summed
    # in this order (loops the compiler vectorises; the paper's grid of 3 knots in one pass)
    cdef Py_ssize_t a, c, j, width = r.width, stride = r.weights_width
    cdef Py_ssize_t pk = r.start[0] + k, pi = r.start[1] + i, pj = r.start[2]
    cdef Py_ssize_t index, step
    cdef double base, first, slope, k0, k1, k2
    cdef double* line
    cdef const double* knots
    cdef const double* w
    cdef const double* w1
    cdef const double* w2
    cdef const double* ramp = r.ramp
    for a in range(r.rows):
        line = out + a * out_stride
        knots = r.partial + a * r.component + pk * r.plane + pi * r.grid
        w = r.weights + pj
        # the pixel's index along this axis: index + j along the last axis, else k or i
        base, step = r.base[a], 1 if a == r.rows - 1 else 0
        index = pj if a == r.rows - 1 else pi if a == r.rows - 2 else pk
        first, slope = <double>index, <double>step  # whole numbers: exact, as the index itself
        if r.grid == 3:
            k0, k1, k2 = knots[0], knots[1], knots[2]
            w1, w2 = w + stride, w + 2 * stride
            for j in range(j0, j1):
                line[j] = base + (first + slope * ramp[j]) + k0 * w[j] + k1 * w1[j] + k2 * w2[j]
            continue
        for j in range(j0, j1):
            line[j] = base + (first + slope * ramp[j])
        for c in range(r.grid):
            for j in range(j0, j1):
                line[j] += knots[c] * w[c * stride + j]


cdef inline bint _row(Rows* r, Py_ssize_t k, Py_ssize_t i, Py_ssize_t j0, Py_ssize_t j1) noexcept nogil:
    # point r.z, r.y, r.x at row (k, i) (computing its pixels j0 .. j1 - 1 from the field first)
    cdef const char* at
    if r.data != NULL:
        at = r.data + k * r.strides[1] + i * r.strides[2]
        r.z = at if r.rows == 3 else NULL
        r.y = at + (r.rows - 2) * r.strides[0]
        r.x = at + (r.rows - 1) * r.strides[0]
        r.step = r.strides[3]
    else:
        _field_row(r, k, i, j0, j1, r.buffer, r.width)
        r.z = <const char*>r.buffer if r.rows == 3 else NULL
        r.y = <const char*>(r.buffer + (r.rows - 2) * r.width)
        r.x = <const char*>(r.buffer + (r.rows - 1) * r.width)
        r.step = sizeof(double)
    return True


cdef inline bint _position(const Rows* r, Py_ssize_t j, double* zyx) noexcept nogil:
    # pixel j of the current row as (z, y, x); False if not finite
    zyx[0] = (<const double*>(r.z + j * r.step))[0] if r.z != NULL else 0.0
    zyx[1] = (<const double*>(r.y + j * r.step))[0]
    zyx[2] = (<const double*>(r.x + j * r.step))[0]
    return isfinite(zyx[0]) and isfinite(zyx[1]) and isfinite(zyx[2])


def field_positions(partial, weights_x, base, start, double[:, :, :, ::1] out):
    """out[a, k, i, j] = base[a] + (k, i, j)[a + 3 - ndim] + sum_c partial[a, k, i, c] weights_x[c, j],
    (k, i, j) counted from `start` (z, y, x) in the field, ndim = out.shape[0] (2 for an
    image: then k = 0 only): the positions the sampling loops compute a row at a time
    when given the field instead."""
    cdef Rows r
    cdef Py_ssize_t k, i
    if out.size == 0:
        return
    keep = _rows(&r, (partial, weights_x, base, start), out.shape[3])
    with nogil:
        for k in range(out.shape[1]):
            for i in range(out.shape[2]):
                _field_row(&r, k, i, 0, out.shape[3], &out[0, k, i, 0], out.shape[1] * out.shape[2] * out.shape[3])


def nearest_sample(const sample_t[:, :, :, ::1] array, positions, sample_t[:, :, :, ::1] out):
    """out[k, i, j, c] = array[the sample nearest to positions[:, k, i, j], c], array
    (D, H, W, C); positions (an array or a position field, `_rows`) read as (z, y, x), or
    as (y, x) with z = 0 when they have two rows (an image, D = 1). False if a position
    is not finite."""
    cdef Py_ssize_t depth = array.shape[0], height = array.shape[1], width = array.shape[2]
    cdef Py_ssize_t channels = array.shape[3]
    cdef Py_ssize_t k, i, j, c, plane, row, col
    cdef double zyx[3]
    cdef Rows r
    cdef bint finite = True
    if array.size == 0 or out.size == 0:
        return True
    keep = _rows(&r, positions, out.shape[2])
    with nogil:
        for k in range(out.shape[0]):
            for i in range(out.shape[1]):
                _row(&r, k, i, 0, out.shape[2])
                for j in range(out.shape[2]):
                    if not _position(&r, j, zyx):
                        finite = False
                        continue
                    plane, row, col = _nearest(zyx[0], depth), _nearest(zyx[1], height), _nearest(zyx[2], width)
                    for c in range(channels):
                        out[k, i, j, c] = array[plane, row, col, c]
    return finite


# how many copies of the image the cells' warp tells apart on either side of it along an
# axis; positions further out (a deformation of hundreds of image lengths) are refused
cdef enum:
    COPIES = 512


cdef inline int64_t _copy(double x, Py_ssize_t n, Py_ssize_t* index) noexcept nogil:
    # the sample nearest to x in the mirrored axis of n samples (index), and the copy of the
    # axis it lies in: copy q holds the rounded positions q (n - 1) .. (q + 1) (n - 1) - 1,
    # the odd copies mirrored. An axis of one sample is its own copy everywhere (q = 0).
    cdef double last = <double>(n - 1), rounded, shifted, r
    cdef int64_t q
    if n == 1:
        index[0] = 0
        return 0
    if not fabs(x) < 2.0 * COPIES * last:  # also keeps x within the rounding trick's range
        return 2 * COPIES
    rounded = (x + ROUNDING) - ROUNDING  # half to even, as _nearest
    # q = floor(rounded / last) by truncating a positive quotient: whole numbers below
    # 2^53 divide exactly when they divide, so the quotient is never rounded up to the
    # next whole number
    shifted = rounded + 2.0 * COPIES * last
    q = <int64_t>(shifted / last)
    r = shifted - q * last  # exact
    index[0] = <Py_ssize_t>(r if q % 2 == 0 else last - r)  # 2 COPIES is even: same parity
    return q - 2 * COPIES


cdef inline int64_t _joined(int64_t copy, int64_t low, int64_t high) noexcept nogil:
    # copies q and q + 1 meet at the axis's high end if q is even, at its low end if q is
    # odd; a cell that crosses an end (low, high: 0 or 1) joins its copies there, so that
    # the copies of one connected piece get one number: crossing both ends, 0; the high
    # end, floor(q / 2) (copies 0 and 1, 2 and 3, ...); the low end, floor((q + 1) / 2)
    # (-1 and 0, 1 and 2, ...). Selects, not branches: the bits change from cell to cell
    cdef int64_t half = ((copy + low + 2 * COPIES) >> 1) - COPIES
    cdef int64_t joined = half if low | high else copy
    return 0 if low & high else joined


cdef struct Axis:
    # the copies of one axis, looked up: for the rounded positions lo .. lo + length - 1,
    # the nearest sample's offset in the regions array (offset[u]) and, per crossing
    # pattern p (bit 0: the low end, bit 1: the high end), the joined copy's share of the
    # cell's code (code[4 u + p])
    Py_ssize_t samples, stride, lo, length
    double limit
    int64_t radix
    Py_ssize_t* offset
    int64_t* code


cdef bint _axis_table(Axis* axis, Py_ssize_t samples, Py_ssize_t stride, int64_t radix) noexcept nogil:
    # a table of about 4096 positions from a few image lengths below the axis to as many
    # above (positions beyond take the arithmetic path, `_look`); False if out of memory
    cdef Py_ssize_t last = max(samples - 1, 1), u, pattern, index
    cdef Py_ssize_t copies = max(1, min(COPIES // 2, 2048 // last))
    cdef int64_t copy
    # |x| < limit: |copy| < COPIES, so that each axis's number fits its digit of the code
    axis.samples, axis.stride, axis.radix, axis.limit = samples, stride, radix, (COPIES - 1.0) * last
    axis.lo, axis.length = -copies * last, (2 * copies + 1) * last
    axis.offset = <Py_ssize_t*>malloc(axis.length * sizeof(Py_ssize_t))
    axis.code = <int64_t*>malloc(4 * axis.length * sizeof(int64_t))
    if axis.offset == NULL or axis.code == NULL:
        return False
    for u in range(axis.length):
        copy = _copy(<double>(axis.lo + u), samples, &index)
        axis.offset[u] = index * stride
        for pattern in range(4):
            axis.code[4 * u + pattern] = (_joined(copy, pattern & 1, pattern >> 1) + COPIES) * radix
    return True


cdef inline bint _look(const Axis* axis, double x, Py_ssize_t* offset, const int64_t** codes,
                       int64_t* spare) noexcept nogil:
    # the nearest sample's offset and the 4 codes of position x (in the table, or computed
    # into spare); False if x lies too far away
    cdef Py_ssize_t u, index, pattern
    cdef int64_t copy
    if not fabs(x) < axis.limit:  # also keeps x within the rounding trick's range
        return False
    u = <Py_ssize_t>((x + ROUNDING) - ROUNDING) - axis.lo
    if 0 <= u < axis.length:
        offset[0], codes[0] = axis.offset[u], axis.code + 4 * u
        return True
    copy = _copy(x, axis.samples, &index)
    for pattern in range(4):
        spare[pattern] = (_joined(copy, pattern & 1, pattern >> 1) + COPIES) * axis.radix
    offset[0], codes[0] = index * axis.stride, spare
    return True


def cell_sample(const int32_t[:, :, ::1] regions, const uint8_t[::1] crossings, positions, int64_t[:, :, ::1] out,
                const Py_ssize_t[:, :, ::1] spans=None):
    """out[k, i, j] = the cell at positions[:, k, i, j] in the mirrored image: the id r of
    the nearest sample's region (regions (D, H, W): 1..n, 0 = background) and the copy of
    the image it lies in, as r + (n + 1) code(copy). The copies of a region that crosses an
    image border (crossings[r], bit 2 a: the low end of axis a (z, y, x), bit 2 a + 1: the
    high end) are joined there, as they are connected in the mirrored image. Positions (an
    array or a position field) are read as `nearest_sample` reads them. spans (D, H, 2),
    optional: sample only pixels spans[k, i, 0] .. spans[k, i, 1] - 1 of each row (the
    caller checks 0 <= start <= stop <= W), the others are 0 (background). Returns 0; 1 if
    a position is not finite, 2 if one lies more than COPIES image lengths away, 3 if out
    of memory, 4 if a region has no entry in crossings."""
    cdef Py_ssize_t size = 2 * COPIES + 1, height = regions.shape[1], width = regions.shape[2]
    cdef int64_t count = crossings.shape[0]
    cdef Py_ssize_t k, i, j, a, oz, oy, ox, j0, j1
    cdef int64_t sz[4]
    cdef int64_t sy[4]
    cdef int64_t sx[4]
    cdef const int64_t* cz
    cdef const int64_t* cy
    cdef const int64_t* cx
    cdef int32_t region
    cdef uint8_t bits
    cdef double zyx[3]
    cdef Axis axes[3]
    cdef Rows r
    cdef const int32_t* source
    cdef const uint8_t* crossing = &crossings[0]
    cdef int64_t* target
    cdef int status = 0
    if out.size == 0:
        return 0
    source = &regions[0, 0, 0]
    keep = _rows(&r, positions, out.shape[2])
    with nogil:
        for a in range(3):
            axes[a].offset, axes[a].code = NULL, NULL
        if not (_axis_table(&axes[0], regions.shape[0], height * width, size * size)
                and _axis_table(&axes[1], height, width, size) and _axis_table(&axes[2], width, 1, 1)):
            status = 3
        for k in range(out.shape[0] if status == 0 else 0):
            for i in range(out.shape[1]):
                j0, j1 = 0, out.shape[2]
                if spans is not None:
                    j0, j1 = spans[k, i, 0], spans[k, i, 1]
                target = &out[k, i, 0]
                for j in range(j0):
                    target[j] = 0
                for j in range(j1, out.shape[2]):
                    target[j] = 0
                _row(&r, k, i, j0, j1)
                for j in range(j0, j1):
                    if not _position(&r, j, zyx):
                        status = 1
                        continue
                    if not (_look(&axes[0], zyx[0], &oz, &cz, sz) and _look(&axes[1], zyx[1], &oy, &cy, sy)
                            and _look(&axes[2], zyx[2], &ox, &cx, sx)):
                        status = 2 if status == 0 else status
                        continue
                    region = source[oz + oy + ox]
                    if <uint32_t>region >= <uint64_t>count:  # negative, or no entry in crossings
                        status = 4 if status == 0 else status
                        continue
                    bits = crossing[region]  # 0 for the background
                    target[j] = region + (region != 0) * count * (cz[bits & 3] + cy[(bits >> 2) & 3] + cx[bits >> 4])
        for a in range(3):
            free(axes[a].offset)
            free(axes[a].code)
    return status


def cubic_sample(const double[:, :, :, ::1] coefficients, positions, float[:, :, :, ::1] out):
    """out[k, i, j, c] = the cubic spline of coefficients[..., c] (D, H, W, C) at
    positions[:, k, i, j] (read as `nearest_sample` reads them). False if a position is
    not finite."""
    cdef Py_ssize_t depth = coefficients.shape[0], height = coefficients.shape[1]
    cdef Py_ssize_t width = coefficients.shape[2], channels = coefficients.shape[3]
    cdef Py_ssize_t row_stride = width * channels, plane_stride = height * row_stride
    cdef Py_ssize_t k, i, j, c, a, b, t
    cdef Py_ssize_t planes[4]
    cdef Py_ssize_t rows[4]
    cdef Py_ssize_t cols[4]
    cdef double wz[4]
    cdef double wy[4]
    cdef double wx[4]
    cdef double zyx[3]
    # the 4 x 4 x 4 coefficients around a position, gathered where its 4 taps along x are
    # not 4 consecutive doubles (mirrored at the left or right edge, or several channels)
    cdef double support[64]
    cdef Py_ssize_t support_planes[4]
    cdef Py_ssize_t support_rows[4]
    cdef const double* start
    cdef const double* row
    cdef Rows r
    cdef bint finite = True
    if coefficients.size == 0 or out.size == 0:
        return True
    for a in range(4):
        support_planes[a], support_rows[a] = a, 4 * a
    start = &coefficients[0, 0, 0, 0]
    keep = _rows(&r, positions, out.shape[2])
    with nogil:
        for k in range(out.shape[0]):
            for i in range(out.shape[1]):
                _row(&r, k, i, 0, out.shape[2])
                for j in range(out.shape[2]):
                    if not _position(&r, j, zyx):
                        finite = False
                        continue
                    _support(zyx[0], depth, planes, wz)
                    _support(zyx[1], height, rows, wy)
                    _support(zyx[2], width, cols, wx)
                    for b in range(4):  # offsets within a plane
                        rows[b] *= row_stride
                    if channels == 1 and cols[3] == cols[0] + 3:
                        out[k, i, j, 0] = <float>unet_ref_cubic_taps(start + cols[0], plane_stride, planes, rows,
                                                                     wz, wy, wx)
                        continue
                    for c in range(channels):
                        for a in range(4):
                            if wz[a] == 0.0:
                                continue
                            for b in range(4):
                                row = start + planes[a] * plane_stride + rows[b] + c
                                for t in range(4):
                                    support[16 * a + 4 * b + t] = row[cols[t] * channels]
                        out[k, i, j, c] = <float>unet_ref_cubic_taps(support, 16, support_planes, support_rows,
                                                                     wz, wy, wx)
    return finite
