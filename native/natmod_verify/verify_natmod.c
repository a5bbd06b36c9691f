/* MicroPython binding of native/verify.c: shotline_verify.verify(signature,
 * public_key, message) -> bool.  The only file here that sees MicroPython. */
#include "py/dynruntime.h"

#include "verify.h"

/* The vendored C calls the C library's memcpy/memset; a native module has no
 * libc, so route them to the firmware's own through the function table. */
#undef memcpy
#undef memset
void *memcpy(void *dst, const void *src, size_t n) {
    return mp_fun_table.memmove_(dst, src, n);
}
void *memset(void *s, int c, size_t n) {
    return mp_fun_table.memset_(s, c, n);
}

static mp_obj_t shotline_verify(mp_obj_t signature_in, mp_obj_t public_key_in, mp_obj_t message_in) {
    mp_buffer_info_t signature, public_key, message;
    mp_get_buffer_raise(signature_in, &signature, MP_BUFFER_READ);
    mp_get_buffer_raise(public_key_in, &public_key, MP_BUFFER_READ);
    mp_get_buffer_raise(message_in, &message, MP_BUFFER_READ);
    if (signature.len != VERIFY_SIGNATURE_BYTES || public_key.len != VERIFY_PUBLIC_KEY_BYTES) {
        mp_raise_ValueError(MP_ERROR_TEXT("signature must be 64 bytes and key 32 bytes"));
    }
    int status = verify_ed25519(signature.buf, public_key.buf, message.buf, message.len);
    if (status == VERIFY_TOO_LONG) {
        mp_raise_ValueError(MP_ERROR_TEXT("message too long"));
    }
    return mp_obj_new_bool(status == VERIFY_OK);
}
static MP_DEFINE_CONST_FUN_OBJ_3(shotline_verify_obj, shotline_verify);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    mp_store_global(MP_QSTR_verify, MP_OBJ_FROM_PTR(&shotline_verify_obj));
    mp_store_global(MP_QSTR_MAX_MESSAGE_BYTES, MP_OBJ_NEW_SMALL_INT(VERIFY_MAX_MESSAGE_BYTES));

    MP_DYNRUNTIME_INIT_EXIT
}
