# cython: language_level=3
# The fused types the kernels share: one list of the integer dtypes labels may have
# (cimported by ext/_d1d2.pyx, ext/_regions.pyx and ext/_warp.pyx).
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

ctypedef fused label_t:
    int8_t
    int16_t
    int32_t
    int64_t
    uint8_t
    uint16_t
    uint32_t
    uint64_t

# what the nearest-neighbour warp copies: labels, and images when it samples them
ctypedef fused sample_t:
    label_t
    float
    double
