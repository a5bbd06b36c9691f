/* Ed25519 (RFC 8032) verification: SHA-512(R || A || M) reduced mod L, then
 * Monocypher's check of [S]B = R + [h]A.  This is the composition Monocypher
 * documents for its EdDSA variants (monocypher-ed25519.c does the same). */
#include "verify.h"
#include "monocypher/monocypher.h"
#include "crypto_hash_sha512.h"

/* libsodium's SHA-512 wipes its state with sodium_memzero (from its utils.c,
 * not vendored): volatile stores the compiler cannot drop. */
void sodium_memzero(void *const pnt, const size_t len);

void sodium_memzero(void *const pnt, const size_t len)
{
    volatile unsigned char *p = (volatile unsigned char *)pnt;
    size_t i;
    for (i = 0; i < len; i++) {
        p[i] = 0U;
    }
}

/* [8]A == identity?  Monocypher's own equation with R = identity, S = 0, h = 1
 * reduces to [8](-A) == 0, which holds exactly for the 8 small-order points. */
static int verify_small_order(const uint8_t public_key[VERIFY_PUBLIC_KEY_BYTES])
{
    static const uint8_t identity_zero[VERIFY_SIGNATURE_BYTES] = {1};
    static const uint8_t one[32] = {1};
    return crypto_eddsa_check_equation(identity_zero, public_key, one) == 0;
}

int verify_ed25519(const uint8_t signature[VERIFY_SIGNATURE_BYTES],
                   const uint8_t public_key[VERIFY_PUBLIC_KEY_BYTES],
                   const uint8_t *message, size_t message_bytes)
{
    crypto_hash_sha512_state hash;
    uint8_t h_ram[64];

    if (message_bytes > VERIFY_MAX_MESSAGE_BYTES) {
        return VERIFY_TOO_LONG;
    }
    if (verify_small_order(public_key)) {
        return VERIFY_WEAK_KEY;
    }
    crypto_hash_sha512_init(&hash);
    crypto_hash_sha512_update(&hash, signature, VERIFY_SIGNATURE_BYTES / 2);
    crypto_hash_sha512_update(&hash, public_key, VERIFY_PUBLIC_KEY_BYTES);
    crypto_hash_sha512_update(&hash, message, message_bytes);
    crypto_hash_sha512_final(&hash, h_ram);
    crypto_eddsa_reduce(h_ram, h_ram);
    return crypto_eddsa_check_equation(signature, public_key, h_ram) == 0 ? VERIFY_OK
                                                                           : VERIFY_BAD_SIGNATURE;
}
