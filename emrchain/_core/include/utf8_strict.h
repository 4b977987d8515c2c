/* Strict UTF-8 validation (RFC 3629) for `_txcheck.pyx`.
 *
 * Accepts exactly the byte strings that CPython's bytes.decode("utf-8", "strict") accepts:
 * no overlong forms (C0, C1, E0 80..9F, F0 80..8F), no surrogates (ED A0..BF = U+D800..DFFF),
 * nothing above U+10FFFF (F4 90.., F5..FF), no 5/6-byte forms, no lone or missing continuation
 * bytes. NUL (0x00) is a valid character. Table 3-7 of the Unicode standard lists the same
 * well-formed byte sequences; the second byte's range is the only place they differ from the
 * generic 80..BF continuation range.
 */
#ifndef EMRCHAIN_UTF8_STRICT_H
#define EMRCHAIN_UTF8_STRICT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline int utf8_strict_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* Most text is ASCII: skip 8 bytes at a time while no high bit is set. */
        while (n - i >= 8) {
            uint64_t chunk;
            memcpy(&chunk, s + i, 8);
            if (chunk & UINT64_C(0x8080808080808080)) {
                break;
            }
            i += 8;
        }
        if (i >= n) {
            break;
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i += 1;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 3;
            if (c == 0xE0) lo = 0xA0;      /* overlong below U+0800 */
            else if (c == 0xED) hi = 0x9F; /* surrogates U+D800..DFFF */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 4;
            if (c == 0xF0) lo = 0x90;      /* overlong below U+10000 */
            else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        } else {
            return 0; /* 80..BF lone continuation, C0/C1 overlong, F5..FF out of range */
        }
        if (n - i < need) {
            return 0; /* truncated sequence */
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return 0;
        }
        for (size_t k = 2; k < need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return 0;
            }
        }
        i += need;
    }
    return 1;
}

#endif /* EMRCHAIN_UTF8_STRICT_H */
