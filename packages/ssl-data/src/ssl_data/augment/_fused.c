/*
 * ssl_data fused CPU view pipeline: crop+flip -> colour jitter -> grayscale -> blur -> solarize
 * -> normalize, one image at a time while it sits in the core's cache.
 *
 * Why hand-written C: on CPU the eager torch pipeline makes ~40 passes over the whole batch
 * (memory bound), and torch.compile's CPU code for this graph measured slower than eager.
 * benchmarks/augment.py compares this kernel with torchvision v2 per sample and with the eager
 * batched pipeline in the same run. The random parameters are drawn in Python (the same
 * generator stream as the eager transforms); this file only applies them, with the same float32
 * formulas as ssl_data.augment's eager ops (tests compare both).
 *
 * Compiled when ssl-data is installed (packages/ssl-data/hatch_build.py, one library per
 * instruction-set level), or on first use by ssl_data.augment.fused with fused=True where the
 * install had no compiler (cc -O3 -shared); no Python or torch headers.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LUMA_R 0.2989f
#define LUMA_G 0.587f
#define LUMA_B 0.114f

static inline float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

/* Sum of n floats in 16 float lanes (vectorizes without -ffast-math), combined in double. */
static double sum_floats(const float *x, size_t n) {
    float lane[16] = {0};
    size_t p = 0;
    for (; p + 16 <= n; p += 16)
        for (int l = 0; l < 16; l++) lane[l] += x[p + l];
    double acc = 0.0;
    for (int l = 0; l < 16; l++) acc += lane[l];
    for (; p < n; p++) acc += x[p];
    return acc;
}

static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float minf(float a, float b) { return a < b ? a : b; }

static inline int reflect_index(int i, int n) {
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
}

/* Bilinear resample (separable): rows y0/y1 with weight wy of y1, columns x0/x1 with wx. */
static void crop_image(const uint8_t *src_u8, const float *src_f, int C, int H, int W, int OH,
                       int OW, const int32_t *y0, const int32_t *y1, const float *wy,
                       const int32_t *restrict x0, const int32_t *restrict x1,
                       const float *restrict wx, float *out, float *rows, float *srcrow) {
    int first = y0[0], last = y1[0];
    for (int i = 0; i < OH; i++) {
        if (y0[i] < first) first = y0[i];
        if (y1[i] > last) last = y1[i];
    }
    /* horizontal interpolation of every source row the crop touches, all channels at once
     * (the column taps are loaded once per output column) */
    for (int y = first; y <= last; y++) {
        for (int c = 0; c < C; c++) {
            float *restrict row = srcrow + (size_t)c * W;
            size_t base = ((size_t)c * H + y) * W;
            if (src_u8) { /* the row in [0, 1] floats, as the eager to_float */
                const uint8_t *restrict s8 = src_u8 + base;
                for (int j = 0; j < W; j++) row[j] = (float)s8[j] / 255.0f;
            } else {
                memcpy(row, src_f + base, sizeof(float) * W);
            }
        }
        if (C == 3) {
            const float *s0 = srcrow, *s1 = srcrow + W, *s2 = srcrow + 2 * W;
            float *r0 = rows + ((size_t)0 * H + y) * OW, *r1 = rows + ((size_t)1 * H + y) * OW;
            float *r2 = rows + ((size_t)2 * H + y) * OW;
            for (int j = 0; j < OW; j++) {
                int i0 = x0[j], i1 = x1[j];
                float w = wx[j];
                r0[j] = s0[i0] + w * (s0[i1] - s0[i0]);
                r1[j] = s1[i0] + w * (s1[i1] - s1[i0]);
                r2[j] = s2[i0] + w * (s2[i1] - s2[i0]);
            }
        } else {
            for (int c = 0; c < C; c++) {
                const float *sc = srcrow + (size_t)c * W;
                float *rc = rows + ((size_t)c * H + y) * OW;
                for (int j = 0; j < OW; j++) {
                    float a = sc[x0[j]], b = sc[x1[j]];
                    rc[j] = a + wx[j] * (b - a);
                }
            }
        }
    }
    for (int c = 0; c < C; c++) {
        float *o = out + (size_t)c * OH * OW;
        for (int i = 0; i < OH; i++) {
            const float *a = rows + ((size_t)c * H + y0[i]) * OW;
            const float *b = rows + ((size_t)c * H + y1[i]) * OW;
            float w = wy[i];
            float *oi = o + (size_t)i * OW;
            for (int j = 0; j < OW; j++) oi[j] = a[j] + w * (b[j] - a[j]);
        }
    }
}

static void brightness(float *x, size_t n, float f) {
    for (size_t p = 0; p < n; p++) x[p] = clamp01(x[p] * f);
}

static void contrast(float *x, int C, size_t P, float f) {
    float mean;
    if (C == 3) {
        double s[3] = {0.0, 0.0, 0.0};
        for (int c = 0; c < 3; c++) {
            s[c] = sum_floats(x + c * P, P) / (double)P;
        }
        mean = (float)s[0] * LUMA_R + (float)s[1] * LUMA_G + (float)s[2] * LUMA_B;
    } else { /* as the eager op: one mean per channel when C != 3 */
        for (int c = 0; c < C; c++) {
            float *xc = x + c * P;
            float add = (1.0f - f) * (float)(sum_floats(xc, P) / (double)P);
            for (size_t p = 0; p < P; p++) xc[p] = clamp01(xc[p] * f + add);
        }
        return;
    }
    float add = (1.0f - f) * mean;
    for (size_t p = 0; p < 3 * P; p++) x[p] = clamp01(x[p] * f + add);
}

static void saturation(float *x, size_t P, float f) {
    float *r = x, *g = x + P, *b = x + 2 * P;
    float w = 1.0f - f;
    for (size_t p = 0; p < P; p++) {
        float gray = r[p] * LUMA_R + g[p] * LUMA_G + b[p] * LUMA_B;
        r[p] = clamp01(r[p] + w * (gray - r[p]));
        g[p] = clamp01(g[p] + w * (gray - g[p]));
        b[p] = clamp01(b[p] + w * (gray - b[p]));
    }
}

/* k mod 6 for k in [0, 24) (hue: k lies in [2, 20)): exact (Sterbenz), unlike floor(k / 6). */
static inline float mod6(float k) {
    return k >= 18.f ? k - 18.f : (k >= 12.f ? k - 12.f : (k >= 6.f ? k - 6.f : k));
}

static inline float hue_channel(float h, float offset, float maxc, float delta) {
    float k = mod6(h + offset);
    float w = clamp01(2.0f - fabsf(k - 2.0f));
    return clamp01(maxc - w * delta);
}

static void hue(float *x, size_t P, float f) {
    float *r = x, *g = x + P, *b = x + 2 * P;
    float shift = 6.0f * f + 6.0f;
    for (size_t p = 0; p < P; p++) {
        float rv = r[p], gv = g[p], bv = b[p];
        float maxc = maxf(maxf(rv, gv), bv), minc = minf(minf(rv, gv), bv);
        float delta = maxc - minc;
        float inv = 1.0f / maxf(delta, 1e-12f);
        /* branch-free selection (vectorizes): R if max == r, else G if max == g, else B */
        float hr = (gv - bv) * inv, hg = (bv - rv) * inv + 2.0f, hb = (rv - gv) * inv + 4.0f;
        float h = rv == maxc ? hr : (gv == maxc ? hg : hb);
        h += shift;
        r[p] = hue_channel(h, 5.0f, maxc, delta);
        g[p] = hue_channel(h, 3.0f, maxc, delta);
        b[p] = hue_channel(h, 1.0f, maxc, delta);
    }
}

static void grayscale3(float *x, size_t P) {
    float *r = x, *g = x + P, *b = x + 2 * P;
    for (size_t p = 0; p < P; p++) {
        float v = r[p] * LUMA_R + g[p] * LUMA_G + b[p] * LUMA_B;
        r[p] = v;
        g[p] = v;
        b[p] = v;
    }
}

/* 16 floats as one GCC/Clang vector (split into smaller registers where the CPU has them). */
typedef float vf16 __attribute__((vector_size(64)));

static inline vf16 load16(const float *p) {
    vf16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store16(float *p, vf16 v) { memcpy(p, &v, sizeof v); }

/* Blur one row: out[j] = sum_q k[q] * pad[j + q], 16 columns at a time in registers. */
static inline void blur_row(const float *restrict pad, const float *restrict k, int K, int W,
                            float *restrict out) {
    int j = 0;
    for (; j + 16 <= W; j += 16) {
        vf16 acc = load16(pad + j) * k[0];
        for (int q = 1; q < K; q++) acc += load16(pad + j + q) * k[q];
        store16(out + j, acc);
    }
    for (; j < W; j++) {
        float acc = pad[j] * k[0];
        for (int q = 1; q < K; q++) acc += pad[j + q] * k[q];
        out[j] = acc;
    }
}

/* Separable blur with reflect padding: rows first, then columns (as the eager op). */
static void blur(float *x, int C, int H, int W, const float *k, int K, float *tmp, float *pad) {
    int half = K / 2;
    for (int c = 0; c < C; c++) {
        float *xc = x + (size_t)c * H * W, *tc = tmp + (size_t)c * H * W;
        for (int i = 0; i < H; i++) {
            const float *row = xc + (size_t)i * W;
            for (int j = 0; j < half; j++) pad[j] = row[half - j];
            memcpy(pad + half, row, sizeof(float) * W);
            for (int j = 0; j < half; j++) pad[half + W + j] = row[W - 2 - j];
            blur_row(pad, k, K, W, tc + (size_t)i * W);
        }
        for (int i = 0; i < H; i++) {
            float *o = xc + (size_t)i * W;
            const float *t0 = tc + (size_t)reflect_index(i - half, H) * W;
            int j = 0;
            for (; j + 16 <= W; j += 16) {
                vf16 acc = load16(t0 + j) * k[0];
                for (int q = 1; q < K; q++)
                    acc += load16(tc + (size_t)reflect_index(i + q - half, H) * W + j) * k[q];
                store16(o + j, acc);
            }
            for (; j < W; j++) {
                float acc = t0[j] * k[0];
                for (int q = 1; q < K; q++)
                    acc += tc[(size_t)reflect_index(i + q - half, H) * W + j] * k[q];
                o[j] = acc;
            }
        }
    }
}

/*
 * Process images until none is left: every caller (one per thread) takes the next image index
 * from the shared *next_image counter, so a thread that starts late simply does fewer images.
 * Per image b (B images in all, C channels):
 *   crop: y0/y1/wy [B*OH], x0/x1/wx [B*OW] (indices into the H x W source image b)
 *   jitter: jit_apply [B] (0/1), jit_factor [B*4] (brightness, contrast, saturation, hue),
 *           jit_order [B*4] (op per step), jit_enabled bit mask of ops (bit op)
 *   gray_apply [B] or NULL; blur_apply [B] or NULL with blur_kernel [B*K];
 *   sol_apply [B] or NULL with sol_threshold; norm_mean/norm_inv_std [C] or NULL.
 * Returns 0, or -1 when scratch memory cannot be allocated.
 */
int ssl_fused_views(const uint8_t *src_u8, const float *src_f, int B, int C, int H, int W,
                    int OH, int OW, const int32_t *y0, const int32_t *y1, const float *wy,
                    const int32_t *x0, const int32_t *x1, const float *wx,
                    const uint8_t *jit_apply, const float *jit_factor, const int64_t *jit_order,
                    int jit_enabled, const uint8_t *gray_apply, const uint8_t *blur_apply,
                    const float *blur_kernel, int K, const uint8_t *sol_apply,
                    float sol_threshold, const float *norm_mean, const float *norm_inv_std,
                    float *out, int32_t *next_image) {
    size_t P = (size_t)OH * OW;
    size_t rows_n = (size_t)C * H * OW, wide = (size_t)C * (W > OW ? W : OW) + 2 * K + 16;
    float *scratch = (float *)malloc(sizeof(float) * (rows_n + (size_t)C * P + wide));
    if (!scratch) return -1;
    float *rows = scratch, *tmp = scratch + rows_n, *pad = tmp + (size_t)C * P;
    size_t src_stride = (size_t)C * H * W;
    for (;;) {
        int b = __atomic_fetch_add(next_image, 1, __ATOMIC_RELAXED);
        if (b >= B) break;
        float *x = out + (size_t)b * C * P;
        crop_image(src_u8 ? src_u8 + b * src_stride : NULL, src_f ? src_f + b * src_stride : NULL,
                   C, H, W, OH, OW, y0 + (size_t)b * OH, y1 + (size_t)b * OH, wy + (size_t)b * OH,
                   x0 + (size_t)b * OW, x1 + (size_t)b * OW, wx + (size_t)b * OW, x, rows, pad);
        if (jit_apply && jit_apply[b]) {
            for (int s = 0; s < 4; s++) {
                int op = (int)jit_order[(size_t)b * 4 + s];
                if (!(jit_enabled & (1 << op))) continue;
                float f = jit_factor[(size_t)b * 4 + op];
                if (op == 0) brightness(x, C * P, f);
                else if (op == 1) contrast(x, C, P, f);
                else if (op == 2 && C == 3) saturation(x, P, f);
                else if (op == 3 && C == 3) hue(x, P, f);
            }
        }
        if (gray_apply && gray_apply[b] && C == 3) grayscale3(x, P);
        if (blur_apply && blur_apply[b]) blur(x, C, OH, OW, blur_kernel + (size_t)b * K, K, tmp, pad);
        if (sol_apply && sol_apply[b]) {
            for (size_t p = 0; p < C * P; p++) x[p] = x[p] >= sol_threshold ? 1.0f - x[p] : x[p];
        }
        if (norm_mean) {
            for (int c = 0; c < C; c++) {
                float m = norm_mean[c], s = norm_inv_std[c];
                float *xc = x + (size_t)c * P;
                for (size_t p = 0; p < P; p++) xc[p] = (xc[p] - m) * s;
            }
        }
    }
    free(scratch);
    return 0;
}

