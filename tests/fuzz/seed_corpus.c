/*
 * seed_corpus CORPORA_DIR OUT_DIR: writes every case of the llhttp
 * corpora in tests/corpora/ (llhttp-requests.json, llhttp-responses.json; format in their
 * README.md) as one raw file per case into OUT_DIR, to seed the libFuzzer
 * corpus of tests/fuzz/fuzz_http1.c. Request cases with a host_added_b64
 * variant get a second file. A few chunked bodies are added too.
 *
 * Exit status: 0 done, 1 on any error (message on stderr).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tests/tools/b64.h"

static int
write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if ((f = fopen(path, "wb")) == NULL) {
        perror(path);
        return -1;
    }
    if (fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

static int
write_b64(const char *dir, const char *name, const char *b64)
{
    unsigned char *bytes;
    size_t n;
    int rc;

    if ((bytes = tb64_decode(b64, &n)) == NULL) {
        fprintf(stderr, "seed_corpus: %s: bad base64\n", name);
        return -1;
    }
    rc = write_file(dir, name, bytes, n);
    free(bytes);
    return rc;
}

/* Writes the cases of <file> as <prefix>-<index>[-host]; returns the count or -1. */
static int
seed_file(const char *corpora, const char *file, const char *prefix, const char *out)
{
    char path[4096], name[64];
    json_error_t jerr;
    json_t *root, *cases, *c;
    const char *b64;
    size_t i;
    int count = 0;

    snprintf(path, sizeof path, "%s/%s", corpora, file);
    if ((root = json_load_file(path, 0, &jerr)) == NULL) {
        fprintf(stderr, "seed_corpus: %s: %s\n", path, jerr.text);
        return -1;
    }
    cases = json_object_get(root, "cases");
    json_array_foreach(cases, i, c) {
        if ((b64 = json_string_value(json_object_get(c, "bytes_b64"))) == NULL)
            continue;
        snprintf(name, sizeof name, "%s-%03zu", prefix, i);
        if (write_b64(out, name, b64) < 0)
            goto fail;
        count++;
        if ((b64 = json_string_value(json_object_get(c, "host_added_b64"))) != NULL) {
            snprintf(name, sizeof name, "%s-%03zu-host", prefix, i);
            if (write_b64(out, name, b64) < 0)
                goto fail;
            count++;
        }
    }
    json_decref(root);
    return count;

fail:
    json_decref(root);
    return -1;
}

int
main(int argc, char **argv)
{
    static const char *const bodies[] = {
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5;a=b;c=\"q\\\"x\"\r\nhello\r\n0\r\nX: y\r\n\r\n",
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-a, close\r\n"
        "X-A: 1\r\n\r\n1e\r\nall your base are belong to us\r\n0\r\n\r\n",
    };
    char name[32];
    int n, m, total;
    size_t i;

    if (argc != 3) {
        fprintf(stderr, "usage: seed_corpus CORPORA_DIR OUT_DIR\n");
        return 1;
    }
    if ((n = seed_file(argv[1], "llhttp-requests.json", "req", argv[2])) < 0 ||
        (m = seed_file(argv[1], "llhttp-responses.json", "resp", argv[2])) < 0)
        return 1;
    total = n + m;
    for (i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        snprintf(name, sizeof name, "extra-%zu", i);
        if (write_file(argv[2], name, bodies[i], strlen(bodies[i])) < 0)
            return 1;
        total++;
    }
    printf("seed_corpus: %d files in %s\n", total, argv[2]);
    return 0;
}
