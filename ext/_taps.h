/* The inner sum of the cubic warp (ext/_warp.pyx, cubic_sample) where the 4 taps along x
 * are 4 consecutive doubles: sum over planes a, rows b and taps t of
 *     wz[a] wy[b] wx[t] c[planes[a] + rows[b] + t],
 * computed as sum_t wx[t] (sum_a wz[a] (sum_b wy[b] c[...][t])), two taps at a time.
 *
 * Why C: the sum is bound by the number of instructions (one multiply and one add per tap
 * in scalar code). With GCC's and Clang's vector extension a pair of taps takes one SSE2
 * instruction on every x86-64 (and one NEON instruction on ARM). Other compilers get the
 * scalar loop, which sums in the same order, so the results are the same bits. Planes of weight 0 (an image, which is a
 * volume of one plane, or a position on a whole plane) are skipped. */
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
typedef double unet_ref_pair __attribute__((vector_size(16)));

static inline unet_ref_pair unet_ref_load_pair(const double* p) {
    unet_ref_pair v;
    memcpy(&v, p, sizeof v); /* an unaligned load */
    return v;
}

static inline double unet_ref_cubic_taps(const double* first, ptrdiff_t plane_stride, const ptrdiff_t* planes,
                                         const ptrdiff_t* rows, const double* wz, const double* wy,
                                         const double* wx) {
    /* written out, so that the compiler keeps the row weights and offsets in registers */
    const unet_ref_pair y0 = {wy[0], wy[0]}, y1 = {wy[1], wy[1]}, y2 = {wy[2], wy[2]}, y3 = {wy[3], wy[3]};
    const ptrdiff_t r0 = rows[0], r1 = rows[1], r2 = rows[2], r3 = rows[3];
    unet_ref_pair low = {0.0, 0.0}, high = {0.0, 0.0}; /* taps 0, 1 and taps 2, 3 */
    for (int a = 0; a < 4; a++) {
        if (wz[a] == 0.0) continue;
        const double* p = first + planes[a] * plane_stride;
        unet_ref_pair plane_low = y0 * unet_ref_load_pair(p + r0), plane_high = y0 * unet_ref_load_pair(p + r0 + 2);
        plane_low += y1 * unet_ref_load_pair(p + r1);
        plane_high += y1 * unet_ref_load_pair(p + r1 + 2);
        plane_low += y2 * unet_ref_load_pair(p + r2);
        plane_high += y2 * unet_ref_load_pair(p + r2 + 2);
        plane_low += y3 * unet_ref_load_pair(p + r3);
        plane_high += y3 * unet_ref_load_pair(p + r3 + 2);
        low += wz[a] * plane_low;
        high += wz[a] * plane_high;
    }
    return wx[0] * low[0] + wx[1] * low[1] + wx[2] * high[0] + wx[3] * high[1];
}
#else
static inline double unet_ref_cubic_taps(const double* first, ptrdiff_t plane_stride, const ptrdiff_t* planes,
                                         const ptrdiff_t* rows, const double* wz, const double* wy,
                                         const double* wx) {
    double tap[4] = {0.0, 0.0, 0.0, 0.0};
    for (int a = 0; a < 4; a++) {
        if (wz[a] == 0.0) continue;
        const double* plane = first + planes[a] * plane_stride;
        double plane_tap[4];
        for (int t = 0; t < 4; t++) plane_tap[t] = wy[0] * plane[rows[0] + t];
        for (int b = 1; b < 4; b++)
            for (int t = 0; t < 4; t++) plane_tap[t] += wy[b] * plane[rows[b] + t];
        for (int t = 0; t < 4; t++) tap[t] += wz[a] * plane_tap[t];
    }
    return wx[0] * tap[0] + wx[1] * tap[1] + wx[2] * tap[2] + wx[3] * tap[3];
}
#endif
