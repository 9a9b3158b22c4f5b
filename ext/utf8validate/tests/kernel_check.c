/* Cross-checks every vector kernel of wsfast_utf8.h against the scalar decoder, verdict and
 * tail length alike, on random UTF-8-like inputs. The scalar decoder itself is checked against
 * CPython by the pytest suite; this file exists for kernels the build host cannot run, e.g.
 * NEON under qemu:
 *   aarch64-linux-gnu-gcc -O2 -I../src kernel_check.c -o kc && qemu-aarch64 -L /usr/aarch64-linux-gnu ./kc
 *   cc -O2 -I../src kernel_check.c -o kc && ./kc          (x86-64: AVX2 and AVX-512 if present)
 */
#include <stdio.h>
#include <stdlib.h>

#include "wsfast_utf8.h"

static const char *pieces[] = {
    "a", "x", " ", "\xc3\xa9", "\xdf\xbf", "\xe0\xa0\x80", "\xe2\x82\xac", "\xed\x9f\xbf",
    "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf",
    /* invalid or partial */
    "\x80", "\xbf", "\xc0\xaf", "\xc1", "\xe0\x80", "\xed\xa0", "\xf0\x8f", "\xf4\x90", "\xf5",
    "\xff", "\xc3", "\xe2\x82", "\xf0\x9f\x98"};
#define NPIECES (sizeof pieces / sizeof pieces[0])

static unsigned long long rng = 88172645463325252ULL;
static unsigned next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 11);
}

static int check(const char *name, wsf_utf8_fn fn) {
    static unsigned char buf[9000];
    long failures = 0, invalid = 0;
    for (int it = 0; it < 200000; it++) {
        size_t target = next_rand() % (it % 10 == 0 ? 8000 : 300), n = 0;
        int clean = next_rand() % 3 == 0;
        while (n < target) {
            size_t k = clean ? next_rand() % 13 : (next_rand() % 8 ? next_rand() % 13
                                                                  : next_rand() % NPIECES);
            size_t len = strlen(pieces[k]);
            if (n + len > sizeof buf) break;
            memcpy(buf + n, pieces[k], len);
            n += len;
        }
        if (!clean && n && next_rand() % 4 == 0) buf[next_rand() % n] = (unsigned char)next_rand();
        /* Run on a heap copy of exactly n bytes so an over-read would show under a checker. */
        unsigned char *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        size_t tail_ref = 0, tail = 0;
        int ref = wsf_utf8_scalar(copy, n, &tail_ref);
        int got = fn(copy, n, &tail);
        free(copy);
        invalid += !ref;
        if (ref != got || (ref && tail != tail_ref)) {
            if (failures++ < 5)
                fprintf(stderr, "%s: n=%zu scalar=%d/%zu kernel=%d/%zu\n", name, n, ref, tail_ref,
                        got, tail);
        }
    }
    printf("%s: %s (%ld invalid inputs of 200000)\n", name, failures ? "FAILED" : "ok", invalid);
    return failures != 0;
}

int main(void) {
    int bad = 0;
    wsf_utf8_init(NULL);
    printf("best kernel: %s\n", wsf_utf8_impl_name);
#if defined(WSF_X86_64)
    if (wsf_utf8_init("avx2")) bad |= check("avx2", wsf_utf8_impl);
    if (wsf_utf8_init("avx512")) bad |= check("avx512", wsf_utf8_impl);
#elif defined(WSF_NEON)
    bad |= check("neon", wsf_utf8_neon);
#endif
    return bad;
}
