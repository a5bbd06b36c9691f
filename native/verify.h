/* Ed25519 signature check (RFC 8032, SHA-512) for Shotline's signed commands.
 *
 * Thin wrapper over vendored, unmodified code: Monocypher 4.0.3 for the curve
 * arithmetic (crypto_eddsa_reduce, crypto_eddsa_check_equation) and
 * libsodium 1.0.18's portable SHA-512.  No MicroPython headers, no malloc, no
 * static state.  See native/monocypher/SOURCE.md.
 */
#ifndef SHOTLINE_VERIFY_H
#define SHOTLINE_VERIFY_H

#include <stddef.h>
#include <stdint.h>

/* ---- sizes ---------------------------------------------------------------- */
#define VERIFY_PUBLIC_KEY_BYTES 32
#define VERIFY_SIGNATURE_BYTES 64
#define VERIFY_MAX_MESSAGE_BYTES 1024   /* protocol bound on a signed command */

/* ---- status codes ------------------------------------------------------------ */
#define VERIFY_OK 0             /* the signature is valid for this key and message */
#define VERIFY_BAD_SIGNATURE 1  /* forged, corrupted, non-canonical S, or bad key */
#define VERIFY_TOO_LONG 2       /* message longer than VERIFY_MAX_MESSAGE_BYTES */
#define VERIFY_WEAK_KEY 3       /* public key of small order: it would accept forgeries */

/* Check an Ed25519 signature (R || S, 64 bytes) over message[0..message_bytes)
 * with a 32-byte public key.  Returns VERIFY_OK or an error code; never
 * crashes on any input.  Monocypher's check is cofactored, under which a
 * small-order key (e.g. all zeros) validates an all-zero signature on any
 * message, so such keys are refused first (as libsodium does). */
int verify_ed25519(const uint8_t signature[VERIFY_SIGNATURE_BYTES],
                   const uint8_t public_key[VERIFY_PUBLIC_KEY_BYTES],
                   const uint8_t *message, size_t message_bytes);

#endif
