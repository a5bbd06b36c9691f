/*
 * Cortex-M0 cost of impulse_process under QEMU (machine microbit, nRF51).
 * Run with -icount shift=0 (one instruction = 1 ns of virtual time); the
 * nRF51 TIMER0 at 16 MHz then counts instructions / 62.5.  Prints
 * "<samples> <ticks with shots> <ticks noise only> <ticks input only>
 * <triggers with shots> <triggers noise only>" through semihosting, then
 * exits.  With -DONLY_RUN=1 (shots) or 0 (noise) it runs just that case, for
 * an instruction trace.  Used by bench/detector.py.
 */
#include <stdint.h>
#include "impulse.h"

#define TIMER0 0x40008000u
#define REG(off) (*(volatile uint32_t *)(TIMER0 + (off)))
#define BLOCK_N 1024
#ifndef BLOCKS
#define BLOCKS 24
#endif

extern uint32_t _estack;
void reset_handler(void);
static void fault(void) { for (;;) { } }

__attribute__((section(".vectors"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), reset_handler, fault, fault,
    fault, fault, fault, fault, fault, fault, fault, fault, fault, fault, fault, fault,
};

static int semihost(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void print(const char *s) { semihost(0x04, (void *)s); }

static void print_u32(uint32_t v)
{
    char buf[12];
    int i = 10;
    buf[11] = 0;
    buf[10] = ' ';
    do {
        uint32_t q = 0, r = v, d = 10;
        /* v / 10 without a division helper */
        uint32_t bit;
        for (bit = 1u << 28; bit; bit >>= 1) {
            if (r >= d * bit) { r -= d * bit; q += bit; }
        }
        buf[--i] = (char)('0' + r);
        v = q;
    } while (v && i > 0);
    print(&buf[i]);
}

static uint32_t ticks(void)
{
    REG(0x040) = 1; /* TASKS_CAPTURE[0] */
    return REG(0x540);
}

static impulse_state_t state;
static impulse_trigger_t out[8];
static int16_t samples[BLOCK_N];
static const int32_t config[IMPULSE_CONFIG_FIELDS] = {
#include "m0_config.h" /* written by bench/detector.py from detconfig */
};

static void fill(uint32_t *seed, int b, int shots)
{
    int i;
    for (i = 0; i < BLOCK_N; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        samples[i] = (int16_t)((int16_t)((int32_t)(*seed >> 16) - 32768) >> 5);
    }
    if (shots && b % 4 == 3) { /* a shot every 4 blocks (256 ms at 16 kHz) */
        for (i = 100; i < 140; i++) {
            samples[i] = (int16_t)(samples[i] + 12000 - 300 * (i - 100));
        }
    }
}

/* Timer ticks to process BLOCKS blocks (input generation included). */
static uint32_t run(int shots, int detect, uint32_t *triggers)
{
    uint32_t seed = 12345u, t0;
    int b;
    *triggers = 0;
    impulse_init(&state, (const impulse_config_t *)config);
    t0 = ticks();
    for (b = 0; b < BLOCKS; b++) {
        fill(&seed, b, shots);
        if (detect) {
            *triggers += (uint32_t)impulse_process(&state, samples, BLOCK_N, out, 8);
        }
        __asm__ volatile("" ::: "memory");
    }
    return ticks() - t0;
}

void reset_handler(void)
{
    uint32_t with_shots, quiet, base, n_shots, n_quiet, n_base;
    int exit_args[2] = {0x20026, 0};
    REG(0x504) = 0;   /* MODE timer */
    REG(0x508) = 3;   /* 32 bit */
    REG(0x510) = 0;   /* 16 MHz */
    REG(0x00C) = 1;   /* CLEAR */
    REG(0x000) = 1;   /* START */
    if (impulse_init(&state, (const impulse_config_t *)config) != IMPULSE_OK) {
        print("init failed\n");
        semihost(0x18, exit_args);
    }
#ifdef ONLY_RUN
    with_shots = quiet = base = run(ONLY_RUN, 1, &n_shots);
    n_quiet = n_base = n_shots;
#else
    with_shots = run(1, 1, &n_shots);
    quiet = run(0, 1, &n_quiet);
    base = run(1, 0, &n_base);
#endif
    print_u32((uint32_t)(BLOCKS * BLOCK_N));
    print_u32(with_shots);
    print_u32(quiet);
    print_u32(base);
    print_u32(n_shots);
    print_u32(n_quiet);
    print("\n");
    semihost(0x18, exit_args);
    fault();
}
