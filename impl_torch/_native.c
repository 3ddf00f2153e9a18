/* Fused CPU kernels of the GHM losses (float32), built at first use by impl_torch/_native.py and
 * called through ctypes from torch.library custom ops. Plain C, no torch headers: it compiles in
 * about a second. The pure-torch path in ghm_c.py / ghm_r.py computes the same numbers and is the
 * fallback (and the reference the tests hold this file to).
 *
 * Forward, one pass over the inputs: per entry the region index (spare slot M for masked
 * entries, M + 1 for valid entries that poison the batch), written as one byte; per region the
 * exact count and the sum of the per-entry losses (double). beta depends on the entry only
 * through its region, so sum_i beta_i L_i = sum_j beta_j S_j: the loss needs no second pass.
 * Backward, one pass: grad_i = table[ind_i] * dL_i/dpred_i (table = beta * scale * upstream,
 * formed in float32 by the caller), 0 for masked entries whatever they hold.
 *
 * Compiled with -fno-math-errno and "omp declare simd" on expf/log1pf, the loops call glibc's
 * vector math (libmvec, 1-2 ulp) where it exists; otherwise the scalar libm calls.
 * No fast-math: NaN and Inf must travel as IEEE says (a poisoned batch is detected by
 * comparisons here, and its NaN table must reach every valid output).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef GHM_MVEC
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float log1pf(float);
#endif

#define BLOCK 2048
#define LANES 8 /* interleaved sub-histograms: consecutive entries of one region do not wait on each other */
#define MAX_SLOTS 256

/* Label weights: none (every entry valid), per entry or per row (one per `cols` entries; the range
 * then starts at a row boundary), as float32 (valid: w > 0, NaN masked) or bytes (bool: != 0). */
enum { LW_NONE = 0, LW_F32 = 1, LW_U8 = 2, LW_F32_ROW = 3, LW_U8_ROW = 4 };

/* w > 0 on the weight's bits (spec.md 1): a subnormal positive weight is valid even when the
 * thread flushes subnormals to zero (torch.set_flush_denormal(True) sets DAZ, under which a
 * float comparison reads 1e-40 as 0). Positive, not NaN: 0 < bits <= bits(+inf), which is
 * bits - 1 < bits(+inf) unsigned: one compare, so the entry loops that test it stay vector loops. */
static inline int positive_bits(uint32_t bits) { return bits - 1u < 0x7f800000u; }

/* float32 weights read as their bits; may_alias: the buffer holds floats. */
typedef uint32_t __attribute__((may_alias)) bits32_t;

/* The validity of a block of entries, for the label weights that the entry loops do not read
 * themselves (all but per-entry float32). */
static void valid_block(const void *lw, int kind, int64_t cols, int64_t start, int64_t m, uint8_t *v) {
    if (kind == LW_NONE) {
        memset(v, 1, (size_t)m);
    } else if (kind == LW_U8) {
        const uint8_t *w = (const uint8_t *)lw + start;
        for (int64_t i = 0; i < m; i++) v[i] = w[i] != 0;
    } else {
        int64_t row = start / cols, col = start % cols;
        for (int64_t i = 0; i < m; i++) {
            v[i] = kind == LW_F32_ROW ? positive_bits(((const bits32_t *)lw)[row]) : ((const uint8_t *)lw)[row] != 0;
            if (++col == cols) {
                col = 0;
                row++;
            }
        }
    }
}

/* One slot's (loss sum, count) as a pair of doubles, updated by one vector add: one
 * read-modify-write per entry, not two. A count held in a double is exact up to 2^53 entries a
 * lane, far beyond a call's chunk (2^18 entries); it is converted to int64 as it leaves the kernel. */
typedef double pair_t __attribute__((vector_size(16)));

/* Lanes' rows are `stride` slots apart, LANE_PAD more than the slots: a row of exactly 4096 bytes
 * would make the lanes' slots alias each other in the CPU's store-to-load check (4K aliasing). */
#define LANE_PAD 4
static inline int64_t lane_stride(int64_t slots) { return slots + LANE_PAD; }

/* Adds the block's losses and counts to the lanes' accumulators. */
static void histogram_block(const uint8_t *ind, const float *loss, int64_t m, int64_t stride, pair_t *hist) {
    int64_t i = 0;
    for (; i + LANES <= m; i += LANES) {
        uint8_t k[LANES]; /* a local copy: the stores below cannot alias it, so it is read once */
        memcpy(k, ind + i, LANES);
        for (int l = 0; l < LANES; l++) {
            const pair_t add = {(double)loss[i + l], 1.0};
            hist[l * stride + k[l]] += add;
        }
    }
    for (; i < m; i++) {
        const pair_t add = {(double)loss[i], 1.0};
        hist[ind[i]] += add;
    }
}

static void reduce_lanes(int64_t slots, int64_t stride, const pair_t *hist, int64_t *counts, double *sums) {
    for (int64_t j = 0; j < slots; j++) {
        pair_t s = {0.0, 0.0};
        for (int l = 0; l < LANES; l++) s += hist[l * stride + j];
        sums[j] = s[0];
        counts[j] = (int64_t)s[1];
    }
}

/* sigmoid(x) and softplus(-|x|) from one e = exp(-|x|): p = 1 / (1 + e) for x >= 0, e / (1 + e)
 * below; log(1 + e^-|x|) = log1p(e). */

/* Valid flag of entry i: from the float32 weights' bits (w_bits, per entry) or from v. Called
 * only with a constant `per_entry` from always-inline entry loops, so that each loop is one vector
 * loop (a block-sized pass of its own over the weights costs more than the test inside the loop). */
#define VALID(per_entry, w_bits, v, i) ((per_entry) ? positive_bits((w_bits)[i]) : (v)[i] != 0)

/* GHM-C per entry over one block: region index (with the spare slots) and the loss to sum. */
static inline __attribute__((always_inline)) void c_entries(const float *restrict x, const float *restrict t,
                                                            const bits32_t *w_bits, const uint8_t *v, const int per_entry,
                                                            int64_t m, int32_t bins, int32_t check_t,
                                                            uint8_t *restrict ind, float *restrict loss) {
    const float fb = (float)bins;
#pragma omp simd
    for (int64_t i = 0; i < m; i++) {
        const float xi = x[i], ti = t[i];
        const int valid = VALID(per_entry, w_bits, v, i);
        const float e = expf(-fabsf(xi));
        const float r = 1.0f / (1.0f + e);
        const float p = xi >= 0.0f ? r : e * r;
        float g = fabsf(p - ti);
        g = g <= 1.0f ? g : 1.0f; /* NaN: 1 (such an entry is flagged bad below) */
        int k = (int)(g * fb);    /* truncation == floor for g >= 0 */
        k = k < bins - 1 ? k : bins - 1;
        /* Eq. (1) as x (H(x) - t) + log(1 + e^-|x|): no cancellation (spec.md 8) */
        const float ce = xi * ((xi > 0.0f ? 1.0f : 0.0f) - ti) + log1pf(e);
        const int finite = fabsf(xi) <= FLT_MAX;
        const int in_range = !check_t || (ti >= 0.0f && ti <= 1.0f);
        k = valid ? (finite && in_range ? k : bins + 1) : bins;
        ind[i] = (uint8_t)k;
        loss[i] = valid ? ce : 0.0f; /* a masked entry's values are never summed */
    }
}

/* GHM-C backward (or the per-entry loss, for reduction "none") over [start, start + n).
 * grad_x_i = table[ind_i] (p_i - t_i) and grad_t_i = -table[ind_i] x_i (each skipped when its
 * pointer is NULL), loss_i = table[ind_i] L_i; 0 for masked entries (ind == bins). */
void ghm_c_backward(const float *restrict x, const float *restrict t, const uint8_t *restrict ind, const float *table, int64_t start, int64_t n,
                    int32_t bins, float *restrict grad_x, float *restrict grad_t, float *restrict loss) {
    float tab[MAX_SLOTS];
    memcpy(tab, table, sizeof(float) * (size_t)(bins + 2));
    const float *xs = x + start, *ts = t + start;
    const uint8_t *is = ind + start;
    if (grad_x) {
        float *gx = grad_x + start;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const float xi = xs[i];
            const float e = expf(-fabsf(xi));
            const float r = 1.0f / (1.0f + e);
            const float p = xi >= 0.0f ? r : e * r;
            const int k = is[i];
            gx[i] = k == bins ? 0.0f : tab[k] * (p - ts[i]);
        }
    }
    if (grad_t) {
        float *gt = grad_t + start;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const int k = is[i];
            gt[i] = k == bins ? 0.0f : tab[k] * -xs[i];
        }
    }
    if (loss) {
        float *ls = loss + start;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const float xi = xs[i], ti = ts[i];
            const float ce = xi * ((xi > 0.0f ? 1.0f : 0.0f) - ti) + log1pf(expf(-fabsf(xi)));
            const int k = is[i];
            ls[i] = k == bins ? 0.0f : tab[k] * ce;
        }
    }
}

/* GHM-R, d = x - t: with s = max(|d|, mu), r = sqrt((d/s)^2 + (mu/s)^2) in [1, sqrt 2],
 * u = (d/s) / r = d / hypot(d, mu) (Eq. 18) and ASL1 = d u / (1 + (mu/s) / r) (Eq. 17, no
 * cancellation), as the compiled pure path; finite for every finite d. Per entry over one block:
 * region index and the loss to sum. */
static inline __attribute__((always_inline)) void r_entries(const float *restrict x, const float *restrict t,
                                                            const bits32_t *w_bits, const uint8_t *v, const int per_entry,
                                                            int64_t m, int32_t bins, float mu, uint8_t *restrict ind,
                                                            float *restrict loss) {
    const float fb = (float)bins;
#pragma omp simd
    for (int64_t i = 0; i < m; i++) {
        const int valid = VALID(per_entry, w_bits, v, i);
        const float d = x[i] - t[i];
        const int finite = fabsf(d) <= FLT_MAX;
        const float dd = finite ? d : 0.0f;
        const float s = fabsf(dd) > mu ? fabsf(dd) : mu;
        const float ds = dd / s, ms = mu / s;
        const float r = sqrtf(ds * ds + ms * ms);
        const float u = ds / r;
        float g = fabsf(u);
        g = g <= 1.0f ? g : 1.0f;
        int k = (int)(g * fb);
        k = k < bins - 1 ? k : bins - 1;
        k = valid ? (finite ? k : bins + 1) : bins;
        ind[i] = (uint8_t)k;
        loss[i] = valid ? (finite ? dd * u / (1.0f + ms / r) : NAN) : 0.0f;
    }
}

/* GHM-C (kind 0) or GHM-R (kind 1) forward over entries [start, start + n) of the flattened
 * inputs: the kind's entry loop per block, then the block's histogram. counts / sums: bins + 2
 * slots (written, not accumulated). check_t (GHM-C): also flag a target outside [0, 1] (NaN
 * included). Returns 0, or -1 when bins + 2 > MAX_SLOTS. */
int ghm_forward(int32_t kind, const float *restrict x, const float *restrict t, const void *lw, int32_t lw_kind,
                int64_t cols, int64_t start, int64_t n, int32_t bins, int32_t check_t, float mu,
                uint8_t *restrict ind, int64_t *counts, double *sums) {
    if (bins + 2 > MAX_SLOTS || bins < 1) return -1;
    pair_t hist[LANES * (MAX_SLOTS + LANE_PAD)];
    uint8_t v[BLOCK];
    float loss[BLOCK];
    const int64_t slots = bins + 2, stride = lane_stride(slots);
    memset(hist, 0, sizeof(pair_t) * (size_t)(LANES * stride));
    for (int64_t b = 0; b < n; b += BLOCK) {
        const int64_t m = n - b < BLOCK ? n - b : BLOCK, at = start + b;
        const int per_entry = lw_kind == LW_F32; /* constant per call site below: one vector loop each */
        const bits32_t *w_bits = per_entry ? (const bits32_t *)lw + at : NULL;
        if (!per_entry) valid_block(lw, lw_kind, cols, at, m, v);
        if (kind == 0 && per_entry)
            c_entries(x + at, t + at, w_bits, NULL, 1, m, bins, check_t, ind + at, loss);
        else if (kind == 0)
            c_entries(x + at, t + at, NULL, v, 0, m, bins, check_t, ind + at, loss);
        else if (per_entry)
            r_entries(x + at, t + at, w_bits, NULL, 1, m, bins, mu, ind + at, loss);
        else
            r_entries(x + at, t + at, NULL, v, 0, m, bins, mu, ind + at, loss);
        histogram_block(ind + at, loss, m, stride, hist);
    }
    reduce_lanes(slots, stride, hist, counts, sums);
    return 0;
}

/* GHM-R backward / per-entry loss: grad_x_i = table[ind_i] u_i, grad_t_i = -grad_x_i,
 * loss_i = table[ind_i] ASL1(d_i); 0 for masked entries. */
void ghm_r_backward(const float *restrict x, const float *restrict t, const uint8_t *restrict ind, const float *table, int64_t start, int64_t n,
                    int32_t bins, float mu, float *restrict grad_x, float *restrict grad_t, float *restrict loss) {
    float tab[MAX_SLOTS];
    memcpy(tab, table, sizeof(float) * (size_t)(bins + 2));
    const float *xs = x + start, *ts = t + start;
    const uint8_t *is = ind + start;
    float *gx = grad_x ? grad_x + start : NULL, *gt = grad_t ? grad_t + start : NULL;
    float *ls = loss ? loss + start : NULL;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float d = xs[i] - ts[i];
        const float s = fabsf(d) > mu ? fabsf(d) : mu;
        const float ds = d / s, ms = mu / s;
        const float r = sqrtf(ds * ds + ms * ms);
        const float u = ds / r;
        const int k = is[i];
        const float w = k == bins ? 0.0f : tab[k];
        const float gu = k == bins ? 0.0f : w * u;
        if (gx) gx[i] = gu;
        if (gt) gt[i] = -gu;
        if (ls) ls[i] = k == bins ? 0.0f : w * (d * u / (1.0f + ms / r));
    }
}

/* Whole calls, split into chunks of `chunk` entries (per-chunk counts and sums: rows of
 * counts / sums, bins + 2 each), the chunks spread over `threads` threads of the OpenMP runtime
 * torch itself runs on (built with -fopenmp, this library shares torch's libgomp: no second pool
 * of threads competing with torch's). The results do not depend on the number of threads. */
int ghm_forward_chunks(int32_t kind, const float *x, const float *t, const void *lw, int32_t lw_kind, int64_t cols,
                       int64_t n, int64_t chunk, int32_t threads, int32_t bins, int32_t check_t, float mu, uint8_t *ind,
                       int64_t *counts, double *sums) {
    const int64_t chunks = (n + chunk - 1) / chunk, slots = bins + 2;
    int status = 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && chunks > 1) reduction(| : status)
#endif
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t start = k * chunk, size = n - start < chunk ? n - start : chunk;
        status |= ghm_forward(kind, x, t, lw, lw_kind, cols, start, size, bins, check_t, mu, ind, counts + k * slots,
                              sums + k * slots);
    }
    return status;
}

void ghm_backward_chunks(int32_t kind, const float *x, const float *t, const uint8_t *ind, const float *table,
                         int64_t n, int64_t chunk, int32_t threads, int32_t bins, float mu, float *grad_x,
                         float *grad_t, float *loss) {
    const int64_t chunks = (n + chunk - 1) / chunk;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && chunks > 1)
#endif
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t start = k * chunk, size = n - start < chunk ? n - start : chunk;
        if (kind == 0)
            ghm_c_backward(x, t, ind, table, start, size, bins, grad_x, grad_t, loss);
        else
            ghm_r_backward(x, t, ind, table, start, size, bins, mu, grad_x, grad_t, loss);
    }
}
