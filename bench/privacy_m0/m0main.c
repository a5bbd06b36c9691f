/* Counts the instructions of one Ed25519 verify on an ARMv6-M core: run under
 * `qemu-system-arm -M microbit -icount shift=0` (1 instruction = 1 virtual ns),
 * timed with the nRF51 TIMER0 at 16 MHz, printed over semihosting.  Used by
 * bench/privacy.py.  Vector: RFC 8032 section 7.1 TEST 1. */
#include <stdint.h>

#include "verify.h"

#define TIMER0 ((volatile uint32_t *)0x40008000u)

static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void print_line(const char *label, uint32_t value)
{
    char text[48];
    int n = 0;
    while (*label != '\0') {
        text[n++] = *label++;
    }
    text[n++] = ' ';
    for (int i = 0; i < 8; i++) {
        uint32_t d = (value >> (28 - 4 * i)) & 15u;
        text[n++] = (char)(d < 10u ? '0' + (int)d : 'a' + (int)d - 10);
    }
    text[n++] = '\n';
    text[n] = '\0';
    semihost(0x04, text);  /* SYS_WRITE0 */
}

static uint32_t ticks_16mhz(void)
{
    TIMER0[0x040 / 4] = 1;  /* TASKS_CAPTURE[0] */
    return TIMER0[0x540 / 4];  /* CC[0] */
}

static const uint8_t public_key[32] = {
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};
static const uint8_t signature[64] = {
    0xe5, 0x56, 0x43, 0x00, 0xc3, 0x60, 0xac, 0x72, 0x90, 0x86, 0xe2, 0xcc, 0x80, 0x6e, 0x82, 0x8a,
    0x84, 0x87, 0x7f, 0x1e, 0xb8, 0xe5, 0xd9, 0x74, 0xd8, 0x73, 0xe0, 0x65, 0x22, 0x49, 0x01, 0x55,
    0x5f, 0xb8, 0x82, 0x15, 0x90, 0xa3, 0x3b, 0xac, 0xc6, 0x1e, 0x39, 0x70, 0x1c, 0xf9, 0xb4, 0x6b,
    0xd2, 0x5b, 0xf5, 0xf0, 0x59, 0x5b, 0xbe, 0x24, 0x65, 0x51, 0x41, 0x43, 0x8e, 0x7a, 0x10, 0x0b};
static const uint8_t weak_key[32] = {0};

int main(void);

int main(void)
{
    TIMER0[0x504 / 4] = 0;  /* MODE timer */
    TIMER0[0x508 / 4] = 3;  /* 32-bit */
    TIMER0[0x510 / 4] = 0;  /* prescaler 1: 16 MHz */
    TIMER0[0x00C / 4] = 1;  /* clear */
    TIMER0[0x000 / 4] = 1;  /* start */
    uint32_t t0 = ticks_16mhz();
    int good = verify_ed25519(signature, public_key, (const uint8_t *)"", 0);
    uint32_t t1 = ticks_16mhz();
    int weak = verify_ed25519(signature, weak_key, (const uint8_t *)"", 0);
    uint32_t t2 = ticks_16mhz();
    print_line("valid", (uint32_t)good);
    print_line("verify_ticks", t1 - t0);
    print_line("weak", (uint32_t)weak);
    print_line("weak_key_ticks", t2 - t1);
    semihost(0x18, (const void *)0x20026u);  /* SYS_EXIT, ADP_Stopped_ApplicationExit */
    for (;;) {
    }
}

static void reset_handler(void)
{
    main();
}

__attribute__((section(".vectors"), used)) static const void *const vectors[2] = {
    (const void *)0x20004000u, (const void *)reset_handler};
