/*
 * impulse.h - streaming fixed-point impulse (gunshot muzzle-blast) detector.
 *
 * Portable C99, integer arithmetic only, no division, no malloc, no static
 * state: the caller owns the state struct and the output array.  The same
 * code runs on the host (cffi, shotline._impulse) and on the RP2040
 * (Cortex-M0+: no FPU, no divider) as a MicroPython native module.
 *
 * The configuration is computed outside the C (firmware/shotline_fw/
 * detconfig.py, one source of truth) and passed in as the flat list of
 * int32 fields of impulse_config_t, in declaration order.
 *
 * Pipeline per sample x (int16):
 *   1. high-pass: two cascaded one-pole sections (DC and rumble removal) -> y
 *   2. envelope |y| (Q16); STA and LTA exponential averages (shift time constants)
 *   3. trigger when STA > ratio * max(LTA, echo mask) (or a single |y| >
 *      peak_ratio * that reference) and STA > floor, after warm-up, armed,
 *      and outside the hold-off of the previous trigger.  The LTA learns only
 *      from non-constant input (digital silence freezes it) and is frozen
 *      while a trigger is measured; the echo mask is the last trigger's STA
 *      peak decaying exponentially (reverberation, echoes).
 *   4. onset pick, post_n samples after the trigger, on the pre-trigger ring:
 *      AIC change point of y^2, refined to the zero crossing at the start of
 *      the pulse with a sub-sample (Q16) fraction.
 *   5. features accumulated over measure_n samples from the trigger, then the
 *      trigger is emitted.  A pulse whose STA exceeds supersede * the current
 *      trigger's STA peak at its onset pick (a muzzle blast after a weaker
 *      precursor) closes the current trigger early and starts a new one
 *      despite the hold-off.
 * Conversion to dB and seconds is done by the bindings (detconfig.features).
 */
#ifndef IMPULSE_H
#define IMPULSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- sizes ------------------------------------------------------------- */

/* Pre-trigger history of filtered samples (power of two). */
#define IMPULSE_RING_LOG2 9
#define IMPULSE_RING_N (1 << IMPULSE_RING_LOG2)
#define IMPULSE_RING_MASK (IMPULSE_RING_N - 1)

/* Number of int32 fields in impulse_config_t (for bindings that pack it). */
#define IMPULSE_CONFIG_FIELDS 19

/* Q formats used in the config and triggers. */
#define IMPULSE_COEF_SHIFT 14 /* filter coefficients: Q14 */
#define IMPULSE_ENV_SHIFT 16  /* envelope (mean |y|) values: Q16 of one LSB */

/* Return codes (negative = error). */
#define IMPULSE_OK 0
#define IMPULSE_EINVAL (-1)

/* ---- configuration (all int32, this exact order) ----------------------- */

typedef struct {
    int32_t hp_pole_q14;   /* one-pole high-pass pole exp(-2 pi fc / fs), Q14; applied twice */
    int32_t sta_shift;     /* STA time constant = 2^sta_shift samples */
    int32_t lta_shift;     /* LTA time constant = 2^lta_shift samples */
    int32_t ratio_q8;      /* trigger when STA * 256 > LTA * ratio_q8 (257..4095) */
    int32_t floor_q16;     /* and STA > floor_q16 (mean |y| in Q16) */
    int32_t holdoff_n;     /* no new trigger for holdoff_n samples after a trigger */
    int32_t warmup_n;      /* no trigger before warmup_n non-constant input samples */
    int32_t lookback_n;    /* onset searched in [trigger - lookback_n, trigger + post_n) */
    int32_t post_n;        /* samples after the trigger seen by the onset pick */
    int32_t measure_n;     /* features measured over measure_n samples from the trigger (<= holdoff_n) */
    int32_t zc_max_n;      /* onset refinement: rise searched this many samples around the
                              AIC change point, extrapolated back at most this far */
    int32_t band_lp1_q14;  /* band crossover one-pole low-pass coefficients, Q14 (used as Q10): */
    int32_t band_lp2_q14;  /*   low = lp1, mid = lp2 - lp1, high = lp3 - lp2 */
    int32_t band_lp3_q14;
    int32_t width_q8;      /* width: STA above width_q8/256 of its peak */
    int32_t decay_q8;      /* decay: from STA peak until STA < decay_q8/256 of peak */
    int32_t mask_shift;    /* echo mask: after a trigger the reference level is at least its
                              STA peak decaying with time constant 2^mask_shift samples */
    int32_t peak_ratio_q4; /* also trigger when |y| * 16 > max(LTA, mask) * peak_ratio_q4 (17..4095)
                              (a short spike the STA would average away) */
    int32_t supersede_q8;  /* inside the hold-off, a pulse whose STA * 256 exceeds the current
                              trigger's STA peak * supersede_q8 starts a new trigger (256..4095) */
} impulse_config_t;

/* ---- trigger (integers only; never audio) ------------------------------ */

typedef struct {
    int64_t onset_sample;     /* sample index of the onset (integer part) */
    int64_t trigger_sample;   /* sample index where STA/LTA crossed the ratio */
    int64_t peak_sample;      /* sample index of max |y| */
    uint64_t band_energy[3];  /* sum of squares (LSB^2) of low/mid/high band over measure_n */
    int32_t onset_frac_q16;   /* sub-sample fraction of the onset, 0..65535 */
    int32_t peak_abs;         /* max |y| (filtered), 0..32767 */
    int32_t noise_q16;        /* LTA at the trigger: mean |y| of the background, Q16 */
    int32_t sta_peak_q16;     /* max STA over the measure window, Q16 */
    int32_t sta_trigger_q16;  /* STA at the trigger sample, Q16 */
    int32_t width_n;          /* samples from the onset until the STA falls below
                                 width_q8/256 * sta_peak after its peak */
    int32_t decay_n;          /* samples from STA peak until STA < decay_q8/256 * sta_peak */
    int32_t measure_n;        /* samples the band energies were summed over (measure_n
                                 of the config, fewer if closed early) */
    int32_t clipped;          /* 1 if any input |x| >= 32767 in the measure window */
} impulse_trigger_t;

/* ---- state (caller-owned; treat as opaque) ----------------------------- */

typedef struct {
    impulse_config_t cfg;
    int64_t n;                  /* samples processed so far (index of the next sample) */
    int64_t last_trigger;       /* trigger sample of the previous trigger */
    int64_t idle_since;         /* first sample after the previous measure window */
    int32_t x1, h1, y1;         /* high-pass state: previous input, stage-1 and stage-2 output */
    int32_t lp[3];              /* band low-pass states (Q4), run only around a trigger */
    int32_t sta, lta;           /* envelopes: mean |y| in Q16 */
    int32_t lta_k;              /* LTA shift in use (grows to lta_shift while warming up) */
    int32_t sta_peak_off;       /* STA peak of the current trigger, samples after its trigger */
    int32_t width_end_off;      /* first sample after that peak below the width level, or -1 */
    int32_t decay_end_off;      /* first sample after that peak below the decay level, or -1 */
    int32_t mask;               /* echo mask, Q16 */
    int32_t event_ref;          /* STA peak of the current trigger at its onset pick, Q16 */
    int32_t live_n;             /* non-constant input samples seen (saturates) */
    int32_t phase;              /* 0 idle, 1 picking the onset, 2 measuring */
    int32_t armed;              /* 1 once STA was below the threshold since the last trigger */
    int32_t countdown;          /* samples left in the current phase */
    uint32_t dropped;           /* completed triggers lost because out[] was full */
    impulse_trigger_t cur;      /* trigger being measured */
    int16_t ring[IMPULSE_RING_N]; /* recent filtered samples y, at index n & IMPULSE_RING_MASK */
} impulse_state_t;

/* ---- API ---------------------------------------------------------------- */

/* sizeof of the structs, for bindings that allocate them as bytes. */
size_t impulse_state_size(void);
size_t impulse_config_size(void);
size_t impulse_trigger_size(void);

/* Check a configuration; IMPULSE_OK or IMPULSE_EINVAL. */
int impulse_config_check(const impulse_config_t *cfg);

/* Validate cfg, copy it into state and reset the stream (sample index 0). */
int impulse_init(impulse_state_t *state, const impulse_config_t *cfg);

/* Restart the stream with the same configuration. */
void impulse_reset(impulse_state_t *state);

/*
 * Feed n samples.  Writes at most max_out completed triggers to out and
 * returns how many.  A trigger is emitted once its measure window is complete
 * (at most lookback/post/measure samples after the onset), so any split of a
 * stream into blocks yields the same triggers.  If a block completes more
 * triggers than max_out, the extra ones are dropped and counted (see
 * impulse_dropped); a trigger spans at least post_n samples, so
 * max_out >= n / post_n + 2 never drops.  Returns 0 if an argument is NULL.
 */
size_t impulse_process(impulse_state_t *state, const int16_t *samples, size_t n,
                       impulse_trigger_t *out, size_t max_out);

/* Triggers dropped so far because out was full. */
uint32_t impulse_dropped(const impulse_state_t *state);

#ifdef __cplusplus
}
#endif

#endif /* IMPULSE_H */
