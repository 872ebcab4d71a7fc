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
