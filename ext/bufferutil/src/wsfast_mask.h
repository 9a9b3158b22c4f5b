/* WebSocket masking kernels (RFC 6455 section 5.3) for wsfast_bufferutil.
 *
 * dst[i] = src[i] ^ key[i & 3] for i in [0, n). src and dst may be the same pointer (unmask in
 * place) or dst may lie before src; the caller handles dst inside (src, src + n).
 *
 * One kernel per instruction set, picked once at import by wsf_mask_init():
 *   x86-64: AVX2 > SSE2 (SSE2 is part of the x86-64 baseline), chosen from CPUID and XCR0 so
 *           an OS that does not save the wide registers never gets them; AVX-512, where
 *           present, for masking into another buffer from 256 KiB on (see WSF_WIDE_FROM);
 *   AArch64: NEON (always present);
 *   elsewhere: 8-byte words, which compilers also vectorise for the baseline ISA.
 * Masking at 64 KiB and above is bound by memory bandwidth; the wide kernels exist so that a
 * buffer that sits in L1/L2 (the usual frame) is masked at the cache's speed, and so that the
 * loop issues as few loads/stores per byte as memcpy does.
 */
#ifndef WSFAST_MASK_H
#define WSFAST_MASK_H

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
#else
#define WSF_TARGET(x)
#endif

typedef void (*wsf_mask_fn)(const unsigned char *src, unsigned char *dst, size_t n,
                            uint32_t key);

/* Bytes after the last whole word: the key phase is i & 3 with i counted from the start. */
static inline void wsf_mask_tail(const unsigned char *src, unsigned char *dst, size_t i,
                                 size_t n, uint32_t key) {
    unsigned char k[4];
    memcpy(k, &key, 4);
    for (; i < n; i++) dst[i] = (unsigned char)(src[i] ^ k[i & 3]);
}

static void wsf_mask_words(const unsigned char *src, unsigned char *dst, size_t n,
                           uint32_t key) {
    /* memcpy loads/stores: no alignment or aliasing assumptions, and they compile to plain
     * moves. Both the data word and the key word are read in native byte order, so byte j of
     * the word meets key byte j & 3 on either endianness. */
    uint64_t k = ((uint64_t)key << 32) | key;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= k; b ^= k; c ^= k; d ^= k;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t a;
        memcpy(&a, src + i, 8);
        a ^= k;
        memcpy(dst + i, &a, 8);
    }
    wsf_mask_tail(src, dst, i, n, key);
}

#ifdef WSF_X86_64
static void wsf_mask_sse2(const unsigned char *src, unsigned char *dst, size_t n,
                          uint32_t key) {
    const __m128i k = _mm_set1_epi32((int)key);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        /* All loads before any store, so a dst below src that overlaps it is still right. */
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
        _mm_storeu_si128((__m128i *)(dst + i + 16), _mm_xor_si128(b, k));
        _mm_storeu_si128((__m128i *)(dst + i + 32), _mm_xor_si128(c, k));
        _mm_storeu_si128((__m128i *)(dst + i + 48), _mm_xor_si128(d, k));
    }
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, k));
    }
    wsf_mask_words(src + i, dst + i, n - i, key); /* i is a multiple of 4: phase unchanged */
}

/* Key for a run that starts at byte offset `skip` of the frame (little-endian: x86 only). */
static inline uint32_t wsf_key_at(uint32_t key, size_t skip) {
    unsigned r = (unsigned)(skip & 3) * 8;
    return r ? (key >> r) | (key << (32 - r)) : key;
}

/* From this size on the wide kernels first bring dst to a vector boundary: a misaligned
 * 32-byte store splits a cache line every other store, a 64-byte one every time (measured at
 * 64 KiB: AVX-512 unaligned 20 GB/s, aligned as fast as memcpy's ~47 GB/s). */
#define WSF_ALIGN_FROM 256
/* Above this size the output is written with non-temporal stores, as glibc's memcpy does for
 * copies larger than the caches: the output of mask() is sent, not read back, and skipping the
 * read-for-ownership of each line is what lets memcpy reach memory bandwidth. */
#define WSF_STREAM_FROM ((size_t)8 << 20)

WSF_TARGET("avx2")
static void wsf_mask_avx2(const unsigned char *src, unsigned char *dst, size_t n,
                          uint32_t key) {
    size_t i = 0;
    if (n >= WSF_ALIGN_FROM) {
        size_t head = (size_t)(-(uintptr_t)dst) & 31;
        wsf_mask_tail(src, dst, 0, head, key);
        i = head;
        key = wsf_key_at(key, head);
    }
    const __m256i k = _mm256_set1_epi32((int)key);
    if (n - i >= WSF_STREAM_FROM && src != dst) {
        for (; i + 128 <= n; i += 128) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
            __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
            __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
            __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
            _mm256_stream_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
            _mm256_stream_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
            _mm256_stream_si256((__m256i *)(dst + i + 64), _mm256_xor_si256(c, k));
            _mm256_stream_si256((__m256i *)(dst + i + 96), _mm256_xor_si256(d, k));
        }
        _mm_sfence();
    }
    for (; i + 128 <= n; i += 128) {
        /* All loads before any store, so a dst below src that overlaps it is still right. */
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 32), _mm256_xor_si256(b, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 64), _mm256_xor_si256(c, k));
        _mm256_storeu_si256((__m256i *)(dst + i + 96), _mm256_xor_si256(d, k));
    }
    for (; i + 32 <= n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_xor_si256(a, k));
    }
    if (i + 16 <= n) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_xor_si128(a, _mm256_castsi256_si128(k)));
        i += 16;
    }
    /* GCC 12 omits vzeroupper before this tail call into non-VEX code; the dirty upper state
     * then slowed every later SSE instruction in the process (measured: 20 ns -> 135 ns per
     * 16-byte call, and CPython's own memcpy at a third of its speed). */
    _mm256_zeroupper();
    wsf_mask_words(src + i, dst + i, n - i, key);
}

WSF_TARGET("avx512f,avx512bw")
static void wsf_mask_avx512(const unsigned char *src, unsigned char *dst, size_t n,
                            uint32_t key) {
    size_t i = 0;
    __m512i k = _mm512_set1_epi32((int)key);
    if (n >= WSF_ALIGN_FROM) {
        size_t head = (size_t)(-(uintptr_t)dst) & 63;
        if (head) {
            __mmask64 m = ((__mmask64)1 << head) - 1;
            __m512i a = _mm512_maskz_loadu_epi8(m, (const void *)src);
            _mm512_mask_storeu_epi8((void *)dst, m, _mm512_xor_si512(a, k));
            i = head;
            k = _mm512_set1_epi32((int)wsf_key_at(key, head));
        }
        if (n - i >= WSF_STREAM_FROM && src != dst) {
            for (; i + 256 <= n; i += 256) {
                __m512i a = _mm512_loadu_si512((const void *)(src + i));
                __m512i b = _mm512_loadu_si512((const void *)(src + i + 64));
                __m512i c = _mm512_loadu_si512((const void *)(src + i + 128));
                __m512i d = _mm512_loadu_si512((const void *)(src + i + 192));
                _mm512_stream_si512((void *)(dst + i), _mm512_xor_si512(a, k));
                _mm512_stream_si512((void *)(dst + i + 64), _mm512_xor_si512(b, k));
                _mm512_stream_si512((void *)(dst + i + 128), _mm512_xor_si512(c, k));
                _mm512_stream_si512((void *)(dst + i + 192), _mm512_xor_si512(d, k));
            }
            _mm_sfence();
        }
    }
    for (; i + 256 <= n; i += 256) {
        __m512i a = _mm512_loadu_si512((const void *)(src + i));
        __m512i b = _mm512_loadu_si512((const void *)(src + i + 64));
        __m512i c = _mm512_loadu_si512((const void *)(src + i + 128));
        __m512i d = _mm512_loadu_si512((const void *)(src + i + 192));
        _mm512_storeu_si512((void *)(dst + i), _mm512_xor_si512(a, k));
        _mm512_storeu_si512((void *)(dst + i + 64), _mm512_xor_si512(b, k));
        _mm512_storeu_si512((void *)(dst + i + 128), _mm512_xor_si512(c, k));
        _mm512_storeu_si512((void *)(dst + i + 192), _mm512_xor_si512(d, k));
    }
    for (; i + 64 <= n; i += 64) {
        __m512i a = _mm512_loadu_si512((const void *)(src + i));
        _mm512_storeu_si512((void *)(dst + i), _mm512_xor_si512(a, k));
    }
    if (i < n) {
        /* One masked load/store for the last 1..63 bytes instead of a byte loop. */
        __mmask64 m = ((__mmask64)1 << (n - i)) - 1;
        __m512i a = _mm512_maskz_loadu_epi8(m, (const void *)(src + i));
        _mm512_mask_storeu_epi8((void *)(dst + i), m, _mm512_xor_si512(a, k));
    }
    _mm256_zeroupper();
}

static int wsf_cpu_level_probe(void);

/* CPUID traps to the hypervisor on a virtual machine (tens of microseconds measured here):
 * probe once. */
static int wsf_cpu_level(void) {
    static int level = -1;
    if (level < 0) level = wsf_cpu_level_probe();
    return level;
}

static int wsf_cpu_level_probe(void) {
    /* 0 = SSE2, 2 = AVX2, 3 = AVX-512F+BW. XCR0 must show the OS saves the registers. */
    unsigned int r[4] = {0, 0, 0, 0};
    unsigned long long xcr0 = 0;
#if defined(_MSC_VER) && !defined(__clang__)
    int ri[4];
    __cpuid(ri, 0);
    if (ri[0] < 7) return 0;
    __cpuid(ri, 1);
    if (!(ri[2] & (1 << 27))) return 0; /* OSXSAVE */
    xcr0 = _xgetbv(0);
    __cpuidex(ri, 7, 0);
    r[1] = (unsigned int)ri[1];
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
    r[1] = b;
#endif
    if ((xcr0 & 0x6) != 0x6 || !(r[1] & (1u << 5))) return 0; /* YMM state, AVX2 */
    if ((xcr0 & 0xe6) == 0xe6 && (r[1] & (1u << 16)) && (r[1] & (1u << 30))) return 3;
    return 2;
}
#endif /* WSF_X86_64 */

#ifdef WSF_NEON
static void wsf_mask_neon(const unsigned char *src, unsigned char *dst, size_t n,
                          uint32_t key) {
    const uint8x16_t k = vreinterpretq_u8_u32(vdupq_n_u32(key));
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint8x16_t a = vld1q_u8(src + i);
        uint8x16_t b = vld1q_u8(src + i + 16);
        uint8x16_t c = vld1q_u8(src + i + 32);
        uint8x16_t d = vld1q_u8(src + i + 48);
        vst1q_u8(dst + i, veorq_u8(a, k));
        vst1q_u8(dst + i + 16, veorq_u8(b, k));
        vst1q_u8(dst + i + 32, veorq_u8(c, k));
        vst1q_u8(dst + i + 48, veorq_u8(d, k));
    }
    for (; i + 16 <= n; i += 16) vst1q_u8(dst + i, veorq_u8(vld1q_u8(src + i), k));
    wsf_mask_words(src + i, dst + i, n - i, key);
}
#endif

static wsf_mask_fn wsf_mask_impl = wsf_mask_words;
static const char *wsf_mask_impl_name = "words";
/* Masking into another buffer from this size on uses the AVX-512 kernel when the CPU has it:
 * at 1 MiB its 64-byte stores brought mask() from 1.05x to 1.00-1.03x the time of memcpy,
 * while at 64 KiB and in place AVX2 was as fast or faster (interleaved runs, CPU time). */
#define WSF_WIDE_FROM ((size_t)256 << 10)
static wsf_mask_fn wsf_mask_wide_impl = NULL;

/* The entry point of the module. */
static inline void wsf_mask_run(const unsigned char *src, unsigned char *dst, size_t n,
                                uint32_t key) {
    if (n >= WSF_WIDE_FROM && src != dst && wsf_mask_wide_impl != NULL)
        wsf_mask_wide_impl(src, dst, n, key);
    else
        wsf_mask_impl(src, dst, n, key);
}

/* The key of a run that starts `skip` bytes into a masked payload, on any byte order: a
 * payload received in pieces is unmasked piece by piece with the key rotated to each piece's
 * phase (i & 3 counted from the start of the payload). */
static inline uint32_t wsf_key_skip(uint32_t key, size_t skip) {
    unsigned char k[4], r[4];
    memcpy(k, &key, 4);
    for (unsigned j = 0; j < 4; j++) r[j] = k[(skip + j) & 3];
    memcpy(&key, r, 4);
    return key;
}

/* Unmask the concatenation of `count` pieces into dst (which holds their total length) in one
 * pass, the key phase carrying on across piece boundaries. dst must not overlap the pieces. */
static inline void wsf_mask_pieces(const unsigned char *const *srcs, const size_t *lens,
                                   size_t count, unsigned char *dst, uint32_t key) {
    size_t done = 0;
    for (size_t p = 0; p < count; p++) {
        wsf_mask_run(srcs[p], dst + done, lens[p], wsf_key_skip(key, done));
        done += lens[p];
    }
}

static void wsf_mask_init(const char *force) {
    /* force: NULL for the best kernel, or a name to pin one (tests run every kernel). */
    wsf_mask_fn fn = wsf_mask_words;
    const char *name = "words";
#if defined(WSF_X86_64)
    int level = wsf_cpu_level();
    fn = wsf_mask_sse2;
    name = "sse2";
    if (level >= 2 && !(force && strcmp(force, "sse2") == 0)) {
        fn = wsf_mask_avx2;
        name = "avx2";
    }
    /* AVX-512 as the main kernel only when asked for: on this library's reference host (Xeon,
     * AVX-512BW) it was no faster at 64 KiB, where masking is bound by the caches, and slower
     * in place at 1 MiB (best CPU time of interleaved runs); older Xeons also lower their clock
     * while running 512-bit instructions. It does serve large copies (WSF_WIDE_FROM). */
    if (level >= 3 && force && strcmp(force, "avx512") == 0) {
        fn = wsf_mask_avx512;
        name = "avx512";
    }
#elif defined(WSF_NEON)
    fn = wsf_mask_neon;
    name = "neon";
#endif
    if (force && strcmp(force, "words") == 0) {
        fn = wsf_mask_words;
        name = "words";
    }
    wsf_mask_impl = fn;
    wsf_mask_impl_name = name;
    wsf_mask_wide_impl = NULL; /* a pinned kernel runs alone */
#if defined(WSF_X86_64)
    if (force == NULL && level >= 3) wsf_mask_wide_impl = wsf_mask_avx512;
#endif
}

#endif /* WSFAST_MASK_H */
