# cython: language_level=3
"""The hot loops of the elastic deformation: sampling an image or labels at warped
positions with mirrored borders, for images and volumes alike.

Validation and the spline prefilter live in unet_ref/augment.py (`warp`,
`sample_positions`, `spline_coefficients`). Every loop works on volumes (D, H, W); an image
is a volume of one plane (D = 1), and its positions have two rows, (y, x), instead of
three. Arrays are C-contiguous except explicit positions, which may be any view.

`field_positions` writes the positions of a window (`sample_positions`): the displacement
field is a tensor-product cubic spline of the knots, so contracting the knots with the
weights of every axis but the last gives a small table `partial` (ndim, d, h, g), and the
position of pixel (k, i, j) along axis a is base[a] + (k, i, j)[a] + partial[a, k, i] .
weights_x[:, j]: one pass of g multiply-adds per position, vectorised along rows.
(Computing them inside the sampling loops instead was measured slower: computing them is
the cost, not storing them.)

`nearest_sample` (instance labels, order 0) copies the sample nearest to each position:
the position is mirrored into [0, L - 1] per axis, then rounded half to even (numpy's
rint; the two steps commute, the mirror axes being whole samples). Ids are never mixed.

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
   runs in another order than scipy's, so the doubles may differ in the last bits; the
   float32 results were equal on every pixel of a 512 x 512 image and a 32 x 64 x 64
   volume (tests/test_augment.py allows 1e-6).

Both sampling loops check that every position is finite (they return False otherwise,
and `warp` raises), so a NaN never becomes an index.

Why not scipy: map_coordinates is generic (any rank, order, mode and dtype) and spends
about 45 ns per pixel on a 188 px tile and 210 ns per voxel on a 3-D tile; these loops,
specialised to order 3 and the mirror mode, spend a quarter of that or less, which keeps
the training-data pipeline ahead of the model (benchmarks/test_pipeline.py,
benchmarks/test_3d_unet.py). The GIL is released, so tf.data's parallel calls run them
on every core.
"""
from libc.math cimport fabs, fmod, isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc

from _types cimport sample_t


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


cdef inline bint _position(const char* positions, const Py_ssize_t* strides, Py_ssize_t rows, Py_ssize_t k,
                           Py_ssize_t i, Py_ssize_t j, double* zyx) noexcept nogil:
    # the position of pixel (k, i, j) as (z, y, x) from positions (rows, d, h, w) given by
    # their data and strides in bytes (rows = 2 for an image: z = 0); False if not finite
    cdef const char* at = positions + k * strides[1] + i * strides[2] + j * strides[3]
    zyx[0] = (<const double*>at)[0] if rows == 3 else 0.0
    zyx[1] = (<const double*>(at + (rows - 2) * strides[0]))[0]
    zyx[2] = (<const double*>(at + (rows - 1) * strides[0]))[0]
    return isfinite(zyx[0]) and isfinite(zyx[1]) and isfinite(zyx[2])


def field_positions(const double[:, :, :, ::1] partial, const double[:, ::1] weights_x, const double[::1] base,
                    double[:, :, :, ::1] out):
    """out[a, k, i, j] = base[a] + (k, i, j)[a + 3 - ndim] + sum_c partial[a, k, i, c] weights_x[c, j],
    ndim = out.shape[0] (2 for an image: then k = 0 only)."""
    cdef Py_ssize_t ndim = out.shape[0], grid = weights_x.shape[0], width = out.shape[3], skip = 3 - ndim
    cdef Py_ssize_t a, k, i, j, c
    cdef double offset, knot
    cdef double* line
    cdef const double* weights
    if out.size == 0:
        return
    with nogil:
        for a in range(ndim):
            for k in range(out.shape[1]):
                for i in range(out.shape[2]):
                    line = &out[a, k, i, 0]
                    if a + skip == 2:  # the last axis: the pixel's index is j
                        for j in range(width):
                            line[j] = base[a] + j
                    else:
                        offset = base[a] + (k if a + skip == 0 else i)
                        for j in range(width):
                            line[j] = offset
                    for c in range(grid):  # one knot column at a time: a loop the compiler vectorises
                        knot, weights = partial[a, k, i, c], &weights_x[c, 0]
                        for j in range(width):
                            line[j] += knot * weights[j]


def nearest_sample(const sample_t[:, :, :, ::1] array, const double[:, :, :, :] positions,
                   sample_t[:, :, :, ::1] out):
    """out[k, i, j, c] = array[the sample nearest to positions[:, k, i, j], c], array
    (D, H, W, C); positions read as (z, y, x), or as (y, x) with z = 0 when they have two
    rows (an image, D = 1). False if a position is not finite."""
    cdef Py_ssize_t depth = array.shape[0], height = array.shape[1], width = array.shape[2]
    cdef Py_ssize_t channels = array.shape[3], rows = positions.shape[0]
    cdef Py_ssize_t k, i, j, c, plane, row, col
    cdef double zyx[3]
    cdef const char* where
    cdef bint finite = True
    if array.size == 0 or out.size == 0:
        return True
    where = <const char*>&positions[0, 0, 0, 0]
    with nogil:
        for k in range(out.shape[0]):
            for i in range(out.shape[1]):
                for j in range(out.shape[2]):
                    if not _position(where, &positions.strides[0], rows, k, i, j, zyx):
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
    # the sample (index) and, per crossing pattern (bit 0: the low end, bit 1: the high
    # end), the joined copy's share of the cell's code (code[pattern * length + u])
    Py_ssize_t samples, lo, length
    double limit
    int64_t radix
    Py_ssize_t* index
    int64_t* code


cdef bint _axis_table(Axis* axis, Py_ssize_t samples, int64_t radix) noexcept nogil:
    # a table of about 4096 positions from a few image lengths below the axis to as many
    # above (positions beyond take the arithmetic path); False if out of memory
    cdef Py_ssize_t last = max(samples - 1, 1), u, pattern, index
    cdef Py_ssize_t copies = max(1, min(COPIES // 2, 2048 // last))
    cdef int64_t copy
    # |x| < limit: |copy| < COPIES, so that each axis's number fits its digit of the code
    axis.samples, axis.radix, axis.limit = samples, radix, (COPIES - 1.0) * last
    axis.lo, axis.length = -copies * last, (2 * copies + 1) * last
    axis.index = <Py_ssize_t*>malloc(axis.length * sizeof(Py_ssize_t))
    axis.code = <int64_t*>malloc(4 * axis.length * sizeof(int64_t))
    if axis.index == NULL or axis.code == NULL:
        return False
    for u in range(axis.length):
        copy = _copy(<double>(axis.lo + u), samples, &index)
        axis.index[u] = index
        for pattern in range(4):
            axis.code[pattern * axis.length + u] = (_joined(copy, pattern & 1, pattern >> 1) + COPIES) * radix
    return True


def cell_sample(const int32_t[:, :, ::1] regions, const uint8_t[::1] crossings, const double[:, :, :, :] positions,
                int64_t[:, :, ::1] out):
    """out[k, i, j] = the cell at positions[:, k, i, j] in the mirrored image: the id r of
    the nearest sample's region (regions (D, H, W): 1..n, 0 = background) and the copy of
    the image it lies in, as r + (n + 1) code(copy). The copies of a region that crosses an
    image border (crossings[r], bit 2 a: the low end of axis a (z, y, x), bit 2 a + 1: the
    high end) are joined there, as they are connected in the mirrored image. Positions are
    read as `nearest_sample` reads them. Returns 0, 1 if a position is not finite, 2 if one
    lies more than COPIES image lengths away, 3 if out of memory."""
    cdef Py_ssize_t rows = positions.shape[0], size = 2 * COPIES + 1
    cdef int64_t count = crossings.shape[0], code
    cdef Py_ssize_t k, i, j, a
    cdef Py_ssize_t u[3]
    cdef Py_ssize_t at[3]
    cdef int64_t copy[3]
    cdef int32_t region
    cdef uint8_t bits, pattern
    cdef double zyx[3]
    cdef Axis axes[3]
    cdef const char* where
    cdef int status = 0
    if out.size == 0:
        return 0
    where = <const char*>&positions[0, 0, 0, 0]
    with nogil:
        for a in range(3):
            axes[a].index, axes[a].code = NULL, NULL
        for a in range(3):
            if not _axis_table(&axes[a], regions.shape[a], size ** (2 - a)):
                status = 3
        for k in range(out.shape[0] if status == 0 else 0):
            for i in range(out.shape[1]):
                for j in range(out.shape[2]):
                    if not _position(where, &positions.strides[0], rows, k, i, j, zyx):
                        status = 1
                        continue
                    for a in range(3):
                        if not fabs(zyx[a]) < axes[a].limit:  # also within the rounding trick's range
                            status = 2 if status == 0 else status
                            break
                        u[a] = <Py_ssize_t>((zyx[a] + ROUNDING) - ROUNDING) - axes[a].lo
                        if 0 <= u[a] < axes[a].length:
                            at[a] = axes[a].index[u[a]]
                        else:  # far from the image: computed
                            copy[a] = _copy(zyx[a], axes[a].samples, &at[a])
                            u[a] = -1
                    else:
                        region = regions[at[0], at[1], at[2]]
                        bits = crossings[region]  # 0 for the background
                        code = 0
                        for a in range(3):
                            pattern = (bits >> (2 * a)) & 3
                            if u[a] >= 0:
                                code += axes[a].code[pattern * axes[a].length + u[a]]
                            else:
                                code += (_joined(copy[a], pattern & 1, pattern >> 1) + COPIES) * axes[a].radix
                        out[k, i, j] = region + (region != 0) * count * code
        for a in range(3):
            free(axes[a].index)
            free(axes[a].code)
    return status


def cubic_sample(const double[:, :, :, ::1] coefficients, const double[:, :, :, :] positions,
                 float[:, :, :, ::1] out):
    """out[k, i, j, c] = the cubic spline of coefficients[..., c] (D, H, W, C) at
    positions[:, k, i, j] (read as `nearest_sample` reads them). False if a position is
    not finite."""
    cdef Py_ssize_t depth = coefficients.shape[0], height = coefficients.shape[1]
    cdef Py_ssize_t width = coefficients.shape[2], channels = coefficients.shape[3]
    cdef Py_ssize_t row_stride = width * channels, plane_stride = height * row_stride
    cdef Py_ssize_t ndim = positions.shape[0]  # 3: (z, y, x); 2: (y, x)
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
    cdef const char* where
    cdef bint finite = True
    if coefficients.size == 0 or out.size == 0:
        return True
    for a in range(4):
        support_planes[a], support_rows[a] = a, 4 * a
    start, where = &coefficients[0, 0, 0, 0], <const char*>&positions[0, 0, 0, 0]
    with nogil:
        for k in range(out.shape[0]):
            for i in range(out.shape[1]):
                for j in range(out.shape[2]):
                    if not _position(where, &positions.strides[0], ndim, k, i, j, zyx):
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
