/*
 * libFuzzer target for health/diff.c: the JSON normaliser and the
 * comparison of two captured responses.
 *
 * The input is two bodies: its first byte says where the second begins.
 * Each is captured as JSON (with a few ignore_json paths), once whole and
 * once fed in pieces whose sizes come from the data; then:
 *   - a capture equals itself, and the piecewise capture equals the whole;
 *   - the comparison is symmetric (the same number of differing fields);
 *   - once the differences of a and b are learned as noise, a and b match
 *     (unless the noise set is full);
 *   - the same holds for bytes captures.
 * Any difference calls abort(). Memory is bounded by max_bytes per body.
 * Built and run by tests/fuzz/run.sh.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health/diff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_diff: %s\n", what);
        abort();
    }
}

static void
capture(struct hl_diff_resp *r, const struct hl_diff_conf *c, const uint8_t *p, size_t n,
        size_t step)
{
    size_t i;

    hl_diff_resp_init(r, c);
    hl_diff_resp_status(r, 200);
    hl_diff_resp_header(r, c, "X-A", 3, (const char *)p, n < 8 ? n : 8);
    for (i = 0; i < n; i += step)
        hl_diff_resp_body(r, c, p + i, n - i < step ? n - i : step);
    hl_diff_resp_end(r, c);
}

static void
run(const struct hl_diff_conf *c, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
    size_t step)
{
    struct hl_diff_resp ra, rb, ra2;
    struct hl_diff_out o1, o2;
    struct hl_noise *noise = calloc(1, sizeof(*noise));

    check(noise != NULL, "out of memory");
    capture(&ra, c, a, na, na + 1);
    capture(&ra2, c, a, na, step);
    capture(&rb, c, b, nb, step);
    check(hl_diff_compare(c, &ra, &ra, NULL, &o1) == 0, "a capture differs from itself");
    check(hl_diff_compare(c, &ra, &ra2, NULL, &o1) == 0, "pieces differ from the whole");
    check(ra.json == ra2.json && ra.nleaves == ra2.nleaves, "pieces parse otherwise");
    hl_diff_compare(c, &ra, &rb, NULL, &o1);
    hl_diff_compare(c, &rb, &ra, NULL, &o2);
    check(o1.total == o2.total, "the comparison is not symmetric");
    check(o1.n <= HL_DIFF_FIELDS_MAX && o1.n <= o1.total, "more fields shown than found");
    hl_diff_learn(c, &ra, &rb, noise);
    if (!noise->full) {
        hl_diff_compare(c, &ra, &rb, noise, &o2);
        check(o2.total == 0, "learned noise leaves a difference");
        check(o2.noise == o1.total, "noise does not account for every difference");
    }
    hl_diff_resp_free(&ra);
    hl_diff_resp_free(&ra2);
    hl_diff_resp_free(&rb);
    free(noise);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct hl_diff_conf c;
    size_t split, step;

    if (size < 2)
        return 0;
    split = 2 + data[0] % (size - 1);
    if (split > size)
        split = size;
    step = 1 + data[1] % 17;
    memset(&c, 0, sizeof(c));
    c.status = true;
    c.nheaders = 1;
    snprintf(c.headers[0], sizeof(c.headers[0]), "x-a");
    c.max_bytes = 4096;
    c.body = HL_DIFF_BODY_JSON;
    c.nignore_json = 3;
    snprintf(c.ignore_json[0], sizeof(c.ignore_json[0]), "$.ts");
    snprintf(c.ignore_json[1], sizeof(c.ignore_json[1]), "$.items[*].id");
    snprintf(c.ignore_json[2], sizeof(c.ignore_json[2]), "$[0].*");
    run(&c, data + 2, split - 2, data + split, size - split, step);
    c.body = HL_DIFF_BODY_BYTES;
    c.nignore_json = 0;
    run(&c, data + 2, split - 2, data + split, size - split, step);
    return 0;
}
