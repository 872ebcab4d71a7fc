# cython: language_level=3
"""Exact one-pass d1/d2 for the U-Net weight map: the hot loops only.

Validation, dtype handling and contiguity live in unet_ref/weights.py; every function here
assumes a C-contiguous (H, W) label image with labels >= 0, 0 = background.

For every pixel x: d1 = distance to the nearest object pixel, d2 = distance to the nearest
pixel whose label differs from that object's label. All squared distances are integers
and are computed exactly in int64; the float32 results are (float)sqrt((double)sq), which
is what float32(scipy's float64 distance) is, so the output is bit-identical to the
per-object reference (unet_ref.reference.d1_d2).

Algorithm (separable, like every exact Euclidean distance transform):

1. Column pass (axis 0). For each pixel keep the two nearest DISTINCT labels in its column
   with their squared vertical distances, (l1, g1) and (l2, g2), g1 <= g2, l1 != l2
   (label 0, g = INF when absent). Only l1 and the int32 distances dy1, dy2 (g = dy^2)
   are stored: the row pass never needs l2's label, only that it is not l1. A top-down
   sweep keeps, per column, the last row of the current label run (a) and of the
   previous distinct label (b): between b's row and the current row there are only
   background pixels and pixels of label a, so a and b are the two nearest distinct
   labels above. A bottom-up sweep does the same below, and the two pairs are merged.
   Rows are swept over a block of columns at once, so the memory access is contiguous.

2. Row pass (axis 1), one row at a time, with g1 = dy1^2, g2 = dy2^2 per column x':
      d1(x)^2 = min_x' (x - x')^2 + g1(x')
   is the lower envelope of parabolas (Felzenszwalb & Huttenlocher 2012), linear time;
   its argmin a(x) gives the nearest label L1(x) = l1(a(x)). Then
      d2(x)^2 = min( A(x), E2(x) ),
      A(x)  = min over x' with l1(x') != L1(x) of (x - x')^2 + g1(x'),
      E2(x) = min over all x' of (x - x')^2 + g2(x')   (a second envelope, linear).
   A(x) is computed per run: a maximal interval J = [s, e] of x over which L1(x) is one
   label mu. On J, A is the lower envelope of the parabolas of the columns with l1 != mu,
   and only the columns between u = a(s - 1) and w = a(e + 1) can be its argmin (below),
   so the kernel builds that envelope over the columns u..w, skipping label mu, and reads
   it on J.

Why two distinct labels per column are enough. d2(x)^2 is the minimum over all pixels p
with label(p) not in {0, L1} of |x - p|^2; group those pixels by column x'. In column x'
the nearest such pixel is (l1, g1) if l1(x') != L1, and otherwise (l2, g2), because l2
is by definition the nearest label != l1 in that column. So
      d2(x)^2 = min_x' (x - x')^2 + (g1(x') if l1(x') != L1(x) else g2(x')),
and the pair per column carries everything; d1 needs only (l1, g1). E2 may also use the
g2 parabola of a column with l1(x') != L1 (whose l2 may be L1 itself, an invalid
candidate) but that parabola lies above the column's g1 parabola, which A includes, so the
minimum does not change. Ties (two objects at the same distance d1) give d2 = d1 whichever
is called L1, so any argmin is correct.

Why the row pass is linear on every input. (i) The argmin of a lower envelope of
parabolas (x - q)^2 + c_q only moves right: if q is a minimiser at x0 and p < q, then
f_p - f_q = 2x(q - p) + const grows with x, so p is never a minimiser at any x > x0. (ii)
Let J = [s, e] be a run of label mu, and apply (i) to the columns with l1 != mu: a(s - 1)
is the nearest column of all at s - 1 and its label is not mu (s - 1 belongs to the
previous run), so it is also a minimiser of that restricted envelope at s - 1, and every
minimiser on J lies at or right of it; symmetrically at or left of a(e + 1). So the
envelope over the columns u..w (u = a(s - 1), w = a(e + 1); the row's ends for the first
and the last run) is exact on J. (iii) The ranges [u_k, w_k] of the runs k = 1, 2, ...
both move right with k, and range k + 3 starts strictly after range k ends: w_k =
a(s_(k+1)) <= a(e_(k+1)) < a(s_(k+2)) <= a(e_(k+2)) = u_(k+3), the strict step because
a(e_(k+1)) and a(s_(k+2)) have different labels, hence are different columns. So every
column lies in at most three ranges, the envelopes of all runs together scan at most 3 W
columns, and the row costs at most 5 W column visits (two whole-row envelopes and the
runs), whatever the layout. (The previous row pass scanned outward from x for A(x); on
sparse images it visited O(W^2 / run length) columns per row.)

"""
import numpy as np

cimport cython
from cython.parallel cimport parallel, prange
from libc.math cimport exp, sqrt, INFINITY
from libc.stdint cimport (int8_t, int16_t, int32_t, int64_t,
                          uint8_t, uint16_t, uint32_t, uint64_t)
from libc.stdlib cimport free, malloc

ctypedef fused label_t:
    int8_t
    int16_t
    int32_t
    int64_t
    uint8_t
    uint16_t
    uint32_t
    uint64_t

# "no such label": the column pass stores vertical distances dy as int32 (half the memory
# of int64 squares) with NONE for "absent"; squared, NONE becomes INF, which is larger
# than any squared distance and small enough that INF + dx^2 fits in int64
cdef int32_t NONE = 2147483647
cdef int64_t INF = <int64_t>NONE * NONE
# columns per block of the column pass: wide enough for contiguous rows, small enough
# that the blocks spread over the threads
cdef Py_ssize_t BLOCK = 64


cdef inline void _sweep_update(label_t L, int32_t y, Py_ssize_t x, label_t* a_lab,
                               int32_t* a_pos, int32_t* b_pos) noexcept nogil:
    # a = the label seen last and its last row; b_pos = the last row of the distinct label
    # before it (-1: none). Only l2's distance is needed later, never its label. Written
    # as selects, not branches: label changes along a column are unpredictable
    cdef bint seen = L != 0
    cdef bint new = seen & (L != a_lab[x])
    b_pos[x] = a_pos[x] if new else b_pos[x]
    a_lab[x] = L if seen else a_lab[x]
    a_pos[x] = y if seen else a_pos[x]


cdef void _column_block(const label_t* lab, label_t* l1, int32_t* g1, int32_t* g2,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t x0, Py_ssize_t x1,
                        label_t* a_lab, int32_t* a_pos, int32_t* b_pos) noexcept nogil:
    """Columns x0..x1-1: per pixel the nearest label l1, and the vertical distances dy1 to
    it and dy2 to the nearest label != l1 (NONE if absent)."""
    cdef Py_ssize_t x, i
    cdef int32_t y
    cdef label_t ul1, dl1, fl, ol1
    cdef int32_t ud1, ud2, dd1, dd2, fd, od1, od2, sd, od
    cdef bint up
    for x in range(x0, x1):
        a_lab[x] = 0
        a_pos[x] = -1
        b_pos[x] = -1
    # top-down: the two nearest distinct labels at or above
    for y in range(H):
        i = y * W
        for x in range(x0, x1):
            _sweep_update(lab[i + x], y, x, a_lab, a_pos, b_pos)
            l1[i + x] = a_lab[x]
            g1[i + x] = y - a_pos[x] if a_pos[x] >= 0 else NONE
            g2[i + x] = y - b_pos[x] if b_pos[x] >= 0 else NONE
    for x in range(x0, x1):
        a_lab[x] = 0
        a_pos[x] = -1
        b_pos[x] = -1
    # bottom-up, merged with the top-down pair: first = the nearer of the two sides' first;
    # second = the nearer of that side's second and the other side's nearest label != first
    for y in range(H - 1, -1, -1):
        i = y * W
        for x in range(x0, x1):
            _sweep_update(lab[i + x], y, x, a_lab, a_pos, b_pos)
            dl1 = a_lab[x]
            dd1 = a_pos[x] - y if a_pos[x] >= 0 else NONE
            dd2 = b_pos[x] - y if b_pos[x] >= 0 else NONE
            ul1 = l1[i + x]
            ud1 = g1[i + x]
            ud2 = g2[i + x]
            up = ud1 <= dd1
            fl = ul1 if up else dl1
            fd = ud1 if up else dd1
            sd = ud2 if up else dd2  # the first side's second
            ol1 = dl1 if up else ul1  # the other side's pair
            od1 = dd1 if up else ud1
            od2 = dd2 if up else ud2
            od = od1 if ol1 != fl else od2
            l1[i + x] = fl
            g1[i + x] = fd
            g2[i + x] = sd if sd < od else od


cdef Py_ssize_t _envelope(const int64_t* g, const label_t* lab, Py_ssize_t p0, Py_ssize_t p1,
                          bint skip, label_t mu, Py_ssize_t* v, int64_t* f) noexcept nogil:
    """Lower envelope of the parabolas (x - q)^2 + g[q], q in p0..p1 with g[q] < INF (and
    lab[q] != mu if skip); returns their count.

    v[k] = apex column of the k-th lowest parabola from the left, f[k] = g[v] + v^2.
    Felzenszwalb & Huttenlocher's algorithm with its intersection test
    s(p, q) = (f_q - f_p) / (2 (q - p)) cross-multiplied, so that everything stays exact
    in int64 and no division is needed (|f| < 2^41 for H, W <= 2^20: products < 2^62).
    """
    cdef Py_ssize_t q, p, pp, k = -1
    cdef int64_t fq
    for q in range(p0, p1 + 1):
        if g[q] >= INF or (skip and lab[q] == mu):
            continue
        fq = g[q] + q * q
        # drop the last parabola while the new one overtakes it before it got lowest:
        # s(p, q) <= s(pp, p)
        while k >= 1:
            p = v[k]
            pp = v[k - 1]
            if (fq - f[k]) * (p - pp) > (f[k] - f[k - 1]) * (q - p):
                break
            k -= 1
        k += 1
        v[k] = q
        f[k] = fq
    return k + 1


cdef inline Py_ssize_t _advance(Py_ssize_t k, Py_ssize_t m, Py_ssize_t x, const Py_ssize_t* v,
                                const int64_t* f) noexcept nogil:
    # the envelope's parabola at x: move on while the next one is no higher there,
    # (x - v')^2 + g' <= (x - v)^2 + g  <=>  f' - f <= 2 x (v' - v)
    while k + 1 < m and f[k + 1] - f[k] <= 2 * x * (v[k + 1] - v[k]):
        k += 1
    return k


cdef Py_ssize_t _line(const label_t* lab, const int64_t* g1, const int64_t* g2, Py_ssize_t n,
                      Py_ssize_t lo, Py_ssize_t hi, int64_t* G1, int64_t* G2, Py_ssize_t* v,
                      int64_t* f, Py_ssize_t* arg) noexcept nogil:
    """One line: G1[x], G2[x] = squared d1, d2 for x in lo..hi-1, from the nearest label
    lab[q] and the squared distances g1[q] to it and g2[q] to the nearest other label of
    every position q (INF: none). Returns the positions the envelopes scanned (<= 5 n)."""
    cdef Py_ssize_t m, k, x, y, s, e, u, w, p, work = 2 * n
    cdef label_t mu
    cdef int64_t a
    m = _envelope(g1, lab, 0, n - 1, False, 0, v, f)
    if m == 0:  # no object on this line's positions, hence none in the image
        for x in range(lo, hi):
            G1[x] = INF
            G2[x] = INF
        return work
    # the nearest position arg[x] of every x (the runs' bounds may lie outside lo..hi-1)
    k = 0
    for x in range(n):
        k = _advance(k, m, x, v, f)
        arg[x] = v[k]
    for x in range(lo, hi):
        p = arg[x]
        G1[x] = (x - p) * (x - p) + g1[p]
    # E2: every second-nearest candidate
    m = _envelope(g2, lab, 0, n - 1, False, 0, v, f)
    k = 0
    for x in range(lo, hi):
        if m == 0:
            G2[x] = INF
            continue
        k = _advance(k, m, x, v, f)
        p = v[k]
        G2[x] = (x - p) * (x - p) + g2[p]
    # A: per run [s, e] of one nearest label mu, the envelope of the other labels over the
    # positions arg[s - 1]..arg[e + 1] (module docstring: exact, <= 3 n positions in all)
    s = lo
    mu = lab[arg[lo]]
    while s > 0 and lab[arg[s - 1]] == mu:
        s -= 1
    x = lo
    while x < hi:
        mu = lab[arg[x]]
        e = x
        while e + 1 < n and lab[arg[e + 1]] == mu:
            e += 1
        u = arg[s - 1] if s > 0 else 0
        w = arg[e + 1] if e + 1 < n else n - 1
        work += w - u + 1
        m = _envelope(g1, lab, u, w, True, mu, v, f)
        if m > 0:
            k = 0
            for y in range(x, min(e + 1, hi)):
                k = _advance(k, m, y, v, f)
                p = v[k]
                a = (y - p) * (y - p) + g1[p]
                if a < G2[y]:
                    G2[y] = a
        x = e + 1
        s = x
    return work


# sqrt of the small squared distances, looked up: most d1^2, d2^2 on cell images are
# below 4096 and the table (32 KB) stays in cache; same float64 sqrt, so same bits
cdef enum:
    N_ROOTS = 4096
cdef double ROOTS[N_ROOTS]
for _i in range(N_ROOTS):
    ROOTS[_i] = sqrt(<double>_i)


cdef inline double _root(int64_t sq) noexcept nogil:
    # sq < INF
    return ROOTS[sq] if sq < N_ROOTS else sqrt(<double>sq)


cdef inline float _dist(int64_t sq) noexcept nogil:
    # float32(float64 sqrt) of the exact integer: what float32(scipy's EDT) is
    return <float>_root(sq) if sq < INF else INFINITY


def _nearest_two(const label_t[:, ::1] labels, float[:, ::1] d1, float[:, ::1] d2,
                 float[:, ::1] w, double wc0, double wc1, double w0, double sigma,
                 bint border_all, int num_threads, Py_ssize_t top, Py_ssize_t left):
    """Fill d1, d2 (when w is None) or the weight map w (when d1, d2 are None) on the
    window of the outputs' shape at (top, left) of the label image.

    w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2)), computed in float64 like the reference,
    with w_c = wc0 on background (label 0) and wc1 on objects; the border term is added
    everywhere (border_all) or on background only. The column pass covers the whole image
    (every column may hold the nearest cell), the row pass only the window's rows.
    Returns the number of positions the row pass's envelopes scanned (at most 5 W per row,
    module docstring), which the tests check on adversarial layouts.
    """
    cdef Py_ssize_t H = labels.shape[0], W = labels.shape[1]
    cdef bint want_w = w is not None
    cdef Py_ssize_t bottom = top + (w.shape[0] if want_w else d1.shape[0])
    cdef Py_ssize_t right = left + (w.shape[1] if want_w else d1.shape[1])
    # column-pass results, (H, W) each: nearest label, vertical distances to it and to the
    # nearest other label
    dtype = np.asarray(labels).dtype
    cdef label_t[:, ::1] l1 = np.empty((H, W), dtype=dtype)
    cdef int32_t[:, ::1] dy1 = np.empty((H, W), dtype=np.int32)
    cdef int32_t[:, ::1] dy2 = np.empty((H, W), dtype=np.int32)
    # per-column sweep state, each block of columns owns its slice
    cdef label_t[::1] a_lab = np.empty(W, dtype=dtype)
    cdef int32_t[::1] a_pos = np.zeros(W, dtype=np.int32)
    cdef int32_t[::1] b_pos = np.zeros(W, dtype=np.int32)
    cdef Py_ssize_t nblocks = (W + BLOCK - 1) // BLOCK, blk, x0, y, x, work = 0
    cdef double denom = 2.0 * sigma * sigma, a, wc
    cdef Py_ssize_t* v
    cdef Py_ssize_t* arg
    cdef int64_t* f
    cdef int64_t* g1
    cdef int64_t* g2
    cdef int64_t* d1sq
    cdef int64_t* d2sq

    # One parallel region for both passes (each prange ends with a barrier): waking the
    # threads once, and dynamic schedules, keep a descheduled thread on a shared machine
    # from holding the others up
    with nogil, parallel(num_threads=num_threads):
        for blk in prange(nblocks, schedule="dynamic"):
            x0 = blk * BLOCK
            _column_block(&labels[0, 0], &l1[0, 0], &dy1[0, 0], &dy2[0, 0], H, W,
                          x0, min(x0 + BLOCK, W), &a_lab[0], &a_pos[0], &b_pos[0])
        v = <Py_ssize_t*> malloc(W * sizeof(Py_ssize_t))
        arg = <Py_ssize_t*> malloc(W * sizeof(Py_ssize_t))
        f = <int64_t*> malloc(W * sizeof(int64_t))
        g1 = <int64_t*> malloc(W * sizeof(int64_t))
        g2 = <int64_t*> malloc(W * sizeof(int64_t))
        d1sq = <int64_t*> malloc(W * sizeof(int64_t))
        d2sq = <int64_t*> malloc(W * sizeof(int64_t))
        for y in prange(top, bottom, schedule="dynamic", chunksize=8):
            for x in range(W):
                g1[x] = <int64_t>dy1[y, x] * dy1[y, x]
                g2[x] = <int64_t>dy2[y, x] * dy2[y, x]
            work += _line(&l1[y, 0], g1, g2, W, left, right, d1sq, d2sq, v, f, arg)
            if want_w:
                for x in range(left, right):
                    wc = wc1 if labels[y, x] != 0 else wc0
                    if d2sq[x] < INF and (border_all or labels[y, x] == 0):
                        a = _root(d1sq[x]) + _root(d2sq[x])
                        wc = wc + w0 * exp(-(a * a) / denom)
                    w[y - top, x - left] = <float>wc
            else:
                for x in range(left, right):
                    d1[y - top, x - left] = _dist(d1sq[x])
                    d2[y - top, x - left] = _dist(d2sq[x])
        free(v)
        free(arg)
        free(f)
        free(g1)
        free(g2)
        free(d1sq)
        free(d2sq)
    return work
