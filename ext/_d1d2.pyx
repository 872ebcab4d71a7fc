# cython: language_level=3
"""Exact one-pass d1/d2 for the U-Net weight map, in 2-D and 3-D: the hot loops only.

Validation, dtype handling, spacing and contiguity live in unet_ref/weights.py and
unet_ref/fast/d1d2.py; every function here assumes a C-contiguous (N0, N1, N2) label image
with labels >= 0, 0 = background (a 2-D (H, W) image arrives as (H, 1, W)), and one spacing
s_k > 0 per axis. The same algorithm in plain Python, 2-D: unet_ref/one_pass.py.

For every voxel x: d1 = distance to the nearest object voxel, d2 = distance to the nearest
voxel whose label differs from that object's label, distances measured with the spacing:
|x - p|^2 = sum_k (s_k (x_k - p_k))^2. The definition is the per-object reference
(unet_ref.reference.d1_d2: one scipy distance_transform_edt(labels != k, sampling=spacing)
per object k, sorted along k).

Exactness. With integer spacings (the default, 1) every squared distance is an integer:
it is computed exactly in int64, and the float32 result (float)sqrt((double)sq) is what
float32(scipy's float64 distance) is, so the output is bit-identical to the reference.
With other spacings the kernel computes in float64 what scipy computes: scipy finds the
nearest feature, then sums fl(fl(dk * s_k)^2) over the axes in order 0, 1, 2 (dk = the
index difference along axis k). Each pass below adds its axis's term to the previous sum
in that same order and compares the resulting float64 values, so the float64 d1^2 of a
voxel is scipy's expression evaluated at the feature the kernel picked. Where two features
lie within float64 rounding of each other scipy's own feature transform and this kernel may
pick different ones; their values then differ by a few float64 ulps, and the float32
results by at most 1 ulp (tests/test_weights.py checks that bound; almost all voxels are
bit-identical).

Algorithm: separable, like every exact Euclidean distance transform, one pass per axis.
After the passes along the first k axes, each voxel holds a triple (l1, g1, g2): over the
k-D subspace through it spanned by those axes, l1 = the nearest label, g1 = the squared
distance to it, g2 = the squared distance to the nearest label != l1 (g = INF when absent).

1. Pass along axis 0 (the "column pass"), from the labels. For each voxel keep the two
   nearest DISTINCT labels on its line along axis 0; only l1 and the int32 distances dy1,
   dy2 (g = (s_0 dy)^2) are stored, for the voxels of the window's slab along axis 0. A
   top-down sweep keeps, per line, the last index of the current label run (a) and of the
   previous distinct label (b): between b's index and the current one there are only
   background voxels and voxels of label a, so a and b are the two nearest distinct labels
   above. A bottom-up sweep does the same below, and the two pairs are merged. The volume
   is swept as an (N0, N1 N2) array over blocks of contiguous lines.

2. Pass along each further axis k, over 1-D lines (_line; the same code for every axis and
   for 2-D and 3-D; axes of length 1 are skipped, their pass is the identity). With q the
   position along the line and s = s_k, the separability of the distance gives, for every
   label m, dist_m(x)^2 = min_q s^2 (x - q)^2 + dist_m(q)^2 over the (k+1)-D subspace, hence
      G1(x) = min_q s^2 (x - q)^2 + g1(q)                  (lower envelope of parabolas,
                                                            Felzenszwalb & Huttenlocher)
      L1(x) = l1(a(x)), a(x) = the envelope's argmin,
      G2(x) = min_q s^2 (x - q)^2 + (g1(q) if l1(q) != L1(x) else g2(q)),
   because at q the nearest label other than L1 is l1(q) itself if l1(q) != L1, and
   otherwise the nearest label != l1(q), at g2(q). So (l1, g1, g2) carries everything the
   next pass needs: its own second label is never needed, only its distance, and the
   triple (L1, G1, G2) has the same meaning over the (k+1)-D subspace. The last pass
   returns d1 = sqrt(G1), d2 = sqrt(G2).

   G2 is computed per run: a maximal interval J = [b, e] of x over which L1(x) is one
   label mu. On J, with c(q) = g1(q) if l1(q) != mu else g2(q) (the distance at q to the
   nearest label other than mu), G2 is the lower envelope of the parabolas
   s^2 (x - q)^2 + c(q), and only the positions between u = a(b - 1) and w = a(e + 1) can
   be its argmin (below), so the kernel builds that envelope over the positions u..w and
   reads it on J.

Why each pass is linear on every input. (i) The argmin of a lower envelope of parabolas
s^2 (x - q)^2 + c_q only moves right: if q is a minimiser at x0 and p < q, then f_p - f_q =
2 s^2 x (q - p) + const grows with x, so p is never a minimiser at any x > x0. (ii) Let
J = [b, e] be a run of label mu. As c >= g1 everywhere, its envelope is >= G1; at b - 1
the position u = a(b - 1) is the nearest of all and its label is not mu (b - 1 belongs to
the previous run), so c(u) = g1(u) and u attains G1(b - 1): u minimises the envelope of c
at b - 1, and by (i) every minimiser on J lies at or right of it; symmetrically at or left
of w = a(e + 1). So the envelope over the positions u..w (the line's ends for the first and
the last run) is exact on J. (iii) The ranges [u_k, w_k] of the runs k = 1, 2, ... both
move right with k, and range k + 3 starts strictly after range k ends: w_k = a(b_(k+1)) <=
a(e_(k+1)) < a(b_(k+2)) <= a(e_(k+2)) = u_(k+3), the strict step because a(e_(k+1)) and
a(b_(k+2)) have different labels, hence are different positions. So every position lies
in at most three ranges, the runs' envelopes together scan at most 3 n positions, and a
line of n positions costs at most 4 n position visits (the envelope of g1 and the runs),
whatever the layout.

Memory: the column pass's l1, dy1, dy2 for the window's slab, and per thread the lines and
(in 3-D) one plane of (L1, G1, G2): O(voxels).
"""
import numpy as np

cimport cython
from cython.parallel cimport parallel, prange
from libc.math cimport exp, sqrt, INFINITY
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc

from _types cimport label_t

# squared distances: exact integers (integer spacings) or scipy's float64 expression
ctypedef fused val_t:
    int64_t
    double

# "no such label": the column pass stores distances dy along axis 0 as int32 (half the
# memory of int64 squares) with NONE for "absent"; squared, NONE becomes INF, which is
# larger than any squared distance (weights.py keeps those below 2^53) and small enough
# that INF + s^2 dx^2 fits in int64. The float64 path uses INFINITY.
cdef int32_t NONE = 2147483647
cdef int64_t INF = <int64_t>NONE * NONE
# lines per block: of the column pass (wide enough for contiguous rows, small enough that
# the blocks spread over the threads), and of the 3-D middle pass's gather
cdef Py_ssize_t BLOCK = 64
cdef Py_ssize_t GATHER = 16


cdef inline void _sweep_update(label_t L, int32_t y, Py_ssize_t x, label_t* a_lab,
                               int32_t* a_pos, int32_t* b_pos) noexcept nogil:
    # a = the label seen last and its last index; b_pos = the last index of the distinct
    # label before it (-1: none). Only l2's distance is needed later, never its label.
    # Written as selects, not branches: label changes along a line are unpredictable
    cdef bint seen = L != 0
    cdef bint new = seen & (L != a_lab[x])
    b_pos[x] = a_pos[x] if new else b_pos[x]
    a_lab[x] = L if seen else a_lab[x]
    a_pos[x] = y if seen else a_pos[x]


cdef void _column_block(const label_t* lab, label_t* l1, int32_t* dy1, int32_t* dy2,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t x0, Py_ssize_t x1,
                        Py_ssize_t r0, Py_ssize_t r1, label_t* a_lab, int32_t* a_pos,
                        int32_t* b_pos) noexcept nogil:
    """Lines x0..x1-1 of the (H, W) array lab, along axis 0: per element the nearest label
    l1, and the distances dy1 to it and dy2 to the nearest label != l1 (NONE if absent),
    stored for the rows r0..r1-1 only (row y at (y - r0) * W)."""
    cdef Py_ssize_t x, i, o
    cdef int32_t y
    cdef label_t ul1, dl1, fl, ol1
    cdef int32_t ud1, ud2, dd1, dd2, fd, od1, od2, sd, od
    cdef bint up
    for x in range(x0, x1):
        a_lab[x] = 0
        a_pos[x] = -1
        b_pos[x] = -1
    # top-down: the two nearest distinct labels at or above
    for y in range(r1):
        i = y * W
        o = (y - r0) * W
        for x in range(x0, x1):
            _sweep_update(lab[i + x], y, x, a_lab, a_pos, b_pos)
        if y < r0:
            continue
        for x in range(x0, x1):
            l1[o + x] = a_lab[x]
            dy1[o + x] = y - a_pos[x] if a_pos[x] >= 0 else NONE
            dy2[o + x] = y - b_pos[x] if b_pos[x] >= 0 else NONE
    for x in range(x0, x1):
        a_lab[x] = 0
        a_pos[x] = -1
        b_pos[x] = -1
    # bottom-up, merged with the top-down pair: first = the nearer of the two sides' first;
    # second = the nearer of that side's second and the other side's nearest label != first
    for y in range(H - 1, r0 - 1, -1):
        i = y * W
        o = (y - r0) * W
        for x in range(x0, x1):
            _sweep_update(lab[i + x], y, x, a_lab, a_pos, b_pos)
        if y >= r1:
            continue
        for x in range(x0, x1):
            dl1 = a_lab[x]
            dd1 = a_pos[x] - y if a_pos[x] >= 0 else NONE
            dd2 = b_pos[x] - y if b_pos[x] >= 0 else NONE
            ul1 = l1[o + x]
            ud1 = dy1[o + x]
            ud2 = dy2[o + x]
            up = ud1 <= dd1
            fl = ul1 if up else dl1
            fd = ud1 if up else dd1
            sd = ud2 if up else dd2  # the first side's second
            ol1 = dl1 if up else ul1  # the other side's pair
            od1 = dd1 if up else ud1
            od2 = dd2 if up else ud2
            od = od1 if ol1 != fl else od2
            l1[o + x] = fl
            dy1[o + x] = fd
            dy2[o + x] = sd if sd < od else od


cdef inline val_t _term(Py_ssize_t d, val_t s) noexcept nogil:
    # (d s)^2: exact in int64; in float64 fl(fl(d * s)^2), scipy's term for one axis
    cdef val_t t = d * s
    return t * t


cdef inline bint _absent(val_t g) noexcept nogil:
    if val_t is int64_t:
        return g >= INF
    else:
        return g == INFINITY


cdef inline val_t _none(val_t like) noexcept nogil:
    # the "absent" value of like's type
    if val_t is int64_t:
        return INF
    else:
        return INFINITY


cdef inline val_t _from_dy(int32_t dy, val_t s) noexcept nogil:
    # the column pass's distance as a squared distance (the first term of the sum)
    return _none(s) if dy == NONE else _term(dy, s)


cdef Py_ssize_t _envelope(const label_t* lab, const val_t* g1, const val_t* g2, Py_ssize_t p0,
                          Py_ssize_t p1, bint second, label_t mu, val_t s, Py_ssize_t* v, val_t* f,
                          val_t* h) noexcept nogil:
    """Lower envelope of the parabolas s^2 (x - q)^2 + c_q over the positions q in p0..p1
    where c_q is present, with c_q = g1[q], or (second) the distance to the nearest label
    other than mu: g1[q] if lab[q] != mu else g2[q]. Returns their count m; v[k] = apex of
    the k-th lowest parabola from the left, h[k] = its c.

    int64 (Felzenszwalb & Huttenlocher, exact): f[k] = c + s^2 v^2, and the intersection
    test s(p, q) = (f_q - f_p) / (2 s^2 (q - p)) cross-multiplied, so that no division is
    needed (weights.py keeps |f| * n < 2^62). float64: f[k] = the abscissa from which
    parabola k is the lowest, (p + q) / 2 + (c_q - c_p) / (2 s^2 (q - p)).
    """
    cdef Py_ssize_t q, p, pp, k = -1
    cdef val_t fq, c
    for q in range(p0, p1 + 1):
        c = g2[q] if second and lab[q] == mu else g1[q]
        if _absent(c):
            continue
        if val_t is int64_t:
            fq = c + _term(q, s)
            # drop the last parabola while the new one overtakes it before it got lowest:
            # s(p, q) <= s(pp, p)
            while k >= 1:
                p = v[k]
                pp = v[k - 1]
                if (fq - f[k]) * (p - pp) > (f[k] - f[k - 1]) * (q - p):
                    break
                k -= 1
        else:
            # drop the last parabola while the new one is lowest from where it got lowest
            # (f[0] = -inf stops the loop)
            fq = -INFINITY
            while k >= 0:
                fq = 0.5 * (v[k] + q) + (c - h[k]) / (2.0 * s * s * (q - v[k]))
                if fq > f[k]:
                    break
                k -= 1
        k += 1
        v[k] = q
        f[k] = fq
        h[k] = c
    return k + 1


cdef inline Py_ssize_t _advance(Py_ssize_t k, Py_ssize_t m, Py_ssize_t x, const Py_ssize_t* v,
                                const val_t* f, const val_t* h, val_t s) noexcept nogil:
    # the envelope's parabola at x: move on while the next one is no higher there
    if val_t is int64_t:
        # s^2 (x - v')^2 + c' <= s^2 (x - v)^2 + c  <=>  f' - f <= 2 s^2 x (v' - v)
        while k + 1 < m and f[k + 1] - f[k] <= 2 * s * s * x * (v[k + 1] - v[k]):
            k += 1
    else:
        # compare the float64 values themselves: the smaller of the two neighbours wins
        while k + 1 < m and h[k + 1] + _term(x - v[k + 1], s) <= h[k] + _term(x - v[k], s):
            k += 1
    return k


cdef Py_ssize_t _line(const label_t* lab, const val_t* g1, const val_t* g2, Py_ssize_t n,
                      val_t s, Py_ssize_t lo, Py_ssize_t hi, label_t* L1, val_t* G1, val_t* G2,
                      Py_ssize_t* v, val_t* f, val_t* h, Py_ssize_t* arg) noexcept nogil:
    """One line of one pass: (L1, G1, G2)[x] for x in lo..hi-1 from (lab, g1, g2)[q] of
    every position q (module docstring, step 2); L1 and G1 are filled on the whole line.
    Returns the positions its envelopes scanned (<= 4 n)."""
    cdef Py_ssize_t m, k, x, y, b, e, u, w, work = n
    cdef label_t mu
    m = _envelope(lab, g1, g2, 0, n - 1, False, 0, s, v, f, h)
    if m == 0:  # no object on this line's positions, hence none in the image
        for x in range(n):
            L1[x] = 0
            G1[x] = _none(s)
            G2[x] = _none(s)
        return work
    # the nearest position arg[x] and label L1[x] of every x (the runs' bounds may lie
    # outside lo..hi-1)
    k = 0
    for x in range(n):
        k = _advance(k, m, x, v, f, h, s)
        arg[x] = v[k]
        L1[x] = lab[v[k]]
        G1[x] = h[k] + _term(x - v[k], s)
    # G2 per run [b, e] of one nearest label mu: the envelope of the distances to labels
    # other than mu over the positions arg[b - 1]..arg[e + 1] (module docstring: exact,
    # <= 3 n positions in all)
    b = lo
    while b > 0 and L1[b - 1] == L1[lo]:
        b -= 1
    x = lo
    while x < hi:
        mu = L1[x]
        e = x
        while e + 1 < n and L1[e + 1] == mu:
            e += 1
        u = arg[b - 1] if b > 0 else 0
        w = arg[e + 1] if e + 1 < n else n - 1
        work += w - u + 1
        m = _envelope(lab, g1, g2, u, w, True, mu, s, v, f, h)
        k = 0
        for y in range(x, min(e + 1, hi)):
            if m == 0:  # no label but mu on the whole line
                G2[y] = _none(s)
            else:
                k = _advance(k, m, y, v, f, h, s)
                G2[y] = h[k] + _term(y - v[k], s)
        x = e + 1
        b = x
    return work


# sqrt of the small squared distances, looked up: most d1^2, d2^2 on cell images are
# below 4096 and the table (32 KB) stays in cache; same float64 sqrt, so same bits
cdef enum:
    N_ROOTS = 4096
cdef double ROOTS[N_ROOTS]
for _i in range(N_ROOTS):
    ROOTS[_i] = sqrt(<double>_i)


cdef inline double _root(val_t sq) noexcept nogil:
    # sq present
    if val_t is int64_t:
        return ROOTS[sq] if sq < N_ROOTS else sqrt(<double>sq)
    else:
        return sqrt(sq)


cdef inline float _dist(val_t sq) noexcept nogil:
    # float32(float64 sqrt): what float32(scipy's EDT) is
    return INFINITY if _absent(sq) else <float>_root(sq)


def _nearest_two(const label_t[:, :, ::1] labels, float[:, :, ::1] d1, float[:, :, ::1] d2,
                 float[:, :, ::1] w, val_t[::1] spacing, double wc0, double wc1, double w0,
                 double sigma, bint border_all, int num_threads, Py_ssize_t[::1] start):
    """Fill d1, d2 (when w is None) or the weight map w (when d1, d2 are None) on the
    window of the outputs' shape at `start` of the (N0, N1, N2) label image.

    spacing: int64 (exact integer path) or float64 (scipy's float64 expression), one per
    axis. w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2)), computed in float64 like the
    reference, with w_c = wc0 on background (label 0) and wc1 on objects; the border term
    is added everywhere (border_all) or on background only. The column pass sweeps the
    whole image (every line may hold the nearest cell) but keeps the window's slab; the
    other passes see only the planes and lines the window needs. Returns the number of
    positions the envelopes scanned (at most 4 per voxel and pass, module docstring),
    which the tests check on adversarial layouts.
    """
    cdef bint want_w = w is not None
    cdef float[:, :, ::1] out = w if want_w else d1
    cdef Py_ssize_t n0 = labels.shape[0], n1 = labels.shape[1], n2 = labels.shape[2]
    cdef Py_ssize_t o0 = out.shape[0], o1 = out.shape[1], o2 = out.shape[2]
    cdef Py_ssize_t b0 = start[0], b1 = start[1], b2 = start[2]
    cdef Py_ssize_t M = n1 * n2, n = max(n1, n2), plane = o1 * n2
    cdef val_t s0 = spacing[0], s1 = spacing[1], s2 = spacing[2]
    # column-pass results for the window's slab, (o0, N1 N2) each: nearest label, distances
    # along axis 0 to it and to the nearest other label
    dtype = np.asarray(labels).dtype
    cdef label_t[:, ::1] l1 = np.empty((o0, M), dtype=dtype)
    cdef int32_t[:, ::1] dy1 = np.empty((o0, M), dtype=np.int32)
    cdef int32_t[:, ::1] dy2 = np.empty((o0, M), dtype=np.int32)
    # per-line sweep state, each block of lines owns its slice
    cdef label_t[::1] a_lab = np.empty(M, dtype=dtype)
    cdef int32_t[::1] a_pos = np.zeros(M, dtype=np.int32)
    cdef int32_t[::1] b_pos = np.zeros(M, dtype=np.int32)
    cdef Py_ssize_t nblocks = (M + BLOCK - 1) // BLOCK, blk, cb, x0, i0, i1, i2, j, nj, r, work = 0
    cdef double denom = 2.0 * sigma * sigma, a, wc
    cdef const label_t* lab
    cdef label_t L
    # per thread: envelope scratch, one line in and out, a block of gathered lines and
    # (3-D) one plane of the middle pass's (L1, G1, G2)
    cdef Py_ssize_t* v
    cdef Py_ssize_t* arg
    cdef val_t* f
    cdef val_t* h
    cdef val_t* g1
    cdef val_t* g2
    cdef label_t* L1
    cdef val_t* G1
    cdef val_t* G2
    cdef label_t* cl
    cdef val_t* cg1
    cdef val_t* cg2
    cdef label_t* cL
    cdef val_t* cG1
    cdef val_t* cG2
    cdef label_t* PL
    cdef val_t* PG1
    cdef val_t* PG2

    # One parallel region for all passes (each prange ends with a barrier): waking the
    # threads once, and dynamic schedules, keep a descheduled thread on a shared machine
    # from holding the others up
    with nogil, parallel(num_threads=num_threads):
        for blk in prange(nblocks, schedule="dynamic"):
            x0 = blk * BLOCK
            _column_block(&labels[0, 0, 0], &l1[0, 0], &dy1[0, 0], &dy2[0, 0], n0, M,
                          x0, min(x0 + BLOCK, M), b0, b0 + o0, &a_lab[0], &a_pos[0], &b_pos[0])
        v = <Py_ssize_t*> malloc(n * sizeof(Py_ssize_t))
        arg = <Py_ssize_t*> malloc(n * sizeof(Py_ssize_t))
        f = <val_t*> malloc(n * sizeof(val_t))
        h = <val_t*> malloc(n * sizeof(val_t))
        g1 = <val_t*> malloc(n2 * sizeof(val_t))
        g2 = <val_t*> malloc(n2 * sizeof(val_t))
        L1 = <label_t*> malloc(n2 * sizeof(label_t))
        G1 = <val_t*> malloc(n2 * sizeof(val_t))
        G2 = <val_t*> malloc(n2 * sizeof(val_t))
        cl = <label_t*> malloc(GATHER * n1 * sizeof(label_t))
        cg1 = <val_t*> malloc(GATHER * n1 * sizeof(val_t))
        cg2 = <val_t*> malloc(GATHER * n1 * sizeof(val_t))
        cL = <label_t*> malloc(GATHER * n1 * sizeof(label_t))
        cG1 = <val_t*> malloc(GATHER * n1 * sizeof(val_t))
        cG2 = <val_t*> malloc(GATHER * n1 * sizeof(val_t))
        PL = <label_t*> malloc((plane if n1 > 1 else 1) * sizeof(label_t))
        PG1 = <val_t*> malloc((plane if n1 > 1 else 1) * sizeof(val_t))
        PG2 = <val_t*> malloc((plane if n1 > 1 else 1) * sizeof(val_t))
        for i0 in prange(o0, schedule="dynamic", chunksize=1 if n1 > 1 else 8):
            if n1 > 1:
                # middle pass (axis 1) over the plane's lines, a block of GATHER at a time so
                # that the strided reads and writes touch whole cache lines
                for cb in range((n2 + GATHER - 1) // GATHER):
                    x0 = cb * GATHER
                    nj = min(GATHER, n2 - x0)
                    for i1 in range(n1):
                        for j in range(nj):
                            cl[j * n1 + i1] = l1[i0, i1 * n2 + x0 + j]
                            cg1[j * n1 + i1] = _from_dy(dy1[i0, i1 * n2 + x0 + j], s0)
                            cg2[j * n1 + i1] = _from_dy(dy2[i0, i1 * n2 + x0 + j], s0)
                    for j in range(nj):
                        work += _line(&cl[j * n1], &cg1[j * n1], &cg2[j * n1], n1, s1, b1, b1 + o1,
                                      &cL[j * n1], &cG1[j * n1], &cG2[j * n1], v, f, h, arg)
                    for i1 in range(o1):
                        for j in range(nj):
                            PL[i1 * n2 + x0 + j] = cL[j * n1 + b1 + i1]
                            PG1[i1 * n2 + x0 + j] = cG1[j * n1 + b1 + i1]
                            PG2[i1 * n2 + x0 + j] = cG2[j * n1 + b1 + i1]
            # last pass (axis 2) over the window's rows of the plane
            for r in range(o1):
                if n1 > 1:
                    lab = &PL[r * n2]
                    work += _line(lab, &PG1[r * n2], &PG2[r * n2], n2, s2, b2, b2 + o2, L1, G1, G2,
                                  v, f, h, arg)
                else:
                    lab = &l1[i0, 0]
                    for i2 in range(n2):
                        g1[i2] = _from_dy(dy1[i0, i2], s0)
                        g2[i2] = _from_dy(dy2[i0, i2], s0)
                    work += _line(lab, g1, g2, n2, s2, b2, b2 + o2, L1, G1, G2, v, f, h, arg)
                if want_w:
                    for i2 in range(b2, b2 + o2):
                        L = labels[b0 + i0, b1 + r, i2]
                        wc = wc1 if L != 0 else wc0
                        if not _absent(G2[i2]) and (border_all or L == 0):
                            a = _root(G1[i2]) + _root(G2[i2])
                            wc = wc + w0 * exp(-(a * a) / denom)
                        w[i0, r, i2 - b2] = <float>wc
                else:
                    for i2 in range(b2, b2 + o2):
                        d1[i0, r, i2 - b2] = _dist(G1[i2])
                        d2[i0, r, i2 - b2] = _dist(G2[i2])
        free(v)
        free(arg)
        free(f)
        free(h)
        free(g1)
        free(g2)
        free(L1)
        free(G1)
        free(G2)
        free(cl)
        free(cg1)
        free(cg2)
        free(cL)
        free(cG1)
        free(cG2)
        free(PL)
        free(PG1)
        free(PG2)
    return work
