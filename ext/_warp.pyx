# cython: language_level=3
"""Sampling at warped positions with mirrored borders: the hot loops of the elastic deformation.

Validation and the spline prefilter live in unet_ref/augment.py (`warp`,
`spline_coefficients`); the functions here assume float64 positions (2, h, w) that are
all finite, C-contiguous float64 coefficients (H, W, C) and C-contiguous outputs.

`nearest_index` (instance labels, order 0) gives the flat index row * W + col of the
sample nearest to each position: the position is mirrored into [0, L - 1] per axis, then
rounded half to even (numpy's rint; the two steps commute, the mirror axes being whole
samples). Indexing the labels with it never mixes ids.

`cubic_sample` (images, order 3) computes what scipy.ndimage.map_coordinates(coefficients[..., c], positions, order=3,
mode="mirror", prefilter=False) computes, channel by channel, in the same order of
operations as far as it matters (double precision throughout, float32 only at the end):

1. the position is mirrored into [0, L - 1] per axis (period 2 (L - 1), the edge sample
   not repeated: numpy's "reflect");
2. the cubic B-spline weights of its fractional part t, for the samples
   floor(x) - 1 .. floor(x) + 2:
       (1 - t)^3 / 6,  (3 t^3 - 6 t^2 + 4) / 6,  (-3 t^3 + 3 t^2 + 3 t + 1) / 6,  t^3 / 6;
3. the 4 x 4 coefficients around it, their indices mirrored again where the support
   leaves the image, weighted and summed.

Why not scipy: map_coordinates is generic (any rank, order, mode and dtype) and spends
about 45 ns per pixel on a 188 px tile; this loop, specialised to 2-D, order 3 and the
mirror mode, spends about a quarter of that, which keeps the training-data pipeline
well ahead of the model (benchmarks/test_pipeline.py). The GIL is released, so tf.data's
parallel calls run it on every core.
"""
from libc.math cimport fabs, fmod, nearbyint


cdef inline double _mirror_coordinate(double x, double last) noexcept nogil:
    # x reflected into [0, last] with period 2 last (last = L - 1 > 0)
    x = fabs(x)
    if x > last:
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


cdef inline void _spline_weights(double t, double* w) noexcept nogil:
    cdef double t2 = t * t
    cdef double t3 = t2 * t
    cdef double s = 1.0 - t
    w[0] = s * s * s / 6.0
    w[1] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    w[2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
    w[3] = t3 / 6.0


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


def cubic_sample(const double[:, :, ::1] coefficients, const double[:, :, :] positions,
                 float[:, :, ::1] out):
    """out[i, j, c] = the cubic spline of coefficients[..., c] at positions[:, i, j]."""
    cdef Py_ssize_t height = coefficients.shape[0], width = coefficients.shape[1]
    cdef Py_ssize_t channels = coefficients.shape[2]
    cdef Py_ssize_t i, j, c, a
    cdef Py_ssize_t rows[4]
    cdef Py_ssize_t cols[4]
    cdef double wy[4]
    cdef double wx[4]
    cdef double total
    cdef const double* row
    if coefficients.size == 0 or out.size == 0:
        return
    with nogil:
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                _support(positions[0, i, j], height, rows, wy)
                _support(positions[1, i, j], width, cols, wx)
                for c in range(channels):
                    total = 0.0
                    for a in range(4):
                        row = &coefficients[rows[a], 0, c]  # channel c of that image row
                        total = total + wy[a] * (wx[0] * row[cols[0] * channels] + wx[1] * row[cols[1] * channels]
                                                 + wx[2] * row[cols[2] * channels] + wx[3] * row[cols[3] * channels])
                    out[i, j, c] = <float>total

def nearest_index(const double[:, :, :] positions, Py_ssize_t height, Py_ssize_t width,
                  Py_ssize_t[:, ::1] out):
    """out[i, j] = row * width + col of the sample nearest to positions[:, i, j]."""
    cdef Py_ssize_t i, j, row, col
    cdef double last_row = height - 1, last_col = width - 1
    with nogil:
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                row = 0 if height == 1 else <Py_ssize_t>nearbyint(_mirror_coordinate(positions[0, i, j], last_row))
                col = 0 if width == 1 else <Py_ssize_t>nearbyint(_mirror_coordinate(positions[1, i, j], last_col))
                out[i, j] = row * width + col
