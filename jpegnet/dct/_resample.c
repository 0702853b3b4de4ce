/*
 * jpegnet's fused CPU resampling kernel: quantized coefficient planes → normalized DCT batch, in one pass.
 *
 * For each plane (the Y, Cb or Cr of one image) it does what `jpegnet.data.dct_resample`'s torch path does
 * (the path used on accelerators), without any intermediate array the size of the image:
 *   1. build the banded DCT-domain operators of the window's crop + antialiased resize + mirror, one per
 *      axis (the same construction as `jpegnet.dct.transforms.resample_operator`: PyTorch's
 *      `interpolate(mode=..., antialias=True)` kernel, the triangle of 'bilinear' or Keys' cubic (a = -0.5,
 *      Pillow's BICUBIC) of 'bicubic', composed with the block IDCT before it and the block DCT after it,
 *      reading only the k lowest input frequencies);
 *   2. dequantize the k×k kept coefficients of the blocks under the window (only those) into a small
 *      per-thread scratch buffer;
 *   3. apply the vertical operator, then the horizontal one;
 *   4. normalize (per-coefficient scale and bias) and store each output block straight into its slot of
 *      the batch tensor: y (N, H/8, W/8, 64) or cbcr (N, H/16, W/16, 128), i.e. channels_last memory.
 *
 * Layouts (f, g: output frequencies, always the innermost 8 floats so that one AVX vector holds them):
 *   operator  w[o][b][u][f]   output block o reads input blocks first[o] + b, input frequency u < k;
 *   input     xs[r][c][u·k + v]   dequantized, rows / columns relative to the window's first block;
 *   vertical  t[o][c][v][f]   after the vertical pass (f: output vertical frequency);
 *   output    out[f·8 + g]    one block, natural order, written once after normalization.
 * Both passes are outer-product loops: a vector of 8 operator weights times a broadcast coefficient,
 * accumulated in registers (k or 8 accumulators), so the compiler emits FMA on 8-float vectors.
 *
 * The images of a batch are shared by `threads` pthreads through an atomic counter (an image's planes run on
 * one thread, so Cb and Cr, which usually share their geometry, share their operators too); no Python object
 * is touched while they run (the GIL is released).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#define BLOCK 8
#define MAX_THREADS 64
/* Argument bounds, far above any JPEG (65535 px a side) and far below where the int / long arithmetic on
 * pixel and block positions (out_blocks * 8, positions converted from double) could overflow. */
#define MAX_PIXELS_SIDE (1 << 16)      /* plane width / height, stored blocks ×8: a JPEG side is at most 65500 */
#define MAX_OUT_BLOCKS (1 << 16)       /* output blocks per side */
#define MAX_PLANE_SCALE 16.0           /* fx, fy: a plane's pixels per luma pixel */

typedef float v8f __attribute__((vector_size(32)));
/* the same vector for loads / stores at any 4-byte alignment (output slots, user arrays) */
typedef float v8f_u __attribute__((vector_size(32), aligned(4)));

/* Compile the hot loops for AVX2 + FMA as well as for the baseline, and pick at load time (ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(JPEGNET_NO_CLONES)
#define HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define HOT_CLONES
#endif

/* Orthonormal DCT-II: D[u][x] = c(u) cos((2x + 1) u π / 16), filled once at import. */
static double dct8[BLOCK][BLOCK];

static void init_dct(void) {
    for (int u = 0; u < BLOCK; u++)
        for (int x = 0; x < BLOCK; x++)
            dct8[u][x] = cos((2 * x + 1) * u * M_PI / (2.0 * BLOCK)) * sqrt(2.0 / BLOCK) / (u == 0 ? sqrt(2.0) : 1.0);
}

/* ------------------------------------------------------------------------------------------------ */
/* One plane's job, all plain C data.                                                                 */

typedef struct {
    const int16_t *coefs;          /* block (0, 0) of the plane */
    Py_ssize_t row_stride;         /* in int16 elements, between block rows */
    Py_ssize_t col_stride;         /* between block columns */
    int rows, cols;                /* stored blocks */
    float quant[64];
    double x, y, w, h;             /* window, in this plane's pixels */
    int width, height;             /* plane size in pixels: samples at or past it are never read */
    int flip;                      /* mirror left-right */
    int out_rows, out_cols;        /* output blocks */
    float *out;                    /* output block (0, 0) */
    Py_ssize_t out_row_stride;     /* in floats */
    Py_ssize_t out_col_stride;
    const float *scale, *bias;     /* 64 each */
} PlaneJob;

/* One axis' banded operator. */
typedef struct {
    int out_blocks, k, max_band;
    int lo, hi;                    /* input blocks [lo, hi) read by some output block */
    int *first, *band;             /* per output block */
    float *w;                      /* [o][b < max_band][u < k][f < 8] */
} Axis;

/* Growing per-thread scratch memory (32-byte aligned). */
typedef struct {
    void *ptr;
    size_t size;
} Scratch;

static void *scratch_get(Scratch *s, size_t bytes) {
    if (bytes > s->size) {
        free(s->ptr);
        s->ptr = NULL;
        s->size = 0;
        size_t want = bytes + bytes / 4 + 4096;
        if (posix_memalign(&s->ptr, 64, want) != 0) {
            s->ptr = NULL;
            return NULL;
        }
        s->size = want;
    }
    return s->ptr;
}

static inline long floor_div(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* The kept input frequencies of a resize: transforms.frequencies_kept with the same arithmetic order. */
static int frequencies_kept(double ratio, double margin) {
    if (margin < 0) return BLOCK;   /* k_margin None: the exact composition */
    double k = ceil(BLOCK * ratio * margin);
    if (!(k < BLOCK)) k = BLOCK;    /* also NaN (0 · inf): never converted to int */
    if (k < 1) k = 1;
    return (int)k;
}

/* The resampling filters (transforms.INTERPOLATIONS) and their half-widths before stretching: the triangle
 * of 'bilinear' reaches 1 pixel per side, Keys' cubic of 'bicubic' 2; on a downscale by s both are stretched
 * by s (support radius·s pixels per side). */
enum { FILTER_TRIANGLE = 0, FILTER_CUBIC = 1 };
static const double filter_radius[2] = {1.0, 2.0};
#define CUBIC_A (-0.5f)  /* Keys' parameter: Pillow's BICUBIC and PyTorch's antialiased bicubic */

/* Size of an axis' operator arrays: out_blocks ints ×2 + out_blocks·max_band·k·8 floats. The band is
 * bounded by the filter's reach: the 8 output samples of a block have centres within 7·scale of each other and
 * read taps from floor(c − s + ½) to floor(c + s + ½) for a support of s = radius·max(scale, 1) pixels per
 * side, i.e. at most 7·scale + 2s + 2 < 8·scale + 2s + 2 pixels, which span at most
 * ceil((8·scale + 2s + 2)/8) + 1 blocks (one more for a start inside a block; +2 is kept as margin). With the
 * cubic's radius 2 and the largest scale a valid window allows (parse_plane: 2·(65536 + 8) pixels into one
 * block, scale 16386, s 32772) this is 24582 blocks, far from int overflow; out_blocks · band grows as
 * (1 + radius/4)·length/8 + 3·out_blocks, linear in the plane and the output as for the triangle. max_band is
 * computed exactly in build_axis, this only sizes the memory. */
static int band_bound(double length, int out_blocks, int filter) {
    double scale = length / (out_blocks * BLOCK);
    double support = filter_radius[filter] * (scale > 1.0 ? scale : 1.0);
    return (int)ceil((BLOCK * scale + 2 * support + 2) / BLOCK) + 2;
}

typedef int v8i __attribute__((vector_size(32)));

/* Build the banded operator of one axis (transforms.resample_support + resample_operator) with `filter`.
 * centre / lo / hi: scratch for out_blocks·8 values each; wt: scratch for max_band·8 vectors.
 * The supports are computed in double on absolute positions (as resample_support); the weights in float on
 * positions relative to each output block's first input pixel (as resample_operator), one vector lane per
 * output sample of the block. */
HOT_CLONES
static void build_axis(Axis *ax, double start, double length, int out_blocks, int valid_stop, int flip, int k,
                       int filter, double *centre, long *lo, long *hi, v8f *wt) {
    const int n = out_blocks * BLOCK;
    const double scale = length / n;
    const double stretch = scale > 1.0 ? scale : 1.0;   /* antialiasing: the filter widened by the downscale */
    const double support = filter_radius[filter] * stretch;
    const float inv_support = (float)(1.0 / stretch);   /* the filter's argument: distance / stretch */
    const double win_lo = floor(start + 1e-9);
    double win_hi = ceil(start + length - 1e-9);
    if (win_hi > valid_stop) win_hi = valid_stop;
    for (int i = 0; i < n; i++) {
        int ii = flip ? n - 1 - i : i;
        double c = start + (ii + 0.5) * scale;
        double l = floor(c - support + 0.5), h = floor(c + support + 0.5);
        if (l < win_lo) l = win_lo;
        if (h > win_hi) h = win_hi;
        if (h < l + 1) h = l + 1;   /* a window never maps to nothing */
        centre[i] = c;
        lo[i] = (long)l;
        hi[i] = (long)h;
    }
    ax->out_blocks = out_blocks;
    ax->k = k;
    ax->max_band = 0;
    ax->lo = 0x7fffffff;
    ax->hi = -0x7fffffff;
    for (int o = 0; o < out_blocks; o++) {
        long mn = lo[o * BLOCK], mx = hi[o * BLOCK];
        for (int i = 1; i < BLOCK; i++) {
            if (lo[o * BLOCK + i] < mn) mn = lo[o * BLOCK + i];
            if (hi[o * BLOCK + i] > mx) mx = hi[o * BLOCK + i];
        }
        int first = (int)floor_div(mn, BLOCK), last = (int)floor_div(mx - 1, BLOCK);
        ax->first[o] = first;
        ax->band[o] = last - first + 1;
        if (ax->band[o] > ax->max_band) ax->max_band = ax->band[o];
        if (first < ax->lo) ax->lo = first;
        if (last + 1 > ax->hi) ax->hi = last + 1;
    }
    /* dct_t[i] = the column i of D as a vector over f; dct_u[u][x] = D[u][x] */
    v8f dct_col[BLOCK];
    for (int i = 0; i < BLOCK; i++)
        for (int f = 0; f < BLOCK; f++) dct_col[i][f] = (float)dct8[f][i];
    const v8f half = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    const v8f one = half + half, two = one + one;
    /* Keys' cubic, as Horner polynomials: (a+2)x³ − (a+3)x² + 1 on x < 1, a(x³ − 5x² + 8x − 4) on 1 <= x < 2 */
    const v8f c_a2 = one * (CUBIC_A + 2.0f), c_a3 = one * (CUBIC_A + 3.0f), c_a = one * CUBIC_A;
    const v8f five = one * 5.0f, eight = one * 8.0f, four = one * 4.0f;
    const v8i abs_mask = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff,
                          0x7fffffff};
    const int mb = ax->max_band;
    for (int o = 0; o < out_blocks; o++) {
        const int band = ax->band[o], taps = band * BLOCK;
        const double base = (double)ax->first[o] * BLOCK;
        v8f rel_centre, rel_lo, rel_hi;
        for (int i = 0; i < BLOCK; i++) {
            rel_centre[i] = (float)(centre[o * BLOCK + i] - base);
            rel_lo[i] = (float)(lo[o * BLOCK + i] - base);
            rel_hi[i] = (float)(hi[o * BLOCK + i] - base);
        }
        /* wt[tap]: the filter's weights of the block's 8 output samples at that input pixel */
        v8f sum = {0};
        for (int t = 0; t < taps; t++) {
            v8f tv = {0};
            tv += (float)t;
            v8f x = (v8f)((v8i)(tv + half - rel_centre) & abs_mask) * inv_support;
            v8f w;
            v8i keep = (tv >= rel_lo) & (tv < rel_hi);
            if (filter == FILTER_CUBIC) {
                v8f near = (c_a2 * x - c_a3) * x * x + one;
                v8f far = (((x - five) * x + eight) * x - four) * c_a;
                v8i is_near = x < one;
                w = (v8f)(((v8i)near & is_near) | ((v8i)far & ~is_near));
                keep &= x < two;
            } else {
                w = one - x;
                keep &= w > 0;
            }
            w = (v8f)((v8i)w & keep);
            wt[t] = w;
            sum += w;
        }
        /* the cubic's outer lobes are negative, but a tap within half a pixel of each centre always stays (the
         * centre lies in the window) and outweighs them: sums are positive; the floor only guards against 0 */
        v8f floor_sum = {1e-30f, 1e-30f, 1e-30f, 1e-30f, 1e-30f, 1e-30f, 1e-30f, 1e-30f};
        v8i bigger = sum > floor_sum;
        sum = (v8f)(((v8i)sum & bigger) | ((v8i)floor_sum & ~bigger));
        v8f norm = one / sum;
        /* A[b][u][f] = Σ_i D[f][i] · m[i],  m[i] = norm[i] · Σ_x wt[b·8 + x][i] D[u][x] */
        float *dst = ax->w + (size_t)o * mb * k * BLOCK;
        for (int b = 0; b < band; b++) {
            for (int u = 0; u < k; u++) {
                v8f m = {0};
                for (int x = 0; x < BLOCK; x++) m += wt[b * BLOCK + x] * (float)dct8[u][x];
                m *= norm;
                v8f a = {0};
                for (int i = 0; i < BLOCK; i++) a += dct_col[i] * m[i];
                *(v8f *)(dst + (b * k + u) * BLOCK) = a;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* The two passes, specialized on K (the kept frequencies) so the accumulators stay in registers.     */

/* The taps of output block o that fall on the stored input blocks (`count` of them, the first being block
 * `first_stored` of the plane): tap b, for b0 <= b < b1, reads stored block `start + b` with the weights at
 * w + b·K·8. Taps outside the stored blocks (past the plane's edge) carry zero weight and are skipped. */
typedef struct {
    const float *w;
    int start, b0, b1;
} Taps;

static inline __attribute__((always_inline)) Taps stored_taps(const Axis *ax, int o, int first_stored, int count,
                                                               const int K) {
    Taps taps = {ax->w + (size_t)o * ax->max_band * K * BLOCK, ax->first[o] - first_stored, 0, ax->band[o]};
    if (taps.start < 0) taps.b0 = -taps.start;
    if (taps.start + taps.b1 > count) taps.b1 = count - taps.start;
    return taps;
}

/* t[o][c][v][f] = Σ_b Σ_u w_v[o][b][u][f] · xs[first[o] + b − r0][c][u·K + v] */
static inline __attribute__((always_inline)) void vertical_pass(const Axis *av, const float *xs, int r0, int nr,
                                                                 int nc, float *t, const int K) {
    const int kk = K * K;
    for (int o = 0; o < av->out_blocks; o++) {
        const Taps rows = stored_taps(av, o, r0, nr, K);
        for (int c = 0; c < nc; c++) {
            v8f acc[BLOCK];
            for (int v = 0; v < K; v++) acc[v] = (v8f){0};
            for (int b = rows.b0; b < rows.b1; b++) {
                const float *x = xs + ((size_t)(rows.start + b) * nc + c) * kk;
                const float *wb = rows.w + (size_t)b * K * BLOCK;
                for (int u = 0; u < K; u++) {
                    v8f a = *(const v8f *)(wb + u * BLOCK);
                    for (int v = 0; v < K; v++) acc[v] += x[u * K + v] * a;
                }
            }
            float *dst = t + ((size_t)o * nc + c) * K * BLOCK;
            for (int v = 0; v < K; v++) *(v8f *)(dst + v * BLOCK) = acc[v];
        }
    }
}

/* out[ov][oh][f·8 + g] = scale · Σ_b Σ_v t[ov][first[oh] + b − c0][v][f] · w_h[oh][b][v][g] + bias */
static inline __attribute__((always_inline)) void horizontal_pass(const Axis *ah, const float *t, int c0, int nc,
                                                                   int ov_blocks, const PlaneJob *job, const int K) {
    v8f scale[BLOCK], bias[BLOCK];
    for (int f = 0; f < BLOCK; f++) {
        scale[f] = *(const v8f_u *)(job->scale + f * BLOCK);
        bias[f] = *(const v8f_u *)(job->bias + f * BLOCK);
    }
    for (int ov = 0; ov < ov_blocks; ov++) {
        const float *trow = t + (size_t)ov * nc * K * BLOCK;
        float *out_row = job->out + ov * job->out_row_stride;
        for (int oh = 0; oh < ah->out_blocks; oh++) {
            const Taps cols = stored_taps(ah, oh, c0, nc, K);
            v8f acc[BLOCK];
            for (int f = 0; f < BLOCK; f++) acc[f] = (v8f){0};
            for (int b = cols.b0; b < cols.b1; b++) {
                const float *tc = trow + (size_t)(cols.start + b) * K * BLOCK;
                const float *wb = cols.w + (size_t)b * K * BLOCK;
                for (int v = 0; v < K; v++) {
                    v8f a = *(const v8f *)(wb + v * BLOCK);
                    for (int f = 0; f < BLOCK; f++) acc[f] += tc[v * BLOCK + f] * a;
                }
            }
            float *dst = out_row + oh * job->out_col_stride;
            for (int f = 0; f < BLOCK; f++) *(v8f_u *)(dst + f * BLOCK) = acc[f] * scale[f] + bias[f];
        }
    }
}

static inline __attribute__((always_inline)) void passes(const Axis *av, const Axis *ah, const float *xs, int r0,
                                                          int nr, int c0, int nc, float *t, const PlaneJob *job,
                                                          const int K) {
    vertical_pass(av, xs, r0, nr, nc, t, K);
    horizontal_pass(ah, t, c0, nc, av->out_blocks, job, K);
}

HOT_CLONES
static void run_passes(const Axis *av, const Axis *ah, const float *xs, int r0, int nr, int c0, int nc, float *t,
                       const PlaneJob *job, int k) {
    switch (k) {
        case 1: passes(av, ah, xs, r0, nr, c0, nc, t, job, 1); break;
        case 2: passes(av, ah, xs, r0, nr, c0, nc, t, job, 2); break;
        case 3: passes(av, ah, xs, r0, nr, c0, nc, t, job, 3); break;
        case 4: passes(av, ah, xs, r0, nr, c0, nc, t, job, 4); break;
        case 5: passes(av, ah, xs, r0, nr, c0, nc, t, job, 5); break;
        case 6: passes(av, ah, xs, r0, nr, c0, nc, t, job, 6); break;
        case 7: passes(av, ah, xs, r0, nr, c0, nc, t, job, 7); break;
        default: passes(av, ah, xs, r0, nr, c0, nc, t, job, 8); break;
    }
}

/* xs[r][c][u·k + v] = coefs[r0 + r][c0 + c][8u + v] · quant[8u + v] */
static inline __attribute__((always_inline)) void dequantize_k(const PlaneJob *job, int r0, int nr, int c0, int nc,
                                                                float *xs, const int K) {
    float q[BLOCK * BLOCK];
    for (int u = 0; u < K; u++)
        for (int v = 0; v < K; v++) q[u * K + v] = job->quant[u * BLOCK + v];
    for (int r = 0; r < nr; r++) {
        const int16_t *row = job->coefs + (r0 + r) * job->row_stride + c0 * job->col_stride;
        float *dst = xs + (size_t)r * nc * K * K;
        for (int c = 0; c < nc; c++, dst += K * K) {
            const int16_t *blk = row + c * job->col_stride;
            for (int u = 0; u < K; u++)
                for (int v = 0; v < K; v++) dst[u * K + v] = (float)blk[u * BLOCK + v] * q[u * K + v];
        }
    }
}

HOT_CLONES
static void dequantize(const PlaneJob *job, int r0, int nr, int c0, int nc, int k, float *xs) {
    switch (k) {
        case 1: dequantize_k(job, r0, nr, c0, nc, xs, 1); break;
        case 2: dequantize_k(job, r0, nr, c0, nc, xs, 2); break;
        case 3: dequantize_k(job, r0, nr, c0, nc, xs, 3); break;
        case 4: dequantize_k(job, r0, nr, c0, nc, xs, 4); break;
        case 5: dequantize_k(job, r0, nr, c0, nc, xs, 5); break;
        case 6: dequantize_k(job, r0, nr, c0, nc, xs, 6); break;
        case 7: dequantize_k(job, r0, nr, c0, nc, xs, 7); break;
        default: dequantize_k(job, r0, nr, c0, nc, xs, 8); break;
    }
}

/* Per-thread state: scratch memory for the operators and for the data, and the geometry the operators in
 * `ops` were built for (Cb and Cr of an image usually share it: they are built once). */
typedef struct {
    Scratch ops, data;
    Axis av, ah;
    int have_ops;
    double key_x, key_y, key_w, key_h;
    int key_width, key_height, key_flip, key_rows, key_cols, key_k;
} ThreadState;

static int same_geometry(const ThreadState *ts, const PlaneJob *job, int k) {
    return ts->have_ops && ts->key_x == job->x && ts->key_y == job->y && ts->key_w == job->w &&
           ts->key_h == job->h && ts->key_width == job->width && ts->key_height == job->height &&
           ts->key_flip == job->flip && ts->key_rows == job->out_rows && ts->key_cols == job->out_cols &&
           ts->key_k == k;
}

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

/* Build (or reuse) the operators of a job in ts->av / ts->ah. Returns 0, -1 when out of memory. */
static int prepare_operators(const PlaneJob *job, int k, int filter, ThreadState *ts) {
    if (same_geometry(ts, job, k)) return 0;  /* one call, one filter: the filter is not part of the key */
    const int ov = job->out_rows, oh = job->out_cols;
    const int bv = band_bound(job->h, ov, filter), bh = band_bound(job->w, oh, filter);
    const int n_max = (ov > oh ? ov : oh) * BLOCK;
    const int band_max = bv > bh ? bv : bh;
    size_t sz_vi = ALIGN64(sizeof(int) * ov), sz_hi = ALIGN64(sizeof(int) * oh);
    size_t sz_vw = ALIGN64(sizeof(float) * (size_t)ov * bv * k * BLOCK);
    size_t sz_hw = ALIGN64(sizeof(float) * (size_t)oh * bh * k * BLOCK);
    size_t sz_n = ALIGN64(sizeof(double) * n_max);
    size_t sz_wt = ALIGN64(sizeof(v8f) * band_max * BLOCK);
    size_t total = 2 * sz_vi + 2 * sz_hi + sz_vw + sz_hw + 3 * sz_n + sz_wt;
    ts->have_ops = 0;
    char *p = scratch_get(&ts->ops, total);
    if (!p) return -1;
    ts->av.first = (int *)p; p += sz_vi;
    ts->av.band = (int *)p; p += sz_vi;
    ts->ah.first = (int *)p; p += sz_hi;
    ts->ah.band = (int *)p; p += sz_hi;
    ts->av.w = (float *)p; p += sz_vw;
    ts->ah.w = (float *)p; p += sz_hw;
    double *centre = (double *)p; p += sz_n;
    long *lo = (long *)p; p += sz_n;
    long *hi = (long *)p; p += sz_n;
    v8f *wt = (v8f *)p;
    build_axis(&ts->av, job->y, job->h, ov, job->height, 0, k, filter, centre, lo, hi, wt);
    build_axis(&ts->ah, job->x, job->w, oh, job->width, job->flip, k, filter, centre, lo, hi, wt);
    if (ts->av.max_band > bv || ts->ah.max_band > bh) return -2;  /* cannot happen: band_bound bounds it */
    ts->have_ops = 1;
    ts->key_x = job->x;
    ts->key_y = job->y;
    ts->key_w = job->w;
    ts->key_h = job->h;
    ts->key_width = job->width;
    ts->key_height = job->height;
    ts->key_flip = job->flip;
    ts->key_rows = ov;
    ts->key_cols = oh;
    ts->key_k = k;
    return 0;
}

/* Run one plane job. Returns 0, or -1 when out of memory. */
static int run_job(const PlaneJob *job, double margin, int filter, ThreadState *ts) {
    const int ov = job->out_rows, oh = job->out_cols;
    double ratio_v = ov * BLOCK / job->h, ratio_h = oh * BLOCK / job->w;
    const int k = frequencies_kept(ratio_v > ratio_h ? ratio_v : ratio_h, margin);
    int rc = prepare_operators(job, k, filter, ts);
    if (rc) return rc;
    const Axis *av = &ts->av, *ah = &ts->ah;
    /* the stored blocks under the window */
    int r0 = av->lo < 0 ? 0 : av->lo, r1 = av->hi > job->rows ? job->rows : av->hi;
    int c0 = ah->lo < 0 ? 0 : ah->lo, c1 = ah->hi > job->cols ? job->cols : ah->hi;
    int nr = r1 - r0, nc = c1 - c0;
    if (nr < 1 || nc < 1) {  /* nothing stored under the window (degenerate file): bias only */
        for (int r = 0; r < ov; r++)
            for (int c = 0; c < oh; c++) {
                float *dst = job->out + r * job->out_row_stride + c * job->out_col_stride;
                for (int i = 0; i < 64; i++) dst[i] = job->bias[i];
            }
        return 0;
    }
    size_t sz_xs = ALIGN64(sizeof(float) * (size_t)nr * nc * k * k);
    size_t sz_t = ALIGN64(sizeof(float) * (size_t)ov * nc * k * BLOCK);
    char *p = scratch_get(&ts->data, sz_xs + sz_t);
    if (!p) return -1;
    float *xs = (float *)p, *t = (float *)(p + sz_xs);
    dequantize(job, r0, nr, c0, nc, k, xs);
    run_passes(av, ah, xs, r0, nr, c0, nc, t, job, k);
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Threads: the jobs of one image form a unit (its planes run on one thread, Cb and Cr sharing operators). */

typedef struct {
    const PlaneJob *jobs;
    const Py_ssize_t *unit_start;  /* n_units + 1 job offsets */
    Py_ssize_t n_units;
    double margin;
    int filter;                    /* FILTER_TRIANGLE or FILTER_CUBIC */
    Py_ssize_t next;               /* atomic */
    int failed;                    /* atomic: first error code */
} Work;

static void *worker(void *arg) {
    Work *work = arg;
    ThreadState ts;
    memset(&ts, 0, sizeof ts);
    for (;;) {
        Py_ssize_t u = __atomic_fetch_add(&work->next, 1, __ATOMIC_RELAXED);
        if (u >= work->n_units) break;
        int rc = 0;
        for (Py_ssize_t i = work->unit_start[u]; i < work->unit_start[u + 1] && rc == 0; i++)
            rc = run_job(&work->jobs[i], work->margin, work->filter, &ts);
        if (rc != 0) {
            int zero = 0;
            __atomic_compare_exchange_n(&work->failed, &zero, rc, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
            break;
        }
    }
    free(ts.ops.ptr);
    free(ts.data.ptr);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* Python entry point.                                                                                */

static PyArrayObject *output_array(PyObject *obj, const char *name, int channels) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy array", name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32 || PyArray_NDIM(a) != 4 || PyArray_DIM(a, 3) != channels ||
        !PyArray_IS_C_CONTIGUOUS(a) || !PyArray_ISWRITEABLE(a) || !PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be a writeable C-contiguous float32 array (N, h, w, %d)", name,
                     channels);
        return NULL;
    }
    return a;
}

static const float *float_vector(PyObject *obj, const char *name, npy_intp n) {
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_FLOAT32 ||
        PyArray_SIZE((PyArrayObject *)obj) != n || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj)) {
        PyErr_Format(PyExc_ValueError, "%s must be a contiguous float32 array of %zd values", name, (Py_ssize_t)n);
        return NULL;
    }
    return (const float *)PyArray_DATA((PyArrayObject *)obj);
}

/* Fill job from one plane tuple (coefs, quant, image, component, fx, fy, width, height). */
static int parse_plane(PyObject *item, Py_ssize_t index, PlaneJob *job, Py_ssize_t *image_of, const double *windows,
                       const uint8_t *flips,
                       Py_ssize_t n_images, PyArrayObject *y, PyArrayObject *cbcr, const float *scale,
                       const float *bias) {
    PyObject *coefs_obj, *quant_obj;
    Py_ssize_t image;
    int comp, width, height;
    double fx, fy;
    if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "OOnid" "dii", &coefs_obj, &quant_obj, &image, &comp, &fx,
                                                  &fy, &width, &height)) {
        if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "plane %zd must be a tuple (coefs, quant, image, component, fx, fy, "
                         "width, height)", index);
        }
        return -1;
    }
    if (!PyArray_Check(coefs_obj)) {
        PyErr_Format(PyExc_TypeError, "plane %zd: coefs must be a numpy array", index);
        return -1;
    }
    PyArrayObject *coefs = (PyArrayObject *)coefs_obj;
    if (PyArray_TYPE(coefs) != NPY_INT16 || PyArray_NDIM(coefs) != 3 || PyArray_DIM(coefs, 2) != 64 ||
        PyArray_STRIDE(coefs, 2) != 2 || !PyArray_ISALIGNED(coefs) || PyArray_STRIDE(coefs, 0) % 2 ||
        PyArray_STRIDE(coefs, 1) % 2) {
        PyErr_Format(PyExc_ValueError, "plane %zd: coefs must be int16 (blocks_h, blocks_w, 64) with contiguous "
                     "blocks", index);
        return -1;
    }
    if (PyArray_DIM(coefs, 0) > MAX_PIXELS_SIDE / BLOCK || PyArray_DIM(coefs, 1) > MAX_PIXELS_SIDE / BLOCK) {
        PyErr_Format(PyExc_ValueError, "plane %zd: coefs of %zd x %zd blocks is above the %d-block limit", index,
                     (Py_ssize_t)PyArray_DIM(coefs, 0), (Py_ssize_t)PyArray_DIM(coefs, 1),
                     MAX_PIXELS_SIDE / BLOCK);
        return -1;
    }
    if (image < 0 || image >= n_images || comp < 0 || comp > 2) {
        PyErr_Format(PyExc_ValueError, "plane %zd: image %zd / component %d out of range", index, image, comp);
        return -1;
    }
    if (!(fx > 0) || !(fy > 0) || !(fx <= MAX_PLANE_SCALE) || !(fy <= MAX_PLANE_SCALE) || width < 1 ||
        height < 1 || width > MAX_PIXELS_SIDE || height > MAX_PIXELS_SIDE) {
        char msg[200]; /* PyErr_Format has no %g */
        snprintf(msg, sizeof msg, "plane %zd: bad geometry fx=%g fy=%g size %dx%d", index, fx, fy, width, height);
        PyErr_SetString(PyExc_ValueError, msg);
        return -1;
    }
    PyArrayObject *quant = (PyArrayObject *)PyArray_FROM_OTF(quant_obj, NPY_FLOAT32, NPY_ARRAY_IN_ARRAY);
    if (!quant) return -1;
    if (PyArray_SIZE(quant) != 64) {
        Py_DECREF(quant);
        PyErr_Format(PyExc_ValueError, "plane %zd: quant must hold 64 values", index);
        return -1;
    }
    memcpy(job->quant, PyArray_DATA(quant), sizeof(float) * 64);
    Py_DECREF(quant);
    job->coefs = (const int16_t *)PyArray_DATA(coefs);
    job->row_stride = PyArray_STRIDE(coefs, 0) / 2;
    job->col_stride = PyArray_STRIDE(coefs, 1) / 2;
    job->rows = (int)PyArray_DIM(coefs, 0);
    job->cols = (int)PyArray_DIM(coefs, 1);
    const double *win = windows + 4 * image;
    /* the same products as the numpy path: window (luma pixels) × the plane's scale */
    job->x = win[0] * fx;
    job->y = win[1] * fy;
    job->w = win[2] * fx;
    job->h = win[3] * fy;
    if (!(job->w > 0) || !(job->h > 0)) {
        PyErr_Format(PyExc_ValueError, "image %zd: empty window", image);
        return -1;
    }
    /* NaN / inf windows would reach floor() -> long conversions in build_axis (undefined behaviour), and the
     * operators' size and build time grow with the window's extent (a band of blocks per output block): a
     * window lies on its plane, give or take one plane size (the data pipeline's windows lie inside the
     * image), so the work stays proportional to the plane whatever the caller passes. */
    const double slack_x = (double)width + BLOCK, slack_y = (double)height + BLOCK;
    if (!(job->x >= -slack_x) || !(job->y >= -slack_y) || !(job->w <= 2 * slack_x) || !(job->h <= 2 * slack_y) ||
        !(job->x + job->w <= 2 * slack_x) || !(job->y + job->h <= 2 * slack_y)) {
        char msg[240];
        snprintf(msg, sizeof msg, "image %zd: window (%g, %g, %g, %g) is not finite or lies off the %dx%d plane "
                 "%zd", image, win[0], win[1], win[2], win[3], width, height, index);
        PyErr_SetString(PyExc_ValueError, msg);
        return -1;
    }
    job->width = width;
    job->height = height;
    job->flip = flips[image] != 0;
    PyArrayObject *out = comp == 0 ? y : cbcr;
    job->out_rows = (int)PyArray_DIM(out, 1);
    job->out_cols = (int)PyArray_DIM(out, 2);
    npy_intp c = PyArray_DIM(out, 3);
    job->out_col_stride = c;
    job->out_row_stride = c * PyArray_DIM(out, 2);
    job->out = (float *)PyArray_DATA(out) + image * PyArray_DIM(out, 1) * job->out_row_stride +
               (comp == 2 ? 64 : 0);
    *image_of = image;
    job->scale = scale + 64 * comp;
    job->bias = bias + 64 * comp;
    return 0;
}

static PyObject *py_resample_planes(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"planes", "windows", "flips", "y", "cbcr", "scale", "bias", "k_margin", "threads",
                             "interpolation", NULL};
    PyObject *planes, *windows_obj, *flips_obj, *y_obj, *cbcr_obj, *scale_obj, *bias_obj;
    double margin;
    int threads = 1;
    const char *interpolation = "bilinear";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOd|is", kwlist, &planes, &windows_obj, &flips_obj, &y_obj,
                                     &cbcr_obj, &scale_obj, &bias_obj, &margin, &threads, &interpolation))
        return NULL;
    int filter;
    if (strcmp(interpolation, "bilinear") == 0) {
        filter = FILTER_TRIANGLE;
    } else if (strcmp(interpolation, "bicubic") == 0) {
        filter = FILTER_CUBIC;
    } else {
        PyErr_Format(PyExc_ValueError, "interpolation must be 'bilinear' or 'bicubic', got '%.40s'", interpolation);
        return NULL;
    }
    if (!PyList_Check(planes)) {
        PyErr_SetString(PyExc_TypeError, "planes must be a list of tuples");
        return NULL;
    }
    if (threads < 1) {
        PyErr_Format(PyExc_ValueError, "threads must be >= 1, got %d", threads);
        return NULL;
    }
    if (isnan(margin)) {
        PyErr_SetString(PyExc_ValueError, "k_margin must be a number (negative: keep every frequency), got nan");
        return NULL;
    }
    PyArrayObject *y = output_array(y_obj, "y", 64);
    if (!y) return NULL;
    PyArrayObject *cbcr = output_array(cbcr_obj, "cbcr", 128);
    if (!cbcr) return NULL;
    const Py_ssize_t n_images = PyArray_DIM(y, 0);
    if (PyArray_DIM(cbcr, 0) != n_images || PyArray_DIM(y, 1) != 2 * PyArray_DIM(cbcr, 1) ||
        PyArray_DIM(y, 2) != 2 * PyArray_DIM(cbcr, 2) || PyArray_DIM(cbcr, 1) < 1 || PyArray_DIM(cbcr, 2) < 1) {
        PyErr_SetString(PyExc_ValueError, "cbcr must be (N, h/2, w/2, 128) for y (N, h, w, 64)");
        return NULL;
    }
    if (PyArray_DIM(y, 1) > MAX_OUT_BLOCKS || PyArray_DIM(y, 2) > MAX_OUT_BLOCKS) {
        PyErr_Format(PyExc_ValueError, "y of %zd x %zd blocks is above the %d-block limit",
                     (Py_ssize_t)PyArray_DIM(y, 1), (Py_ssize_t)PyArray_DIM(y, 2), MAX_OUT_BLOCKS);
        return NULL;
    }
    const float *scale = float_vector(scale_obj, "scale", 192);
    if (!scale) return NULL;
    const float *bias = float_vector(bias_obj, "bias", 192);
    if (!bias) return NULL;
    PyArrayObject *windows = (PyArrayObject *)PyArray_FROM_OTF(windows_obj, NPY_FLOAT64, NPY_ARRAY_IN_ARRAY);
    if (!windows) return NULL;
    PyArrayObject *flips = (PyArrayObject *)PyArray_FROM_OTF(flips_obj, NPY_UINT8, NPY_ARRAY_IN_ARRAY |
                                                                                   NPY_ARRAY_FORCECAST);
    if (!flips) {
        Py_DECREF(windows);
        return NULL;
    }
    PyObject *result = NULL;
    PlaneJob *jobs = NULL;
    Py_ssize_t *units = NULL, *job_image = NULL;
    if (PyArray_SIZE(windows) != 4 * n_images || PyArray_SIZE(flips) != n_images) {
        PyErr_SetString(PyExc_ValueError, "windows must be (N, 4) and flips (N,) for the N images of y");
        goto done;
    }
    const Py_ssize_t n_jobs = PyList_GET_SIZE(planes);
    jobs = calloc(n_jobs > 0 ? n_jobs : 1, sizeof(PlaneJob));
    job_image = calloc(n_jobs > 0 ? n_jobs : 1, sizeof(Py_ssize_t));
    if (!jobs || !job_image) {
        PyErr_NoMemory();
        goto done;
    }
    const double *win = PyArray_DATA(windows);
    const uint8_t *fl = PyArray_DATA(flips);
    for (Py_ssize_t i = 0; i < n_jobs; i++)
        if (parse_plane(PyList_GET_ITEM(planes, i), i, &jobs[i], &job_image[i], win, fl, n_images, y, cbcr,
                        scale, bias) < 0)
            goto done;
    /* units: runs of consecutive jobs of the same image */
    units = malloc(sizeof(Py_ssize_t) * (n_jobs + 1));
    if (!units) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t n_units = 0;
    for (Py_ssize_t i = 0; i < n_jobs; i++)
        if (i == 0 || job_image[i] != job_image[i - 1]) units[n_units++] = i;
    units[n_units] = n_jobs;
    Work work = {jobs, units, n_units, margin, filter, 0, 0};
    if (threads > n_units) threads = (int)(n_units > 0 ? n_units : 1);
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    Py_BEGIN_ALLOW_THREADS
    pthread_t tid[MAX_THREADS];
    int started = 0;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tid[started], NULL, worker, &work) != 0) break;
        started++;
    }
    worker(&work);  /* the calling thread works too */
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    Py_END_ALLOW_THREADS
    if (work.failed == -1) {
        PyErr_NoMemory();
        goto done;
    }
    if (work.failed) {
        PyErr_Format(PyExc_RuntimeError, "resample kernel: internal error %d", work.failed);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    free(jobs);
    free(job_image);
    free(units);
    Py_DECREF(windows);
    Py_DECREF(flips);
    return result;
}

static PyMethodDef methods[] = {
    {"resample_planes", (PyCFunction)(void (*)(void))py_resample_planes, METH_VARARGS | METH_KEYWORDS,
     "resample_planes(planes, windows, flips, y, cbcr, scale, bias, k_margin, threads=1, interpolation='bilinear')\n\n"
     "Crop, resize (antialiased 'bilinear': triangle, or 'bicubic': Keys a = -0.5), mirror, dequantize and\n"
     "normalize coefficient planes straight into the batch arrays y (N, h, w, 64) and cbcr (N, h/2, w/2, 128),\n"
     "float32 C-contiguous.\n"
     "planes: list of (coefs int16 (bh, bw, 64), quant (64,), image, component 0/1/2, fx, fy, width, height);\n"
     "windows: (N, 4) x, y, w, h in luma pixels; flips: (N,) bool; scale, bias: float32 (192,) applied as\n"
     "raw * scale + bias; k_margin: keep ceil(8 * ratio * k_margin) input frequencies per axis on a\n"
     "downscale by ratio (< 0: all 8). Runs on `threads` threads without the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_resample",
    "Fused CPU kernel of the DCT data pipeline: banded DCT-domain resampling into the normalized batch.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__resample(void) {
    import_array();
    init_dct();
    return PyModule_Create(&module);
}
