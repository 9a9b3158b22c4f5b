/* Cross-checks every masking kernel of wsfast_mask.h against a byte loop, including that
 * nothing is written outside the output range. For kernels the build host cannot run, e.g.
 * NEON under qemu:
 *   aarch64-linux-gnu-gcc -O2 -I../src kernel_check.c -o kc && qemu-aarch64 -L /usr/aarch64-linux-gnu ./kc
 *   cc -O2 -I../src kernel_check.c -o kc && ./kc          (x86-64: SSE2, AVX2, AVX-512 if present)
 */
#include <stdio.h>
#include <stdlib.h>

#include "wsfast_mask.h"

static int check(const char *name, wsf_mask_fn fn) {
    static unsigned char src[70000], dst[70100], ref[70100];
    long failures = 0;
    for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)(i * 131 + 7);
    for (int it = 0; it < 3000; it++) {
        size_t n = it < 600 ? (size_t)it : (size_t)(rand() % 66000);
        size_t so = (size_t)(rand() % 64), doff = (size_t)(rand() % 64);
        uint32_t key = (uint32_t)rand() * 2654435761u;
        unsigned char k[4];
        memcpy(k, &key, 4);
        memset(dst, 0x5a, sizeof dst);
        memset(ref, 0x5a, sizeof ref);
        for (size_t i = 0; i < n; i++) ref[doff + i] = (unsigned char)(src[so + i] ^ k[i & 3]);
        fn(src + so, dst + doff, n, key);
        if (memcmp(dst, ref, sizeof dst) != 0 && failures++ < 5)
            fprintf(stderr, "%s: n=%zu src+%zu dst+%zu differs\n", name, n, so, doff);
        /* In place. */
        memcpy(dst, src, n + 64);
        fn(dst + so, dst + so, n, key);
        for (size_t i = 0; i < n; i++)
            if (dst[so + i] != (unsigned char)(src[so + i] ^ k[i & 3])) {
                if (failures++ < 5) fprintf(stderr, "%s: in place n=%zu at %zu\n", name, n, i);
                break;
            }
    }
    printf("%s: %s\n", name, failures ? "FAILED" : "ok");
    return failures != 0;
}

/* wsf_mask_pieces: a payload cut into random pieces at random source offsets, unmasked in one
 * pass into one output, against the byte loop over the whole (the key phase carries on). */
static int check_pieces(void) {
    static unsigned char src[70000], dst[70100], ref[70100];
    const unsigned char *srcs[8];
    size_t lens[8];
    long failures = 0;
    for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)(i * 197 + 3);
    for (int it = 0; it < 3000; it++) {
        size_t count = (size_t)(rand() % 8) + 1, total = 0, from = 0;
        uint32_t key = (uint32_t)rand() * 2654435761u;
        unsigned char k[4];
        memcpy(k, &key, 4);
        for (size_t p = 0; p < count; p++) {
            lens[p] = it < 600 ? (size_t)(rand() % 70) : (size_t)(rand() % 8000);
            from = (size_t)(rand() % 64);
            srcs[p] = src + from + total; /* pieces need not be adjacent: shift each one */
            total += lens[p];
        }
        memset(dst, 0x5a, sizeof dst);
        memset(ref, 0x5a, sizeof ref);
        for (size_t p = 0, at = 0; p < count; p++)
            for (size_t i = 0; i < lens[p]; i++, at++)
                ref[3 + at] = (unsigned char)(srcs[p][i] ^ k[at & 3]);
        wsf_mask_pieces(srcs, lens, count, dst + 3, key);
        if (memcmp(dst, ref, sizeof dst) != 0 && failures++ < 5)
            fprintf(stderr, "pieces: %zu pieces, %zu bytes differ\n", count, total);
    }
    printf("pieces (%s): %s\n", wsf_mask_impl_name, failures ? "FAILED" : "ok");
    return failures != 0;
}

int main(void) {
    int bad = check("words", wsf_mask_words);
#if defined(WSF_X86_64)
    int level = wsf_cpu_level();
    bad |= check("sse2", wsf_mask_sse2);
    if (level >= 2) bad |= check("avx2", wsf_mask_avx2);
    if (level >= 3) bad |= check("avx512", wsf_mask_avx512);
#elif defined(WSF_NEON)
    bad |= check("neon", wsf_mask_neon);
#endif
    wsf_mask_init(NULL);
    bad |= check_pieces();
    wsf_mask_init("words");
    bad |= check_pieces();
    return bad;
}
