/* Ed25519 (RFC 8032) verification: SHA-512(R || A || M) reduced mod L, then
 * Monocypher's check of [S]B = R + [h]A.  This is the composition Monocypher
 * documents for its EdDSA variants (monocypher-ed25519.c does the same). */
#include <string.h>

#include "verify.h"
#include "monocypher/monocypher.h"
#include "monocypher/sha512/sha512.h"

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
    uint8_t hashed[VERIFY_SIGNATURE_BYTES / 2 + VERIFY_PUBLIC_KEY_BYTES + VERIFY_MAX_MESSAGE_BYTES];
    uint8_t h_ram[64];
    size_t n_bytes;

    if (message_bytes > VERIFY_MAX_MESSAGE_BYTES) {
        return VERIFY_TOO_LONG;
    }
    if (verify_small_order(public_key)) {
        return VERIFY_WEAK_KEY;
    }
    memcpy(hashed, signature, VERIFY_SIGNATURE_BYTES / 2);
    memcpy(hashed + VERIFY_SIGNATURE_BYTES / 2, public_key, VERIFY_PUBLIC_KEY_BYTES);
    if (message_bytes > 0) {
        memcpy(hashed + VERIFY_SIGNATURE_BYTES / 2 + VERIFY_PUBLIC_KEY_BYTES, message, message_bytes);
    }
    n_bytes = VERIFY_SIGNATURE_BYTES / 2 + VERIFY_PUBLIC_KEY_BYTES + message_bytes;
    crypto_hash_sha512(h_ram, hashed, n_bytes);
    crypto_eddsa_reduce(h_ram, h_ram);
    return crypto_eddsa_check_equation(signature, public_key, h_ram) == 0 ? VERIFY_OK
                                                                           : VERIFY_BAD_SIGNATURE;
}
