# cython: language_level=3
"""Connected regions of equal id, numbered once per training image (unet_ref/fast/cells.py,
`split_regions`): what skimage.measure.label(labels, background=0) computes.

`split_regions(labels, connectivity, out)` gives each connected region of equal non-zero
id its own id 1..n, numbered in raster order of the regions' first voxels, and returns n.
An image is a volume of one plane (D = 1). Two voxels are neighbours when they differ by
at most 1 along every axis and along at most `connectivity` axes (scipy's
generate_binary_structure(ndim, connectivity): 6, 18 or 26 neighbours in 3-D, 4 or 8 in
2-D).

The algorithm is the classical two-pass labelling on runs (e.g. He, Chao and Suzuki,
"A run-based two-scan labeling algorithm", IEEE TIP 2008), written for equal ids instead of
a binary mask:

1. every row (z, y) is cut into runs: maximal intervals [begin, end) of one non-zero id;
2. a run is united (union-find, the smaller run index as the root) with each run of equal
   id in the earlier neighbour rows (z, y - 1) and (z - 1, y - 1 .. y + 1) that touches it:
   overlapping columns, or columns one apart when that diagonal step is a neighbour under
   `connectivity`;
3. the roots are numbered in run order (raster order), and the runs are written out.

A voxel-by-voxel labelling (skimage.measure.label, scipy.ndimage.label on a mask)
visits every voxel's 13 earlier neighbours; the runs of cells are tens of voxels long, so
this does a few operations per run instead. Equal to skimage.measure.label(labels,
background=0, connectivity=...) as a partition (tests/test_fast.py).
"""
from libc.stdint cimport int32_t
from libc.stdlib cimport free, malloc, realloc

from _types cimport label_t


cdef inline Py_ssize_t _find(Py_ssize_t* parent, Py_ssize_t i) noexcept nogil:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


cdef inline void _unite(Py_ssize_t* parent, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    a = _find(parent, a)
    b = _find(parent, b)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


cdef void _unite_rows(const label_t* row, const label_t* other, Py_ssize_t first, Py_ssize_t last,
                      Py_ssize_t other_first, Py_ssize_t other_last, const Py_ssize_t* begin,
                      const Py_ssize_t* end, Py_ssize_t reach, Py_ssize_t* parent) noexcept nogil:
    # unite runs first..last-1 of `row` with the touching runs of equal id among
    # other_first..other_last-1 of an earlier row `other`; touching: the columns
    # [begin - reach, end + reach) overlap the other run's. Both lists are sorted and
    # disjoint, so the first candidate only moves right.
    cdef Py_ssize_t i, j, start = other_first
    for i in range(first, last):
        while start < other_last and end[start] <= begin[i] - reach:
            start += 1
        j = start
        while j < other_last and begin[j] < end[i] + reach:
            if other[begin[j]] == row[begin[i]]:
                _unite(parent, i, j)
            j += 1


cdef Py_ssize_t _runs(const label_t* row, Py_ssize_t width, Py_ssize_t i, Py_ssize_t* begin,
                      Py_ssize_t* end) noexcept nogil:
    # record the runs of one row from run index i on; returns the next index
    cdef Py_ssize_t x = 0, start
    cdef label_t value
    while x < width:
        value = row[x]
        start = x
        x += 1
        while x < width and row[x] == value:
            x += 1
        if value != 0:
            begin[i], end[i] = start, x
            i += 1
    return i


def split_regions(const label_t[:, :, ::1] labels, int connectivity, int32_t[:, :, ::1] out):
    """Write the regions of `labels` (D, H, W) into `out` (D, H, W) (zeros on entry);
    return their count. connectivity: 1 .. 3 (3 = every neighbour)."""
    cdef Py_ssize_t depth = labels.shape[0], height = labels.shape[1], width = labels.shape[2]
    cdef Py_ssize_t rows = depth * height, r, other, i, n = 0, z, y, dz, dy, axes
    cdef int32_t count = 0
    cdef Py_ssize_t* row_runs = NULL  # row r holds runs row_runs[r] .. row_runs[r + 1] - 1
    cdef Py_ssize_t* begin = NULL  # columns [begin, end) of each run
    cdef Py_ssize_t* end = NULL
    cdef Py_ssize_t* parent = NULL
    cdef Py_ssize_t* grown = NULL
    cdef Py_ssize_t capacity
    cdef bint out_of_memory = False
    cdef int32_t* number = NULL
    cdef const label_t* lab
    cdef int32_t* written
    if labels.size == 0:
        return 0
    lab = &labels[0, 0, 0]
    written = &out[0, 0, 0]
    try:
        row_runs = <Py_ssize_t*>malloc((rows + 1) * sizeof(Py_ssize_t))
        capacity = rows + 16  # runs; doubled when full
        begin = <Py_ssize_t*>malloc(capacity * sizeof(Py_ssize_t))
        end = <Py_ssize_t*>malloc(capacity * sizeof(Py_ssize_t))
        if row_runs == NULL or begin == NULL or end == NULL:
            raise MemoryError()
        with nogil:  # 1. the runs of every row
            for r in range(rows):
                row_runs[r] = n
                if n + width > capacity:  # room for this row's runs, whatever they are
                    capacity = 2 * capacity + width
                    grown = <Py_ssize_t*>realloc(begin, capacity * sizeof(Py_ssize_t))
                    if grown != NULL:
                        begin = grown
                        grown = <Py_ssize_t*>realloc(end, capacity * sizeof(Py_ssize_t))
                    if grown == NULL:
                        out_of_memory = True
                        break
                    end = grown
                n = _runs(lab + r * width, width, n, begin, end)
            row_runs[rows] = n
        if out_of_memory:
            raise MemoryError()
        parent = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t) + 1)
        number = <int32_t*>malloc(n * sizeof(int32_t) + 1)
        if parent == NULL or number == NULL:
            raise MemoryError()
        with nogil:
            for i in range(n):
                parent[i] = i
            for r in range(rows):  # 2. unite with the earlier neighbour rows
                z, y = r // height, r % height
                for dz in range(2):  # the row above in plane z (dz = 0), or a row of plane z - 1
                    for dy in range(-1, 2):
                        if (dz == 0 and dy != -1) or (dz == 1 and z == 0) or not 0 <= y + dy < height:
                            continue
                        axes = dz + (dy != 0)  # the axes the two rows are apart along
                        if axes > connectivity:
                            continue
                        other = (z - dz) * height + y + dy
                        # a diagonal step along x adds one axis
                        _unite_rows(lab + r * width, lab + other * width, row_runs[r], row_runs[r + 1],
                                    row_runs[other], row_runs[other + 1], begin, end,
                                    1 if axes < connectivity else 0, parent)
            for i in range(n):  # 3. number the roots in raster order (a root precedes its runs)
                other = _find(parent, i)
                if other == i:
                    count += 1
                    number[i] = count
                else:
                    number[i] = number[other]
            for r in range(rows):
                for i in range(row_runs[r], row_runs[r + 1]):
                    for other in range(begin[i], end[i]):
                        written[r * width + other] = number[i]
        return count
    finally:
        free(row_runs)
        free(begin)
        free(end)
        free(parent)
        free(number)
