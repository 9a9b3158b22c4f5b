/* UTF-8 validation (RFC 3629) for wsfast_utf8validate.
 *
 * wsf_utf8_check(p, n, &tail) returns 1 when p[0..n) is valid UTF-8 except, possibly, for a
 * trailing sequence that is incomplete but still a valid prefix; *tail receives its length
 * (0..3). It returns 0 as soon as a byte cannot belong to valid UTF-8: overlong forms, UTF-16
 * surrogates (U+D800..U+DFFF), code points above U+10FFFF, bytes C0, C1, F5..FF, stray or missing
 * continuation bytes. A prefix such as ED A0 or F4 90 is refused without waiting for the rest.
 *
 * Kernels, chosen once at import (wsf_utf8_init):
 *   x86-64: AVX-512BW (64 bytes a step), AVX2 (32), both the lookup-table method of Keiser and
 *           Lemire ("Validating UTF-8 in less than one instruction per byte", 2021): three
 *           16-entry tables indexed by the high nibble of the previous byte, its low nibble and
 *           the high nibble of the current byte; their AND is non-zero exactly at an error in a
 *           two-byte window, and a saturating compare of the bytes two and three back checks that
 *           third and fourth bytes are continuations where, and only where, a lead asked for them;
 *   AArch64: the same method on NEON (TBL lookups);
 *   elsewhere, and for every tail: a scalar decoder with an 16-byte ASCII fast path.
 * The vector kernels stop at the last whole block; the scalar decoder resumes at the start of the
 * character that straddles the block end, so the end-of-input rules live in one place.
 */
#ifndef WSFAST_UTF8_H
#define WSFAST_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define WSF_X86_64 1
#include <immintrin.h>
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif
#endif

#if defined(__aarch64__) || defined(_M_ARM64)
#define WSF_NEON 1
#include <arm_neon.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define WSF_TARGET(x) __attribute__((target(x)))
#define WSF_LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define WSF_TARGET(x)
#define WSF_LIKELY(x) (x)
#endif

typedef int (*wsf_utf8_fn)(const unsigned char *p, size_t n, size_t *tail);

#define WSF_HI8 0x8080808080808080ULL

/* ---- scalar ---------------------------------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
/* Not inlined into the vector kernels: compiled there it would use VEX/EVEX encodings after
 * their vzeroupper, and a dirty upper state slows every later SSE instruction (measured: a
 * 16-byte call went from 18 to 38 ns). */
static int wsf_utf8_scalar(const unsigned char *p, size_t n, size_t *tail) {
    size_t i = 0;
    *tail = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            /* ASCII run: 16 bytes per step, then bytes up to the next non-ASCII one. */
            while (i + 16 <= n) {
                uint64_t a, b;
                memcpy(&a, p + i, 8);
                memcpy(&b, p + i + 8, 8);
                if ((a | b) & WSF_HI8) break;
                i += 16;
            }
            while (i < n && p[i] < 0x80) i++;
            if (i == n) break;
        }
        {
            unsigned c = p[i];
            size_t len, avail = n - i;
            unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
            if (c < 0xC2) return 0;        /* continuation byte, or overlong C0/C1 */
            if (c < 0xE0) {
                len = 2;
            } else if (c < 0xF0) {
                len = 3;
                if (c == 0xE0) lo = 0xA0;      /* overlong below U+0800 */
                else if (c == 0xED) hi = 0x9F; /* surrogates */
            } else if (c < 0xF5) {
                len = 4;
                if (c == 0xF0) lo = 0x90;      /* overlong below U+10000 */
                else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
            } else {
                return 0;
            }
            if (avail < 2) goto incomplete;
            if (p[i + 1] < lo || p[i + 1] > hi) return 0;
            if (len >= 3) {
                if (avail < 3) goto incomplete;
                if ((p[i + 2] & 0xC0) != 0x80) return 0;
                if (len == 4) {
                    if (avail < 4) goto incomplete;
                    if ((p[i + 3] & 0xC0) != 0x80) return 0;
                }
            }
            i += len;
            continue;
        incomplete:
            *tail = avail;
            return 1;
        }
    }
    return 1;
}

/* Where the scalar decoder resumes after a vector kernel validated p[0..m): at the lead byte
 * of a character that starts in the last three bytes and may continue past m, else at m. */
static inline size_t wsf_utf8_resume(const unsigned char *p, size_t m) {
    size_t k;
    for (k = 1; k <= 3 && k <= m; k++) {
        unsigned c = p[m - k];
        if (c >= 0xC0) return m - k;
        if (c < 0x80) break;
    }
    return m;
}

/* Keiser-Lemire error flags (one bit each; OVERLONG_4 and TOO_LARGE_1000 share bit 6 because
 * they can never both apply to the same pair of nibbles). */
#define WSF_TOO_SHORT (1 << 0)      /* lead followed by a non-continuation */
#define WSF_TOO_LONG (1 << 1)       /* ASCII followed by a continuation */
#define WSF_OVERLONG_3 (1 << 2)     /* E0 80..9F */
#define WSF_TOO_LARGE (1 << 3)      /* F4 90..BF, F5..FF 90..BF */
#define WSF_SURROGATE (1 << 4)      /* ED A0..BF */
#define WSF_OVERLONG_2 (1 << 5)     /* C0/C1 80..BF */
#define WSF_TOO_LARGE_1000 (1 << 6) /* F5..FF 80..8F */
#define WSF_OVERLONG_4 (1 << 6)     /* F0 80..8F */
#define WSF_TWO_CONTS (1 << 7)      /* continuation after continuation */
#define WSF_CARRY (WSF_TOO_SHORT | WSF_TOO_LONG | WSF_TWO_CONTS)
/* Table bytes as the signed char that _mm*_setr_epi8 take (values above 0x7F wrap on purpose). */
#define WSF_C(x) ((char)(signed char)(x))

/* Table 1: high nibble of the previous byte. */
#define WSF_T1 \
    WSF_C(WSF_TOO_LONG), \
    WSF_C(WSF_TOO_LONG), \
    WSF_C(WSF_TOO_LONG), \
    WSF_C(WSF_TOO_LONG), \
    WSF_C(WSF_TOO_LONG), \
    WSF_C(WSF_TOO_LONG), \
    WSF_C(WSF_TOO_LONG), \
    WSF_C(WSF_TOO_LONG), \
    WSF_C(WSF_TWO_CONTS), \
    WSF_C(WSF_TWO_CONTS), \
    WSF_C(WSF_TWO_CONTS), \
    WSF_C(WSF_TWO_CONTS), \
    WSF_C(WSF_TOO_SHORT | WSF_OVERLONG_2), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT | WSF_OVERLONG_3 | WSF_SURROGATE), \
    WSF_C(WSF_TOO_SHORT | WSF_TOO_LARGE | WSF_TOO_LARGE_1000 | WSF_OVERLONG_4)
/* Table 2: low nibble of the previous byte. */
#define WSF_T2 \
    WSF_C(WSF_CARRY | WSF_OVERLONG_3 | WSF_OVERLONG_2 | WSF_OVERLONG_4), \
    WSF_C(WSF_CARRY | WSF_OVERLONG_2), \
    WSF_C(WSF_CARRY), \
    WSF_C(WSF_CARRY), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000 | WSF_SURROGATE), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000), \
    WSF_C(WSF_CARRY | WSF_TOO_LARGE | WSF_TOO_LARGE_1000)
/* Table 3: high nibble of the current byte. */
#define WSF_T3 \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_LONG | WSF_OVERLONG_2 | WSF_TWO_CONTS | WSF_OVERLONG_3 | WSF_TOO_LARGE_1000 | \
          WSF_OVERLONG_4), \
    WSF_C(WSF_TOO_LONG | WSF_OVERLONG_2 | WSF_TWO_CONTS | WSF_OVERLONG_3 | WSF_TOO_LARGE), \
    WSF_C(WSF_TOO_LONG | WSF_OVERLONG_2 | WSF_TWO_CONTS | WSF_SURROGATE | WSF_TOO_LARGE), \
    WSF_C(WSF_TOO_LONG | WSF_OVERLONG_2 | WSF_TWO_CONTS | WSF_SURROGATE | WSF_TOO_LARGE), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT), \
    WSF_C(WSF_TOO_SHORT)

/* Below this length the scalar decoder wins even on multi-byte text. */
#define WSF_UTF8_VECTOR_FROM 16

#ifdef WSF_X86_64
/* ---- AVX2 ------------------------------------------------------------------------------ */

WSF_TARGET("avx2")
static inline __m256i wsf_avx2_prev(__m256i input, __m256i prev_input, int k) {
    /* Bytes shifted k places towards higher addresses, the gap filled from prev_input. */
    __m256i x = _mm256_permute2x128_si256(prev_input, input, 0x21);
    switch (k) {
    case 1: return _mm256_alignr_epi8(input, x, 15);
    case 2: return _mm256_alignr_epi8(input, x, 14);
    default: return _mm256_alignr_epi8(input, x, 13);
    }
}

WSF_TARGET("avx2")
static inline __m256i wsf_avx2_lookup(__m256i input, __m256i prev1, __m256i prev2, __m256i prev3,
                                      __m256i t1, __m256i t2, __m256i t3) {
    const __m256i nib = _mm256_set1_epi8(0x0F);
    __m256i sc = _mm256_and_si256(
        _mm256_and_si256(
            _mm256_shuffle_epi8(t1, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), nib)),
            _mm256_shuffle_epi8(t2, _mm256_and_si256(prev1, nib))),
        _mm256_shuffle_epi8(t3, _mm256_and_si256(_mm256_srli_epi16(input, 4), nib)));
    /* >= 0x80 where the byte two back is E0+ or three back is F0+. */
    __m256i must23 = _mm256_or_si256(_mm256_subs_epu8(prev2, _mm256_set1_epi8(0x60)),
                                     _mm256_subs_epu8(prev3, _mm256_set1_epi8(0x70)));
    __m256i must23_80 = _mm256_and_si256(must23, _mm256_set1_epi8((char)0x80));
    return _mm256_xor_si256(must23_80, sc);
}

WSF_TARGET("avx2")
static inline __m256i wsf_avx2_errors(__m256i input, __m256i prev_input, __m256i t1, __m256i t2,
                                      __m256i t3) {
    return wsf_avx2_lookup(input, wsf_avx2_prev(input, prev_input, 1),
                           wsf_avx2_prev(input, prev_input, 2),
                           wsf_avx2_prev(input, prev_input, 3), t1, t2, t3);
}

WSF_TARGET("avx2")
static inline __m256i wsf_avx2_errors_at(const unsigned char *q, __m256i input, __m256i t1,
                                         __m256i t2, __m256i t3) {
    /* The shifted copies come from unaligned loads at q-1, q-2, q-3 (q - 3 >= p): loads run on
     * two or three ports, the byte-align shuffles they replace compete with the table lookups
     * for the shuffle port (measured on AVX-512: 11 -> 21 GB/s on mixed text). */
    return wsf_avx2_lookup(input, _mm256_loadu_si256((const __m256i *)(q - 1)),
                           _mm256_loadu_si256((const __m256i *)(q - 2)),
                           _mm256_loadu_si256((const __m256i *)(q - 3)), t1, t2, t3);
}

WSF_TARGET("avx2")
static int wsf_utf8_avx2(const unsigned char *p, size_t n, size_t *tail) {
    const __m256i t1 = _mm256_setr_epi8(WSF_T1, WSF_T1);
    const __m256i t2 = _mm256_setr_epi8(WSF_T2, WSF_T2);
    const __m256i t3 = _mm256_setr_epi8(WSF_T3, WSF_T3);
    /* Non-zero in the last three bytes when a lead there needs bytes beyond the block. */
    const __m256i max_end = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                             -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                             -1, -1, -1, (char)0xEF, (char)0xDF, (char)0xBF);
    const __m256i zero = _mm256_setzero_si256();
    __m256i prev_incomplete = zero, err = zero;
    size_t m = n & ~(size_t)63, i = 0, r = n - m;
    *tail = 0;
    if (m) {
        __m256i a = _mm256_loadu_si256((const __m256i *)p);
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + 32));
        if (_mm256_movemask_epi8(_mm256_or_si256(a, b))) {
            err = _mm256_or_si256(wsf_avx2_errors(a, zero, t1, t2, t3),
                                  wsf_avx2_errors(b, a, t1, t2, t3));
            prev_incomplete = _mm256_subs_epu8(b, max_end);
        }
        i = 64;
    }
    for (; i < m; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        if (_mm256_movemask_epi8(_mm256_or_si256(a, b)) == 0) {
            /* All ASCII: only a sequence left open by the previous block can be wrong. */
            err = _mm256_or_si256(err, prev_incomplete);
            prev_incomplete = zero;
        } else {
            err = _mm256_or_si256(err, wsf_avx2_errors_at(p + i, a, t1, t2, t3));
            err = _mm256_or_si256(err, wsf_avx2_errors_at(p + i + 32, b, t1, t2, t3));
            prev_incomplete = _mm256_subs_epu8(b, max_end);
        }
        if (((i + 64) & 4095) == 0 && !_mm256_testz_si256(err, err)) break; /* fail fast */
    }
    /* Errors inside whole blocks are final: each was found between real bytes. */
    if (!_mm256_testz_si256(err, err)) {
        _mm256_zeroupper();
        return 0;
    }
    if (r && n >= 67) {
        /* The last 64 bytes again, overlapping checked ones (re-checking is harmless); the
         * shifted loads stay inside the buffer since n - 67 >= 0. */
        const unsigned char *q = p + n - 64;
        __m256i a = _mm256_loadu_si256((const __m256i *)q);
        __m256i b = _mm256_loadu_si256((const __m256i *)(q + 32));
        __m256i e = _mm256_or_si256(wsf_avx2_errors_at(q, a, t1, t2, t3),
                                    wsf_avx2_errors_at(q + 32, b, t1, t2, t3));
        if (!_mm256_testz_si256(e, e)) {
            _mm256_zeroupper();
            return 0;
        }
        prev_incomplete = _mm256_subs_epu8(b, max_end);
    } else if (r) {
        /* 16..66 bytes: a zero-padded copy. A sequence still open at the end meets the padding
         * as an error, and only then does the exact (scalar) verdict run. */
        unsigned char buf[64];
        memset(buf, 0, sizeof buf);
        memcpy(buf, p + m, r);
        __m256i f0 = _mm256_loadu_si256((const __m256i *)buf);
        __m256i f1 = _mm256_loadu_si256((const __m256i *)(buf + 32));
        __m256i last = m ? _mm256_loadu_si256((const __m256i *)(p + m - 32)) : zero;
        prev_incomplete = _mm256_or_si256(wsf_avx2_errors(f0, last, t1, t2, t3),
                                          wsf_avx2_errors(f1, f0, t1, t2, t3));
    }
    {
        int clean = _mm256_testz_si256(prev_incomplete, prev_incomplete);
        _mm256_zeroupper();
        if (clean) return 1;
    }
    {
        size_t s = wsf_utf8_resume(p, m);
        return wsf_utf8_scalar(p + s, n - s, tail);
    }
}

/* ---- AVX-512BW --------------------------------------------------------------------------- */

WSF_TARGET("avx512f,avx512bw")
static inline __m512i wsf_avx512_lookup(__m512i input, __m512i prev1, __m512i prev2,
                                        __m512i prev3, __m512i t1, __m512i t2, __m512i t3) {
    const __m512i nib = _mm512_set1_epi8(0x0F);
    __m512i sc = _mm512_and_si512(
        _mm512_and_si512(
            _mm512_shuffle_epi8(t1, _mm512_and_si512(_mm512_srli_epi16(prev1, 4), nib)),
            _mm512_shuffle_epi8(t2, _mm512_and_si512(prev1, nib))),
        _mm512_shuffle_epi8(t3, _mm512_and_si512(_mm512_srli_epi16(input, 4), nib)));
    __m512i must23 = _mm512_or_si512(_mm512_subs_epu8(prev2, _mm512_set1_epi8(0x60)),
                                     _mm512_subs_epu8(prev3, _mm512_set1_epi8(0x70)));
    return _mm512_xor_si512(_mm512_and_si512(must23, _mm512_set1_epi8((char)0x80)), sc);
}

WSF_TARGET("avx512f,avx512bw")
static inline __m512i wsf_avx512_errors(__m512i input, __m512i prev_input, __m512i t1,
                                        __m512i t2, __m512i t3) {
    /* Lane k of `carry` is lane k-1 of input (lane 0: the last lane of the previous block), so a
     * per-lane byte align yields the input shifted across the whole 64 bytes. */
    __m512i carry = _mm512_alignr_epi64(input, prev_input, 6);
    return wsf_avx512_lookup(input, _mm512_alignr_epi8(input, carry, 15),
                             _mm512_alignr_epi8(input, carry, 14),
                             _mm512_alignr_epi8(input, carry, 13), t1, t2, t3);
}

WSF_TARGET("avx512f,avx512bw")
static inline __m512i wsf_avx512_errors_at(const unsigned char *q, __m512i input, __m512i t1,
                                           __m512i t2, __m512i t3) {
    /* As wsf_avx2_errors_at: shifted copies by unaligned loads (q - 3 >= p). */
    return wsf_avx512_lookup(input, _mm512_loadu_si512((const void *)(q - 1)),
                             _mm512_loadu_si512((const void *)(q - 2)),
                             _mm512_loadu_si512((const void *)(q - 3)), t1, t2, t3);
}

WSF_TARGET("avx512f,avx512bw")
static int wsf_utf8_avx512(const unsigned char *p, size_t n, size_t *tail) {
    const __m512i t1 = _mm512_broadcast_i32x4(_mm_setr_epi8(WSF_T1));
    const __m512i t2 = _mm512_broadcast_i32x4(_mm_setr_epi8(WSF_T2));
    const __m512i t3 = _mm512_broadcast_i32x4(_mm_setr_epi8(WSF_T3));
    const __m512i max_end = _mm512_inserti32x4(
        _mm512_set1_epi8(-1),
        _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, (char)0xEF, (char)0xDF,
                      (char)0xBF),
        3);
    const __m512i hi = _mm512_set1_epi8((char)0x80);
    const __m512i zero = _mm512_setzero_si512();
    __m512i prev_incomplete = zero, err = zero;
    size_t m = n & ~(size_t)63, i = 0, r = n - m;
    *tail = 0;
    if (m) {
        __m512i a = _mm512_loadu_si512((const void *)p);
        if (_mm512_test_epi8_mask(a, hi)) {
            err = wsf_avx512_errors(a, zero, t1, t2, t3);
            prev_incomplete = _mm512_subs_epu8(a, max_end);
        }
        i = 64;
    }
    while (i < m) {
        if (i + 128 <= m) {
            /* Two blocks a step: ASCII text costs one OR and one test per 128 bytes. */
            __m512i a = _mm512_loadu_si512((const void *)(p + i));
            __m512i b = _mm512_loadu_si512((const void *)(p + i + 64));
            if (!_mm512_test_epi8_mask(_mm512_or_si512(a, b), hi)) {
                err = _mm512_or_si512(err, prev_incomplete);
                prev_incomplete = zero;
            } else {
                err = _mm512_or_si512(err, wsf_avx512_errors_at(p + i, a, t1, t2, t3));
                err = _mm512_or_si512(err, wsf_avx512_errors_at(p + i + 64, b, t1, t2, t3));
                prev_incomplete = _mm512_subs_epu8(b, max_end);
            }
            i += 128;
        } else {
            __m512i a = _mm512_loadu_si512((const void *)(p + i));
            if (!_mm512_test_epi8_mask(a, hi)) {
                err = _mm512_or_si512(err, prev_incomplete);
                prev_incomplete = zero;
            } else {
                err = _mm512_or_si512(err, wsf_avx512_errors_at(p + i, a, t1, t2, t3));
                prev_incomplete = _mm512_subs_epu8(a, max_end);
            }
            i += 64;
        }
        if ((i & 4095) == 0 && _mm512_test_epi8_mask(err, err)) break; /* fail fast */
    }
    if (_mm512_test_epi8_mask(err, err)) {
        _mm256_zeroupper();
        return 0; /* errors inside whole blocks are final */
    }
    if (r) {
        /* Last 1..63 bytes by a masked (fault-free) load, zero-padded: a sequence still open at
         * the end meets the padding as an error, and only then does the exact verdict run. */
        __m512i f = _mm512_maskz_loadu_epi8(((__mmask64)1 << r) - 1, (const void *)(p + m));
        __m512i last = m ? _mm512_loadu_si512((const void *)(p + m - 64)) : zero;
        prev_incomplete = _mm512_test_epi8_mask(f, hi) || _mm512_test_epi8_mask(last, hi)
                              ? wsf_avx512_errors(f, last, t1, t2, t3)
                              : zero;
    }
    {
        int clean = !_mm512_test_epi8_mask(prev_incomplete, prev_incomplete);
        _mm256_zeroupper();
        if (clean) return 1;
    }
    {
        size_t s = wsf_utf8_resume(p, m);
        return wsf_utf8_scalar(p + s, n - s, tail);
    }
}

static int wsf_utf8_cpu_level_probe(void);

/* CPUID traps to the hypervisor on a virtual machine (tens of microseconds measured here):
 * probe once. */
static int wsf_utf8_cpu_level(void) {
    static int level = -1;
    if (level < 0) level = wsf_utf8_cpu_level_probe();
    return level;
}

static int wsf_utf8_cpu_level_probe(void) {
    /* 0 = none, 2 = AVX2, 3 = AVX-512BW; XCR0 must show the OS saves the wide registers. */
    unsigned int ebx7 = 0;
    unsigned long long xcr0 = 0;
#if defined(_MSC_VER) && !defined(__clang__)
    int ri[4];
    __cpuid(ri, 0);
    if (ri[0] < 7) return 0;
    __cpuid(ri, 1);
    if (!(ri[2] & (1 << 27))) return 0; /* OSXSAVE */
    xcr0 = _xgetbv(0);
    __cpuidex(ri, 7, 0);
    ebx7 = (unsigned int)ri[1];
#else
    unsigned int a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    if (a < 7) return 0;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    if (!(c & (1u << 27))) return 0;
    {
        unsigned int lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    ebx7 = b;
#endif
    if ((xcr0 & 0x6) != 0x6 || !(ebx7 & (1u << 5))) return 0;
    if ((xcr0 & 0xe6) == 0xe6 && (ebx7 & (1u << 16)) && (ebx7 & (1u << 30))) return 3;
    return 2;
}
#endif /* WSF_X86_64 */

#ifdef WSF_NEON
/* ---- NEON -------------------------------------------------------------------------------- */

static inline uint8x16_t wsf_neon_errors(uint8x16_t input, uint8x16_t prev_input, uint8x16_t t1,
                                         uint8x16_t t2, uint8x16_t t3) {
    const uint8x16_t nib = vdupq_n_u8(0x0F);
    uint8x16_t prev1 = vextq_u8(prev_input, input, 15);
    uint8x16_t prev2 = vextq_u8(prev_input, input, 14);
    uint8x16_t prev3 = vextq_u8(prev_input, input, 13);
    uint8x16_t sc = vandq_u8(vandq_u8(vqtbl1q_u8(t1, vshrq_n_u8(prev1, 4)),
                                      vqtbl1q_u8(t2, vandq_u8(prev1, nib))),
                             vqtbl1q_u8(t3, vshrq_n_u8(input, 4)));
    uint8x16_t must23 = vorrq_u8(vqsubq_u8(prev2, vdupq_n_u8(0x60)),
                                 vqsubq_u8(prev3, vdupq_n_u8(0x70)));
    return veorq_u8(vandq_u8(must23, vdupq_n_u8(0x80)), sc);
}

static int wsf_utf8_neon(const unsigned char *p, size_t n, size_t *tail) {
    if (n < WSF_UTF8_VECTOR_FROM) return wsf_utf8_scalar(p, n, tail);
    static const int8_t k1[16] = {WSF_T1}, k2[16] = {WSF_T2}, k3[16] = {WSF_T3};
    static const uint8_t kend[16] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xEF, 0xDF, 0xBF};
    const uint8x16_t t1 = vreinterpretq_u8_s8(vld1q_s8(k1));
    const uint8x16_t t2 = vreinterpretq_u8_s8(vld1q_s8(k2));
    const uint8x16_t t3 = vreinterpretq_u8_s8(vld1q_s8(k3));
    const uint8x16_t max_end = vld1q_u8(kend);
    uint8x16_t prev = vdupq_n_u8(0), prev_incomplete = vdupq_n_u8(0), err = vdupq_n_u8(0);
    size_t m = n & ~(size_t)63, i;
    for (i = 0; i < m; i += 64) {
        uint8x16_t a = vld1q_u8(p + i), b = vld1q_u8(p + i + 16);
        uint8x16_t c = vld1q_u8(p + i + 32), d = vld1q_u8(p + i + 48);
        if (vmaxvq_u8(vorrq_u8(vorrq_u8(a, b), vorrq_u8(c, d))) < 0x80) {
            err = vorrq_u8(err, prev_incomplete);
            prev_incomplete = vdupq_n_u8(0);
        } else {
            err = vorrq_u8(err, wsf_neon_errors(a, prev, t1, t2, t3));
            err = vorrq_u8(err, wsf_neon_errors(b, a, t1, t2, t3));
            err = vorrq_u8(err, wsf_neon_errors(c, b, t1, t2, t3));
            err = vorrq_u8(err, wsf_neon_errors(d, c, t1, t2, t3));
            prev_incomplete = vqsubq_u8(d, max_end);
        }
        prev = d;
        if ((i & 4095) == 4032 && vmaxvq_u8(err) != 0) break; /* fail fast */
    }
    if (vmaxvq_u8(err) != 0) return 0;
    {
        size_t s = wsf_utf8_resume(p, m);
        return wsf_utf8_scalar(p + s, n - s, tail);
    }
}
#endif /* WSF_NEON */

static wsf_utf8_fn wsf_utf8_impl = wsf_utf8_scalar;
static const char *wsf_utf8_impl_name = "scalar";

/* force: NULL picks the best kernel the CPU has; a name pins a kernel that the CPU supports
 * (tests run each of them). Returns 0 when the forced kernel is not available. */
static int wsf_utf8_init(const char *force) {
    wsf_utf8_fn fn = wsf_utf8_scalar;
    const char *name = "scalar";
    int found = force == NULL || strcmp(force, "scalar") == 0;
#if defined(WSF_X86_64)
    int level = wsf_utf8_cpu_level();
    if (level >= 2 && (force == NULL || strcmp(force, "avx2") == 0)) {
        fn = wsf_utf8_avx2;
        name = "avx2";
        found = 1;
    }
    if (level >= 3 && (force == NULL || strcmp(force, "avx512") == 0)) {
        fn = wsf_utf8_avx512;
        name = "avx512";
        found = 1;
    }
#elif defined(WSF_NEON)
    if (force == NULL || strcmp(force, "neon") == 0) {
        fn = wsf_utf8_neon;
        name = "neon";
        found = 1;
    }
#endif
    if (!found) return 0;
    wsf_utf8_impl = fn;
    wsf_utf8_impl_name = name;
    return 1;
}

/* The entry point: short inputs go straight to the scalar decoder, whatever the kernel. */
static inline int wsf_utf8_check(const unsigned char *p, size_t n, size_t *tail) {
    if (n < WSF_UTF8_VECTOR_FROM) return wsf_utf8_scalar(p, n, tail);
    return wsf_utf8_impl(p, n, tail);
}

#endif /* WSFAST_UTF8_H */
