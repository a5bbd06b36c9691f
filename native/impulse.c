/*
 * impulse.c - streaming fixed-point impulse detector (see impulse.h).
 *
 * Integer only, no division (the one sub-sample ratio per trigger uses a
 * shift-subtract loop), no malloc, no static state.  Right shifts of negative
 * values are arithmetic (gcc and clang on every target we build for).
 */
#include "impulse.h"

#include <string.h> /* memset; struct copies use memcpy: the only libc calls */

#define PHASE_IDLE 0
#define PHASE_PICK 1
#define PHASE_MEASURE 2

#define Y_MAX 32767
#define LOG2_Q 10 /* log2 results in Q10 */
#define NEVER (-1)

/* COLD: keep the rare per-trigger work out of the idle loop's registers;
   INLINE: small helpers used inside the per-sample loops. */
#if defined(__GNUC__)
#define COLD __attribute__((noinline, cold))
#define INLINE inline __attribute__((always_inline))
#else
#define COLD
#define INLINE inline
#endif

/* log2(1 + i/16) in Q16, i = 0..16, for linear interpolation (const: flash). */
static const uint32_t LOG2_TABLE_Q16[17] = {
    0, 5732, 11136, 16248, 21098, 25711, 30109, 34312, 38336,
    42196, 45904, 49472, 52911, 56229, 59434, 62534, 65536,
};

static INLINE int32_t sat_y(int32_t v)
{
    if (v > Y_MAX) {
        return Y_MAX;
    }
    if (v < -Y_MAX) {
        return -Y_MAX;
    }
    return v;
}

/* log2(v) in Q10, v >= 1 (0 for v = 0); 32-bit only, no variable shifts. */
static INLINE int32_t log2_q10(uint32_t v)
{
    int32_t e = 31;
    uint32_t u = v, i, f, t;
    if (v == 0) {
        return 0;
    }
    /* normalise: leading one to bit 31, e = its position in v */
    if (!(u >> 16)) { u <<= 16; e -= 16; }
    if (!(u >> 24)) { u <<= 8; e -= 8; }
    if (!(u >> 28)) { u <<= 4; e -= 4; }
    if (!(u >> 30)) { u <<= 2; e -= 2; }
    if (!(u >> 31)) { u <<= 1; e -= 1; }
    /* the 20 mantissa bits below the leading one: 4 index, 16 fraction */
    i = (u >> 27) & 15u;
    f = (u >> 11) & 0xFFFFu;
    t = LOG2_TABLE_Q16[i] + (((LOG2_TABLE_Q16[i + 1] - LOG2_TABLE_Q16[i]) * f) >> 16);
    return e * (1 << LOG2_Q) + (int32_t)(t >> (16 - LOG2_Q));
}

/* floor(num / den) by shift and subtract; den > 0 and den < 2^31. */
static uint32_t udiv32(uint32_t num, uint32_t den)
{
    uint32_t q = 0, r = 0;
    int b;
    for (b = 31; b >= 0; b--) {
        r = (r << 1) | ((num >> b) & 1u);
        if (r >= den) {
            r -= den;
            q |= (uint32_t)1 << b;
        }
    }
    return q;
}

/* Ring sample at offset k from the ring position base (wraps; any int32 k). */
#define RING_AT(st, base, k) ((st)->ring[((base) + (uint32_t)(k)) & IMPULSE_RING_MASK])

/* Measure-window samples whose band filters and peak run in one batch (<= ring). */
#define FLUSH_LOG2 8

/* v * v for |v| <= 65535: exact in uint32 (wrap-around squares to the same value). */
static uint32_t square_u32(int32_t v)
{
    const uint32_t u = (uint32_t)v;
    return u * u;
}

/* Add a square to a band energy kept as 32-bit words (low, carries into the high word). */
#define ACCUMULATE(lo, sq, carries)           \
    do {                                      \
        const uint32_t sq_ = (sq);            \
        (lo) += sq_;                          \
        if ((lo) < sq_) {                     \
            (carries)++;                      \
        }                                     \
    } while (0)

/*
 * Band crossover low-passes (Q4 states, coefficients used as Q10 so every
 * product fits 32 bits) over len contiguous ring samples from p; with
 * accumulate, add the band energies (sums of squares of the band signals in
 * LSB^2).  One-pole low-passes of |y| <= 32767 stay within +-32767 (Q0), so
 * the band signals stay within +-65534 and each square fits 32 bits.
 */
static void band_seg(impulse_state_t *st, const int16_t *p, int32_t len, int accumulate)
{
    const int32_t k0 = st->cfg.band_lp1_q14 >> 4, k1 = st->cfg.band_lp2_q14 >> 4,
                  k2 = st->cfg.band_lp3_q14 >> 4;
    const int16_t *const end = p + len;
    uint64_t *const energy = st->cur.band_energy;
    int32_t l0 = st->lp[0], l1 = st->lp[1], l2 = st->lp[2];
    uint32_t e0 = (uint32_t)energy[0], e1 = (uint32_t)energy[1], e2 = (uint32_t)energy[2];
    uint32_t c0 = 0, c1 = 0, c2 = 0;
    if (accumulate) {
        for (; p < end; p++) {
            const int32_t v = *p * 16;
            l0 += ((v - l0) * k0) >> 10;
            l1 += ((v - l1) * k1) >> 10;
            l2 += ((v - l2) * k2) >> 10;
            ACCUMULATE(e0, square_u32(l0 >> 4), c0);
            ACCUMULATE(e1, square_u32((l1 - l0) >> 4), c1);
            ACCUMULATE(e2, square_u32((l2 - l1) >> 4), c2);
        }
        energy[0] = ((energy[0] >> 32) + c0) << 32 | e0;
        energy[1] = ((energy[1] >> 32) + c1) << 32 | e1;
        energy[2] = ((energy[2] >> 32) + c2) << 32 | e2;
    } else {
        for (; p < end; p++) {
            const int32_t v = *p * 16;
            l0 += ((v - l0) * k0) >> 10;
            l1 += ((v - l1) * k1) >> 10;
            l2 += ((v - l2) * k2) >> 10;
        }
    }
    st->lp[0] = l0;
    st->lp[1] = l1;
    st->lp[2] = l2;
}

/* band_seg over the ring samples at offsets [0, len) from ring position base. */
static void band_run(impulse_state_t *st, uint32_t base, int32_t len, int accumulate)
{
    const int32_t at = (int32_t)(base & IMPULSE_RING_MASK);
    const int32_t first = len < IMPULSE_RING_N - at ? len : IMPULSE_RING_N - at;
    if (len <= 0) {
        return;
    }
    band_seg(st, st->ring + at, first, accumulate);
    band_seg(st, st->ring, len - first, accumulate);
}

/* Index in [p, end) of the first |y| above *peak (updated), or -1. */
static int32_t peak_seg(const int16_t *p, const int16_t *end, int32_t *peak)
{
    const int16_t *const p0 = p, *at = NULL;
    int32_t best = *peak;
    for (; p < end; p++) {
        const int32_t ay = *p < 0 ? -*p : *p;
        if (ay > best) {
            best = ay;
            at = p;
        }
    }
    *peak = best;
    return at == NULL ? -1 : (int32_t)(at - p0);
}

/* Peak |y| (first maximum) over the ring samples at offsets [0, len) from
   sample index i0, continuing the current trigger's peak. */
static void peak_run(impulse_state_t *st, int64_t i0, int32_t len)
{
    impulse_trigger_t *t = &st->cur;
    const int32_t at = (int32_t)((uint32_t)i0 & IMPULSE_RING_MASK);
    const int32_t first = len < IMPULSE_RING_N - at ? len : IMPULSE_RING_N - at;
    int32_t k;
    if (len <= 0) {
        return;
    }
    k = peak_seg(st->ring + at, st->ring + at + first, &t->peak_abs);
    if (k >= 0) {
        t->peak_sample = i0 + k;
    }
    k = peak_seg(st->ring, st->ring + (len - first), &t->peak_abs);
    if (k >= 0) {
        t->peak_sample = i0 + first + k;
    }
}

/* Band energies and peak of the measure-window samples not yet batched, up to
   sample n: those since the last multiple of 2^FLUSH_LOG2 measured samples. */
static void flush_measure(impulse_state_t *st, int64_t n)
{
    const int32_t done = st->cfg.measure_n - st->cfg.post_n - st->countdown;
    int32_t len;
    if (done <= 0) {
        return;
    }
    len = ((done - 1) & ((1 << FLUSH_LOG2) - 1)) + 1;
    band_run(st, (uint32_t)(n + 1 - len), len, 1);
    peak_run(st, n + 1 - len, len);
}

/*
 * Onset pick over the ring window [s0, e), e = one past the current sample.
 * 1. AIC change point k of y^2: min over k of
 *    nL log2(var[s0, k)) + nR log2(var[k, e)).
 * 2. Around k, the steepest rising step j-1 -> j towards the largest |y|;
 *    the line through it is extended to zero: onset = j-1 - y[j-1] / step,
 *    with a Q16 fraction (at most zc_max_n samples before j-1).
 * Indices below are int32 offsets from s0 (the window is shorter than the ring).
 */
COLD static void pick_onset(impulse_state_t *st, int64_t e)
{
    const impulse_config_t *c = &st->cfg;
    impulse_trigger_t *t = &st->cur;
    int64_t s0 = t->trigger_sample - c->lookback_n;
    uint64_t total = 0;
    uint32_t total32, left = 0, base, q;
    int32_t len, k, kbest, lo, hi, mp, j, jbest, pos, trig;
    int32_t best = INT32_MAX, sgn, dbest, a, y, ay, peak, sh = 0;

    if (s0 < st->idle_since) {
        s0 = st->idle_since;
    }
    if (s0 < 0) {
        s0 = 0;
    }
    base = (uint32_t)s0;
    len = (int32_t)(e - s0);
    trig = (int32_t)(t->trigger_sample - s0); /* -1 after a superseded trigger */
    for (k = 0; k < len; k++) {
        y = RING_AT(st, base, k);
        total += (uint32_t)(y * y);
    }
    /* scale the energies so every partial sum fits 32 bits */
    while ((total >> sh) > 0x7FFFFFFFu) {
        sh++;
    }
    total32 = (uint32_t)(total >> sh);
    kbest = trig;
    for (k = 1; k < len; k++) {
        const int32_t nr = len - k;
        int32_t aic;
        y = RING_AT(st, base, k - 1);
        left += (uint32_t)(y * y) >> sh;
        if (left > total32) {
            left = total32;
        }
        aic = k * (log2_q10(left + (uint32_t)k) - log2_q10((uint32_t)k))
            + nr * (log2_q10(total32 - left + (uint32_t)nr) - log2_q10((uint32_t)nr));
        if (aic < best) {
            best = aic;
            kbest = k;
        }
    }

    lo = kbest - 2 > 1 ? kbest - 2 : 1;
    hi = kbest + c->zc_max_n < len - 1 ? kbest + c->zc_max_n : len - 1;
    mp = lo;
    peak = -1;
    for (k = lo; k <= hi; k++) {
        ay = RING_AT(st, base, k);
        ay = ay < 0 ? -ay : ay;
        if (ay > peak) {
            peak = ay;
            mp = k;
        }
    }
    sgn = RING_AT(st, base, mp) < 0 ? -1 : 1;
    dbest = 0;
    jbest = kbest;
    for (j = lo; j <= mp; j++) {
        const int32_t d = sgn * (RING_AT(st, base, j) - RING_AT(st, base, j - 1));
        if (d > dbest) {
            dbest = d;
            jbest = j;
        }
    }
    if (dbest <= 0) {
        pos = kbest * 65536;
    } else {
        a = sgn * RING_AT(st, base, jbest - 1);
        if (a <= 0) {
            q = udiv32((uint32_t)-a << 16, (uint32_t)dbest);
            if (q > 65535u) {
                q = 65535u;
            }
            pos = (jbest - 1) * 65536 + (int32_t)q;
        } else {
            q = udiv32((uint32_t)a << 16, (uint32_t)dbest);
            if (q > (uint32_t)c->zc_max_n << 16) {
                q = (uint32_t)c->zc_max_n << 16;
            }
            pos = (jbest - 1) * 65536 - (int32_t)q;
        }
    }
    if (pos < 0) {
        pos = 0;
    }
    t->onset_sample = s0 + (pos >> 16);
    t->onset_frac_q16 = pos & 0xFFFF;

    /* peak |y| from the onset on, and band filters primed over the window */
    t->peak_abs = 0;
    t->peak_sample = t->onset_sample;
    peak_run(st, t->onset_sample, len - (pos >> 16));
    st->lp[0] = st->lp[1] = st->lp[2] = 0;
    if (trig < 0) {
        trig = 0;
    }
    band_run(st, base, trig, 0);
    band_run(st, base + (uint32_t)trig, len - trig, 1);
}

size_t impulse_state_size(void) { return sizeof(impulse_state_t); }
size_t impulse_config_size(void) { return sizeof(impulse_config_t); }
size_t impulse_trigger_size(void) { return sizeof(impulse_trigger_t); }

int impulse_config_check(const impulse_config_t *c)
{
    if (c == NULL) {
        return IMPULSE_EINVAL;
    }
    if (c->hp_pole_q14 < 0 || c->hp_pole_q14 >= (1 << IMPULSE_COEF_SHIFT)
        || c->sta_shift < 0 || c->sta_shift >= c->lta_shift || c->lta_shift > 24
        || c->ratio_q8 <= 256 || c->ratio_q8 > 4095 || c->floor_q16 < 0
        || c->holdoff_n < 1 || c->warmup_n < 0
        || c->lookback_n < 1 || c->post_n < 1
        || c->lookback_n + c->post_n > IMPULSE_RING_N - 1
        || c->measure_n < c->post_n || c->measure_n > c->holdoff_n
        || c->zc_max_n < 1 || c->zc_max_n > c->lookback_n
        || c->width_q8 < 1 || c->width_q8 > 255 || c->decay_q8 < 1 || c->decay_q8 > 255
        || c->mask_shift < 0 || c->mask_shift > 24 || c->peak_ratio_q4 <= 16 || c->peak_ratio_q4 > 4095
        || c->supersede_q8 < 256 || c->supersede_q8 > 4095) {
        return IMPULSE_EINVAL;
    }
    if (c->band_lp1_q14 < 1 || c->band_lp1_q14 > (1 << IMPULSE_COEF_SHIFT)
        || c->band_lp2_q14 < 1 || c->band_lp2_q14 > (1 << IMPULSE_COEF_SHIFT)
        || c->band_lp3_q14 < 1 || c->band_lp3_q14 > (1 << IMPULSE_COEF_SHIFT)) {
        return IMPULSE_EINVAL;
    }
    return IMPULSE_OK;
}

void impulse_reset(impulse_state_t *st)
{
    const impulse_config_t cfg = st->cfg;
    memset(st, 0, sizeof(*st));
    st->cfg = cfg;
    st->last_trigger = INT64_MIN / 2;
    st->phase = PHASE_IDLE;
}

int impulse_init(impulse_state_t *st, const impulse_config_t *cfg)
{
    if (st == NULL || impulse_config_check(cfg) != IMPULSE_OK) {
        return IMPULSE_EINVAL;
    }
    st->cfg = *cfg;
    impulse_reset(st);
    return IMPULSE_OK;
}

uint32_t impulse_dropped(const impulse_state_t *st) { return st->dropped; }

COLD static void start_trigger(impulse_state_t *st, int64_t n)
{
    impulse_trigger_t *t = &st->cur;
    memset(t, 0, sizeof(*t));
    t->trigger_sample = n;
    t->noise_q16 = st->lta;
    t->sta_trigger_q16 = st->sta;
    t->sta_peak_q16 = st->sta;
    st->sta_peak_off = 0;
    st->width_end_off = NEVER;
    st->decay_end_off = NEVER;
    st->last_trigger = n;
    st->armed = 0;
    st->phase = PHASE_PICK;
    st->countdown = st->cfg.post_n;
}

static int64_t not_before(int64_t v, int64_t lo) { return v < lo ? lo : v; }

/* Complete the current trigger at sample n (the last sample of its window). */
COLD static void finish(impulse_state_t *st, int64_t n, impulse_trigger_t *out, size_t *count,
                   size_t max_out)
{
    impulse_trigger_t *t = &st->cur;
    const int32_t end_off = (int32_t)(n + 1 - t->trigger_sample);
    const int64_t width_end = t->trigger_sample
                              + (st->width_end_off == NEVER ? end_off : st->width_end_off);
    t->width_n = (int32_t)(not_before(width_end, t->onset_sample) - t->onset_sample);
    t->decay_n = (st->decay_end_off == NEVER ? end_off : st->decay_end_off) - st->sta_peak_off;
    t->measure_n = (int32_t)(n + 1 - t->trigger_sample);
    if (*count < max_out) {
        out[(*count)++] = *t;
    } else {
        st->dropped++;
    }
    st->phase = PHASE_IDLE;
    st->idle_since = n + 1;
}

/* Steps 1-2 of one sample: two one-pole high-pass sections into the ring
   (x1, *h1, *y1: previous input and outputs); returns |y|. */
static INLINE int32_t highpass(impulse_state_t *st, int32_t x, int32_t x1, int32_t *h1,
                               int32_t *y1, int32_t pole, uint32_t idx)
{
    const int32_t h = sat_y(x - x1 + ((pole * *h1) >> IMPULSE_COEF_SHIFT));
    const int32_t y = sat_y(h - *h1 + ((pole * *y1) >> IMPULSE_COEF_SHIFT));
    *h1 = h;
    *y1 = y;
    st->ring[idx & IMPULSE_RING_MASK] = (int16_t)y;
    return y < 0 ? -y : y;
}

/* Level under which the STA ends the width or decay: frac_q8/256 of the STA
   peak, or 0 (never) once that end was found. */
static int32_t end_level(int32_t end_off, int32_t sta_peak, int32_t frac_q8)
{
    return end_off == NEVER ? (sta_peak >> 8) * frac_q8 : 0;
}

/*
 * Steps 1-5 for the samples [s, n_samples) of this block while a trigger is
 * picked or measured, until it is emitted (back to idle); sample s has
 * already been through steps 1-2 when `filtered` (the trigger sample).  The
 * per-sample fields live in locals, written back around the rare calls.
 * Returns the index of the next sample for the idle loop.
 */
COLD static size_t event_run(impulse_state_t *st, const int16_t *samples, size_t s,
                             size_t n_samples, int filtered, impulse_trigger_t *out,
                             size_t *count, size_t max_out)
{
    const impulse_config_t *c = &st->cfg;
    impulse_trigger_t *t = &st->cur;
    const int32_t pole = c->hp_pole_q14, sta_shift = c->sta_shift, mask_shift = c->mask_shift;
    const int32_t measure_left = c->measure_n - c->post_n;
    int32_t x1 = st->x1, h1 = st->h1, y1 = st->y1, sta = st->sta, mask = st->mask;
    int32_t phase = st->phase, countdown = st->countdown, peak = t->sta_peak_q16;
    int32_t off = (int32_t)(st->n + (int64_t)s - t->trigger_sample); /* of sample s */
    int32_t width_lvl = end_level(st->width_end_off, peak, c->width_q8);
    int32_t decay_lvl = end_level(st->decay_end_off, peak, c->decay_q8);
    int32_t ref = st->event_ref;
    uint32_t supersede_lvl = (uint32_t)(ref >> 12) * (uint32_t)c->supersede_q8;
    uint32_t idx = (uint32_t)st->n + (uint32_t)s;
    const int16_t *p = samples + s, *const end = samples + n_samples;
    /* steps 1-2 for the sample at p (ring index idx) */
#define EVENT_FILTER()                                                              \
    do {                                                                            \
        const int32_t env_ = highpass(st, *p, x1, &h1, &y1, pole, idx)              \
                             << IMPULSE_ENV_SHIFT;                                  \
        sta += (env_ - sta) >> sta_shift;                                           \
        if (mask != 0) {                                                            \
            mask -= mask >> mask_shift;                                             \
        }                                                                           \
    } while (0)
    if (!filtered) {
        EVENT_FILTER();
    }
    for (;;) {
        const int32_t x = *p++;
        x1 = x;
        idx++;
        if (sta > mask) {
            mask = sta;
        }
        if ((uint32_t)(x + (Y_MAX - 1)) > 2u * (Y_MAX - 1)) { /* |x| >= Y_MAX */
            t->clipped = 1;
        }
        if (sta > peak) {
            peak = sta;
            t->sta_peak_q16 = sta;
            st->sta_peak_off = off;
            st->width_end_off = NEVER;
            st->decay_end_off = NEVER;
            width_lvl = end_level(NEVER, peak, c->width_q8);
            decay_lvl = end_level(NEVER, peak, c->decay_q8);
        } else {
            if (sta < width_lvl) {
                st->width_end_off = off;
                width_lvl = 0;
            }
            if (sta < decay_lvl) {
                st->decay_end_off = off;
                decay_lvl = 0;
            }
        }
        countdown--;
        if (phase == PHASE_PICK) {
            if (countdown != 0) {
                goto next_sample;
            }
            /* 4. onset pick; primes the band filters up to this sample */
            pick_onset(st, t->trigger_sample + off + 1);
            ref = peak;
            st->event_ref = ref;
            supersede_lvl = (uint32_t)(ref >> 12) * (uint32_t)c->supersede_q8;
            phase = PHASE_MEASURE;
            countdown = measure_left;
        }
        /* 5. emit (peak and band energies are batched: flushed every
           2^FLUSH_LOG2 measured samples and when the trigger closes) */
        {
            if (countdown == 0) {
                st->countdown = 0;
                flush_measure(st, t->trigger_sample + off);
                finish(st, t->trigger_sample + off, out, count, max_out);
                phase = PHASE_IDLE;
                break;
            }
            if (sta > ref && (uint32_t)(sta >> 4) > supersede_lvl) {
                /* a stronger pulse inside the hold-off (the muzzle blast after
                   a weak precursor or a bullet's shock wave): close this
                   trigger early and start a new one */
                const int64_t n = t->trigger_sample + off;
                st->countdown = countdown;
                flush_measure(st, n);
                finish(st, n, out, count, max_out);
                st->sta = sta;
                start_trigger(st, n);
                phase = PHASE_PICK;
                countdown = c->post_n;
                peak = sta;
                width_lvl = end_level(NEVER, peak, c->width_q8);
                decay_lvl = end_level(NEVER, peak, c->decay_q8);
                off = 0;
            } else if (((measure_left - countdown) & ((1 << FLUSH_LOG2) - 1)) == 0) {
                st->countdown = countdown;
                flush_measure(st, t->trigger_sample + off);
            }
        }
    next_sample:
        off++;
        if (p == end) {
            break;
        }
        EVENT_FILTER();
    }
#undef EVENT_FILTER
    st->x1 = x1;
    st->h1 = h1;
    st->y1 = y1;
    st->sta = sta;
    st->mask = mask;
    st->phase = phase;
    st->countdown = countdown;
    return (size_t)(p - samples);
}

size_t impulse_process(impulse_state_t *st, const int16_t *samples, size_t n_samples,
                       impulse_trigger_t *out, size_t max_out)
{
    const impulse_config_t *c;
    size_t count = 0, s = 0;
    int32_t pole, sta_shift, mask_shift, floor_q16, ratio_q8, peak_q4;
    int32_t x1, h1, y1, sta, lta, mask, live_n, lta_k, armed;
    int64_t n0;
    if (st == NULL || (samples == NULL && n_samples > 0) || (out == NULL && max_out > 0)) {
        return 0;
    }
    n0 = st->n;
    if (st->phase != PHASE_IDLE && n_samples > 0) {
        s = event_run(st, samples, 0, n_samples, 0, out, &count, max_out);
    }
    /* The idle loop keeps the per-sample state in locals (registers) and
       writes it back around a trigger: the compiler cannot do this itself
       because out[] might alias the state. */
    c = &st->cfg;
    pole = c->hp_pole_q14;
    sta_shift = c->sta_shift;
    mask_shift = c->mask_shift;
    floor_q16 = c->floor_q16;
    ratio_q8 = c->ratio_q8;
    peak_q4 = c->peak_ratio_q4;
    x1 = st->x1;
    h1 = st->h1;
    y1 = st->y1;
    sta = st->sta;
    lta = st->lta;
    mask = st->mask;
    live_n = st->live_n;
    lta_k = st->lta_k;
    armed = st->armed;
    for (; s < n_samples; s++) {
        const int32_t x = samples[s];
        int32_t env, ref;

        /* 1-2. high-pass, envelopes */
        env = highpass(st, x, x1, &h1, &y1, pole, (uint32_t)n0 + (uint32_t)s)
              << IMPULSE_ENV_SHIFT;
        sta += (env - sta) >> sta_shift;
        if (mask != 0) {
            mask -= mask >> mask_shift;
        }
        if (x != x1) {
            /* constant input (digital silence, a stuck ADC) teaches the LTA nothing */
            if (live_n < INT32_MAX) {
                live_n++;
            }
            lta += (env - lta) >> lta_k;
            if (lta_k < c->lta_shift && live_n >= (int32_t)1 << (lta_k + 1)) {
                lta_k++;
            }
        }
        x1 = x;
        /* 3. trigger; 32-bit compares (ratio_q8, peak_ratio_q4 < 4096): Q12 and Q8 */
        ref = lta > mask ? lta : mask;
        if (sta > floor_q16 && sta > ref
            && ((uint32_t)(sta >> 4) > (uint32_t)(ref >> 12) * (uint32_t)ratio_q8
                || (uint32_t)(env >> 8) > (uint32_t)(ref >> 12) * (uint32_t)peak_q4)) {
            if (armed && live_n >= c->warmup_n
                && n0 + (int64_t)s - st->last_trigger >= c->holdoff_n) {
                st->x1 = x1;
                st->h1 = h1;
                st->y1 = y1;
                st->sta = sta;
                st->lta = lta;
                st->mask = mask;
                start_trigger(st, n0 + (int64_t)s);
                s = event_run(st, samples, s, n_samples, 1, out, &count, max_out) - 1;
                x1 = st->x1;
                h1 = st->h1;
                y1 = st->y1;
                sta = st->sta;
                mask = st->mask;
                armed = st->armed;
            }
        } else {
            armed = 1;
        }
    }
    if (st->phase == PHASE_IDLE) {
        st->x1 = x1;
        st->h1 = h1;
        st->y1 = y1;
        st->sta = sta;
        st->lta = lta;
        st->mask = mask;
        st->armed = armed;
    }
    st->live_n = live_n;
    st->lta_k = lta_k;
    st->n = n0 + (int64_t)n_samples;
    return count;
}
