# cython: language_level=3
"""Hot loops of the ISBI 2012 challenge metrics (unet_ref/challenge.py).

Validation, thresholding, labelling and the threshold sweep live in unet_ref/challenge.py;
every function here takes clean, C-contiguous arrays and releases the GIL.

- `_warp`: simple-point warping of the truth towards the proposal (Jain et al. 2010), in
  the order of the organisers' code. The mismatches only ever shrink (a flipped pixel
  matches the fixed proposal for good), so the confidence order computed once stays valid:
  one pass over the remaining mismatches flips, in that order, every pixel that is simple
  *at its turn*; passes repeat until one flips nothing. A pass visits only the mismatches
  next to a flip since their last visit, the others being unchanged.
- `_splits_merges`: classifies the mismatches left after warping and counts the two kinds
  the challenge scores, splits and merges.
- `_thin`: the watershed flooding that thins the proposal's membranes to 1 px before V_Rand
  and V_Info (a FIFO flooding in the style of Vincent & Soille 1991, as the organisers').
- `_pair_sums`: one pass over a truth / proposal label pair giving every sum of the
  foreground-restricted contingency table that the Rand and information scores need.
"""
from libc.math cimport log
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc

# labels of the flooding, as in Vincent & Soille: > 0 basins, 0 watershed line
cdef enum:
    WSHED = 0
    INIT = -1
    MASK = -2
    INQUEUE = -3


cdef inline void _push(Py_ssize_t* heap, Py_ssize_t* size, Py_ssize_t value) noexcept nogil:
    """Binary min-heap of ranks: add `value`."""
    cdef Py_ssize_t i = size[0], up
    size[0] += 1
    while i > 0:
        up = (i - 1) >> 1
        if heap[up] <= value:
            break
        heap[i] = heap[up]
        i = up
    heap[i] = value


cdef inline Py_ssize_t _pop(Py_ssize_t* heap, Py_ssize_t* size) noexcept nogil:
    """Binary min-heap of ranks: remove and return the smallest."""
    cdef Py_ssize_t top = heap[0], last, i = 0, child, n
    size[0] -= 1
    n = size[0]
    last = heap[n]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= last:
            break
        heap[i] = heap[child]
        i = child
    heap[i] = last
    return top


def _warp(uint8_t[:, ::1] source, Py_ssize_t[::1] order, const uint8_t[::1] simple):
    """Flip simple mismatches of `source` (0/1, one pixel of zero padding all round) in
    place. `order` holds the flat indices of the mismatches, most confident first; on
    return its first n entries are the mismatches left (same order) and n is returned.
    `simple[code]` is 1 if a pixel whose 8 neighbours read `code` (bit k = k-th neighbour
    in row-major order) can flip without changing the topology.

    Equals the organisers' passes (WarpingError.simplePointWarp2d: every pass visits every
    mismatch left, in `order`, and flips each one simple at its turn; passes repeat until
    one flips nothing) without revisiting what cannot have changed. A mismatch found not
    simple stays not simple until one of its 8 neighbours flips, so a pass only needs the
    mismatches with a neighbour flipped since their last visit. A flip at rank r makes a
    neighbour of rank j > r due later in the same pass (the organisers reach it after r)
    and one of rank j < r due in the next pass (already visited in this one). The first
    pass visits every rank; the later ones visit their due ranks in increasing order from
    a min-heap, and the run stops when a pass leaves nothing due for the next. Cost:
    O((mismatches + 8 flips) log mismatches), where visiting every mismatch per pass costs
    up to mismatches x passes: a chain of flips running against `order` (a spiral that
    grows, or a corridor that shrinks, a pixel per pass) needs passes of the order of the
    image's pixels."""
    cdef Py_ssize_t stride = source.shape[1], npix = source.shape[0] * source.shape[1]
    cdef Py_ssize_t n = order.shape[0], k, j, m, idx, size_now = 0, size_next = 0, npass = 0
    cdef Py_ssize_t[8] around = [-stride - 1, -stride, -stride + 1, -1, 1, stride - 1, stride, stride + 1]
    cdef uint8_t* s = &source[0, 0]
    cdef int code, b
    cdef Py_ssize_t* rank = <Py_ssize_t*> malloc(npix * sizeof(Py_ssize_t))  # -1: not a mismatch (now)
    cdef Py_ssize_t* due = <Py_ssize_t*> calloc(n + 1, sizeof(Py_ssize_t))  # the pass a rank is due in
    cdef Py_ssize_t* now = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))  # heap of this pass
    cdef Py_ssize_t* later = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))  # heap of the next
    cdef Py_ssize_t* swap
    if rank == NULL or due == NULL or now == NULL or later == NULL:
        free(rank); free(due); free(now); free(later)
        raise MemoryError()
    with nogil:
        for idx in range(npix):
            rank[idx] = -1
        for k in range(n):
            rank[order[k]] = k
        while True:  # the passes
            k = -1
            while True:  # one pass: its due ranks in increasing order
                if npass == 0:  # the first visits every mismatch
                    k += 1
                    if k == n:
                        break
                elif size_now == 0:
                    break
                else:
                    k = _pop(now, &size_now)
                idx = order[k]
                code = (s[idx - stride - 1] | s[idx - stride] << 1 | s[idx - stride + 1] << 2
                        | s[idx - 1] << 3 | s[idx + 1] << 4
                        | s[idx + stride - 1] << 5 | s[idx + stride] << 6 | s[idx + stride + 1] << 7)
                if not simple[code]:
                    continue
                s[idx] ^= 1  # a flip is live: later pixels of this pass see it
                rank[idx] = -1
                for b in range(8):
                    j = rank[idx + around[b]]
                    if j < 0:
                        continue
                    if j > k and due[j] != npass:
                        due[j] = npass
                        _push(now, &size_now, j)
                    elif j < k and due[j] != npass + 1:
                        due[j] = npass + 1
                        _push(later, &size_next, j)
            if size_next == 0:
                break
            swap = now
            now = later
            later = swap
            size_now, size_next = size_next, 0
            npass += 1
        m = 0
        for k in range(n):
            if rank[order[k]] >= 0:
                order[m] = order[k]
                m += 1
    free(rank); free(due); free(now); free(later)
    return m


cdef inline int _root(int* parent, int s) noexcept nogil:
    while parent[s] != s:
        s = parent[s]
    return s


cdef bint _splits_on_removal(const int32_t* lab, Py_ssize_t H, Py_ssize_t W, Py_ssize_t y,
                             Py_ssize_t x, Py_ssize_t radius, int64_t* stamp, int64_t base,
                             int64_t* stacks, Py_ssize_t cap) noexcept nogil:
    """True if the cell 8-neighbours of cell pixel (y, x) fall into two or more
    4-connected pieces once (y, x) is removed, looking only inside the window of
    `radius` around it (the organisers' local re-labelling).

    Every cell neighbour starts a flood, and the floods grow one pixel each in turn:
    floods that touch join (union-find), and a group of floods with nothing left to grow
    is cut off from the rest, a split. So a small cut-off piece is found after a few steps
    instead of after flooding the whole window; the cost is at most twice the smaller
    piece inside the window. stamp[p] = base + s marks pixel p as reached by flood s
    (base + 8: the removed pixel); older stamps are below base. The stacks hold
    (row << 32) | column: no division per step."""
    cdef Py_ssize_t y0 = max(y - radius, 0), y1 = min(y + radius, H - 1)
    cdef Py_ssize_t x0 = max(x - radius, 0), x1 = min(x + radius, W - 1)
    cdef Py_ssize_t dy, dx, yy, xx, q, j
    cdef int64_t p
    cdef Py_ssize_t[4] off_y = [0, -1, 0, 1]
    cdef Py_ssize_t[4] off_x = [-1, 0, 1, 0]
    cdef Py_ssize_t[8] top
    cdef int[8] parent
    cdef int n = 0, groups, s, t, r
    cdef bint alive, dry
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            yy, xx = y + dy, x + dx
            if (dy or dx) and 0 <= yy < H and 0 <= xx < W and lab[yy * W + xx] != 0:
                stamp[yy * W + xx] = base + n
                stacks[n * cap] = (<int64_t>yy << 32) | xx
                top[n] = 1
                parent[n] = n
                n += 1
    stamp[y * W + x] = base + 8  # the removed pixel blocks every path
    groups = n
    while True:
        dry = False
        for s in range(n):
            if top[s] == 0:
                continue
            top[s] -= 1
            p = stacks[s * cap + top[s]]
            for j in range(4):
                yy, xx = (p >> 32) + off_y[j], (p & ((<int64_t>1 << 32) - 1)) + off_x[j]
                if not (y0 <= yy <= y1 and x0 <= xx <= x1):
                    continue
                q = yy * W + xx
                if lab[q] == 0:
                    continue
                if stamp[q] < base:
                    stamp[q] = base + s
                    stacks[s * cap + top[s]] = (<int64_t>yy << 32) | xx
                    top[s] += 1
                elif stamp[q] < base + 8:  # reached by flood t: the two pieces are one
                    r, t = _root(parent, s), _root(parent, <int>(stamp[q] - base))
                    if r != t:
                        parent[r] = t
                        groups -= 1
                        if groups == 1:
                            return False
            dry = dry or top[s] == 0
        if not dry:  # a group can only be cut off when one of its floods runs dry
            continue
        for s in range(n):  # a group whose floods are all stuck is cut off
            if _root(parent, s) != s:
                continue
            alive = False
            for t in range(n):
                if top[t] > 0 and _root(parent, t) == s:
                    alive = True
            if not alive:
                return True


def _splits_merges(const int32_t[:, ::1] labels, const Py_ssize_t[::1] rows,
                   const Py_ssize_t[::1] cols, Py_ssize_t radius, const uint8_t[::1] pieces):
    """(splits, merges) among the mismatches (rows[k], cols[k]) of the warped truth, whose
    4-connected cells are `labels` (0 = membrane), by the organisers' rules
    (WarpingError.classifyMismatches2d): let u be the number of distinct labels among the
    in-image 8-neighbours, 0 included.
      u >= 3: a membrane pixel is a MERGE, a cell pixel a SPLIT;
      u == 2, cell pixel: a SPLIT if its cell neighbours fall apart once it is removed
              (re-labelled in the window of `radius`), else a hole deletion;
      otherwise (u == 2 membrane pixel, u == 1): hole or object additions and deletions,
              which the challenge does not count.
    `pieces[code]` is the number of 4-connected cell pieces in the 8 neighbours `code`: the
    re-labelling is needed only when there are two or more (one piece stays one)."""
    cdef Py_ssize_t H = labels.shape[0], W = labels.shape[1], n = rows.shape[0]
    cdef Py_ssize_t k, y, x, dy, dx, yy, xx, i, u, bit
    cdef int32_t[8] seen
    cdef int32_t v
    cdef int code
    cdef int64_t splits = 0, merges = 0
    cdef bint new
    cdef const int32_t* lab = &labels[0, 0]
    cdef Py_ssize_t cap = min(2 * radius + 1, H) * min(2 * radius + 1, W)  # window pixels
    cdef int64_t* stamp = <int64_t*> calloc(H * W, sizeof(int64_t))
    cdef int64_t* stacks = <int64_t*> malloc(8 * cap * sizeof(int64_t))
    if stamp == NULL or stacks == NULL:
        free(stamp)
        free(stacks)
        raise MemoryError()
    with nogil:
        for k in range(n):
            y, x = rows[k], cols[k]
            u = 0
            code = 0
            bit = 0
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    yy, xx = y + dy, x + dx
                    if not (dy or dx):
                        continue
                    if 0 <= yy < H and 0 <= xx < W:
                        v = lab[yy * W + xx]
                        if v:
                            code |= 1 << bit
                        new = True
                        for i in range(u):
                            if seen[i] == v:
                                new = False
                        if new:
                            seen[u] = v
                            u += 1
                    bit += 1
            if u >= 3:
                if lab[y * W + x] == 0:
                    merges += 1
                else:
                    splits += 1
            elif u == 2 and lab[y * W + x] != 0 and pieces[code] > 1:
                # a fresh stamp base per mismatch: no clearing in between
                if _splits_on_removal(lab, H, W, y, x, radius, stamp, 16 * (k + 1), stacks, cap):
                    splits += 1
    free(stamp)
    free(stacks)
    return splits, merges


cdef inline Py_ssize_t _neighbours(Py_ssize_t x, Py_ssize_t y, Py_ssize_t nx, Py_ssize_t ny,
                                   Py_ssize_t* nb) noexcept nogil:
    """In-image 4-neighbours of (x, y) in the order left, up, right, down; returns how many."""
    cdef Py_ssize_t n = 0
    if x > 0:
        nb[n] = (x - 1) * ny + y
        n += 1
    if y > 0:
        nb[n] = x * ny + y - 1
        n += 1
    if x < nx - 1:
        nb[n] = (x + 1) * ny + y
        n += 1
    if y < ny - 1:
        nb[n] = x * ny + y + 1
        n += 1
    return n


def _thin(const uint8_t[:, ::1] cells, int32_t[:, ::1] out):
    """Watershed of the binary image cells (level 0) / membrane (level 255), 4-connected.

    Both arrays are indexed [x, y] (the transpose of the image), so that C order is the
    organisers' scan order: x outer, y inner. Their neighbour order, left, up, right, down,
    is kept too: where two basins flood a plateau the FIFO order decides the line. Writes
    basin labels > 0 and 0 on the watershed lines to `out`."""
    cdef Py_ssize_t nx = cells.shape[0], ny = cells.shape[1], npix = nx * ny
    cdef Py_ssize_t p, q, head, tail, j, nq
    cdef int32_t current = 0, l
    cdef bint flag = False, cell
    cdef int level
    cdef const uint8_t* c = &cells[0, 0]
    cdef int32_t* lab = &out[0, 0]
    cdef Py_ssize_t* fifo = <Py_ssize_t*> malloc(npix * sizeof(Py_ssize_t))
    cdef Py_ssize_t[4] nb
    if fifo == NULL:
        raise MemoryError()
    with nogil:
        for p in range(npix):
            lab[p] = INIT
        for level in range(2):  # the cells (grey value 0) flood first, then the membrane (255)
            cell = level == 0
            head = tail = 0
            for p in range(npix):  # mask this level; queue its pixels next to a basin
                if c[p] != cell:
                    continue
                lab[p] = MASK
                nq = _neighbours(p // ny, p % ny, nx, ny, nb)
                for j in range(nq):
                    if lab[nb[j]] >= WSHED:
                        fifo[tail] = p
                        tail += 1
                        lab[p] = INQUEUE
                        break
            while head < tail:
                p = fifo[head]
                head += 1
                nq = _neighbours(p // ny, p % ny, nx, ny, nb)
                for j in range(nq):
                    q = nb[j]
                    l = lab[q]
                    if l > 0:
                        if lab[p] == INQUEUE or (lab[p] == WSHED and flag):
                            lab[p] = l
                        elif lab[p] > 0 and lab[p] != l:
                            lab[p] = WSHED
                            flag = False
                    elif l == WSHED:
                        if lab[p] == INQUEUE:
                            lab[p] = WSHED
                            flag = True
                    elif l == MASK:
                        lab[q] = INQUEUE
                        fifo[tail] = q
                        tail += 1
            for p in range(npix):  # new minima: the cells, or a membrane touching none
                if c[p] != cell or lab[p] != MASK:
                    continue
                current += 1
                lab[p] = current
                head = 0
                tail = 1
                fifo[0] = p
                while head < tail:
                    q = fifo[head]
                    head += 1
                    nq = _neighbours(q // ny, q % ny, nx, ny, nb)
                    for j in range(nq):
                        if lab[nb[j]] == MASK:
                            lab[nb[j]] = current
                            fifo[tail] = nb[j]
                            tail += 1
    free(fifo)


def _pair_sums(const int32_t[::1] truth, const int32_t[::1] seg, Py_ssize_t n_truth, Py_ssize_t n_seg):
    """Sums of the contingency table c[i, j] of truth segments i >= 1 (0 = membrane, left
    out) against proposal segments j (0 = membrane) over the same pixels.

    Returns (n, c0, sum a_i^2, sum_{j>=1} b_j^2, sum_{i,j>=1} c_ij^2, sum a_i log a_i,
    sum b_j log b_j, sum c_ij log c_ij, #truth segments, #proposal segments), where
    n = pixels in truth cells, a_i = |truth segment i|, b_j = |proposal segment j within the
    truth cells| and c0 = truth cell pixels on proposal membrane. The counting sort by
    truth segment makes it one linear pass, however many segments there are."""
    cdef Py_ssize_t npix = truth.shape[0], k, i, j, m, t
    cdef int64_t n = 0, c0 = 0, sa2 = 0, sb2 = 0, sc2 = 0, cnt, n_a = 0, n_b = 0
    cdef double salog = 0, sblog = 0, sclog = 0
    cdef int64_t* a = <int64_t*> calloc(n_truth + 1, sizeof(int64_t))
    cdef int64_t* b = <int64_t*> calloc(n_seg + 1, sizeof(int64_t))
    cdef int64_t* c = <int64_t*> calloc(n_seg + 1, sizeof(int64_t))
    cdef Py_ssize_t* start = <Py_ssize_t*> calloc(n_truth + 2, sizeof(Py_ssize_t))
    cdef Py_ssize_t* order = <Py_ssize_t*> malloc((npix + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* touched = <Py_ssize_t*> malloc((n_seg + 1) * sizeof(Py_ssize_t))
    if a == NULL or b == NULL or c == NULL or start == NULL or order == NULL or touched == NULL:
        free(a); free(b); free(c); free(start); free(order); free(touched)
        raise MemoryError()
    with nogil:
        for k in range(npix):
            t = truth[k]
            if t:
                a[t] += 1
                if seg[k]:
                    b[seg[k]] += 1
                else:
                    c0 += 1
        for i in range(1, n_truth + 1):  # start[i]: where segment i begins in `order`
            start[i + 1] = start[i] + a[i]
        for k in range(npix):
            t = truth[k]
            if t:
                order[start[t]] = k
                start[t] += 1
        for i in range(n_truth, 0, -1):  # undo the shift of the fill
            start[i] = start[i - 1]
        start[1] = 0
        for i in range(1, n_truth + 1):
            if a[i] == 0:
                continue
            n += a[i]
            n_a += 1
            sa2 += a[i] * a[i]
            salog += a[i] * log(<double>a[i])
            m = 0
            for k in range(start[i], start[i] + a[i]):
                j = seg[order[k]]
                if j:
                    if c[j] == 0:
                        touched[m] = j
                        m += 1
                    c[j] += 1
            for k in range(m):
                cnt = c[touched[k]]
                sc2 += cnt * cnt
                sclog += cnt * log(<double>cnt)
                c[touched[k]] = 0
        for j in range(1, n_seg + 1):
            if b[j]:
                n_b += 1
                sb2 += b[j] * b[j]
                sblog += b[j] * log(<double>b[j])
    free(a); free(b); free(c); free(start); free(order); free(touched)
    return n, c0, sa2, sb2, sc2, salog, sblog, sclog, n_a, n_b + c0
