/*
 * health/probe: the pure half of the active checks (health/check.c is the
 * I/O half): rise/fall counting, the delay before the next check (interval,
 * fast interval while a verdict is changing, jitter), and an incremental
 * reader of one HTTP/1.x check response. Pure: libc only, no clock (delays
 * are returned, not waited), no I/O, no allocation, no logging, so every
 * rule is a unit test (tests/unit/test_hl_check.c).
 */
#ifndef CUTOVER_HEALTH_PROBE_H
#define CUTOVER_HEALTH_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- rise / fall ------------------------------------------------------ */

/* The verdict of one server from the results of its checks. A verdict
 * changes only after <rise> consecutive passes (down -> up) or <fall>
 * consecutive failures (up -> down); one result that agrees with the
 * current verdict starts the count again. So a server that alternates
 * pass/fail keeps its verdict (with rise and fall >= 2): flapping does not
 * move traffic.
 *
 * Initial state (hl_risefall_init with <is_up> true, what the checker uses):
 * a server starts up, so traffic flows from the first request, and is
 * marked down after <fall> failed checks, as docs/DESIGN.md says. */
struct hl_risefall {
    unsigned rise, fall;         /* from the config, >= 1 */
    bool is_up;                  /* the current verdict */
    unsigned run;                /* consecutive results against the verdict:
                                  * passes while down (< rise), failures while
                                  * up (< fall) */
};

void hl_risefall_init(struct hl_risefall *rf, unsigned rise, unsigned fall, bool is_up);

/* Feeds the result of one check. Returns true when the verdict changed
 * (rf->is_up is then the new verdict and rf->run is 0). */
bool hl_risefall_push(struct hl_risefall *rf, bool passed);

/* True while the verdict is changing: between the first result against it
 * and the change (the checker then checks at the fast interval). */
bool hl_risefall_is_changing(const struct hl_risefall *rf);

/* ---- scheduling ------------------------------------------------------- */

#define HL_FAST_MIN_MS  100u     /* the fast interval is never below this... */
#define HL_FAST_DIV     4u       /* ...and is interval / HL_FAST_DIV otherwise */
#define HL_JITTER_PCT   10u      /* each delay is drawn in base +- 10 % */

/* The fast interval of <interval_ms>: interval / 4, at least 100 ms, at
 * most the interval itself. With the defaults (2000 ms, fall 3) a server
 * that stops answering is down about 2 s + 2 x 500 ms after its last pass
 * instead of 6 s. */
unsigned hl_fast_interval_ms(unsigned interval_ms);

/* The delay from the start of one check to the start of the next: the
 * interval (the fast interval when <is_changing>), moved by a uniform draw
 * in +-HL_JITTER_PCT % so that the checks of many servers drift apart
 * instead of aligning. <*rng> is a splitmix64 state, advanced. */
unsigned hl_next_delay_ms(unsigned interval_ms, bool is_changing, uint64_t *rng);

/* The delay before the very first check: uniform in [0, interval), so that
 * the servers of a fleet started together are spread over one interval. */
unsigned hl_first_delay_ms(unsigned interval_ms, uint64_t *rng);

/* splitmix64: advances <*state> and returns a uniform 64-bit draw. */
uint64_t hl_rand(uint64_t *state);

/* ---- HTTP check response ----------------------------------------------- */

#define HL_RESP_HEAD_MAX  16384u /* bytes of response head (interim ones included) */
#define HL_RESP_BODY_MAX  16384u /* body bytes kept for body_contains; reading
                                  * stops there */
#define HL_RESP_LINE_MAX  8192u  /* one head line or chunk-size line */

enum hl_resp_rc {
    HL_RESP_AGAIN,               /* more bytes needed */
    HL_RESP_DONE,                /* status (and body when wanted) complete */
    HL_RESP_BAD,                 /* not a valid response: see r->err */
};

enum hl_resp_phase {             /* internal; order not relied on */
    HL_RP_STATUS, HL_RP_HEADER, HL_RP_BODY_LENGTH, HL_RP_BODY_CLOSE,
    HL_RP_CHUNK_SIZE, HL_RP_CHUNK_DATA, HL_RP_CHUNK_CRLF, HL_RP_TRAILER,
    HL_RP_DONE, HL_RP_BAD,
};

/* The reader of one response. Lenient where a health check can afford it
 * (lines may end in a bare LF), strict where the framing is ambiguous (two
 * differing Content-Lengths, a malformed chunk size) and bounded
 * everywhere: HL_RESP_HEAD_MAX bytes of head, HL_RESP_LINE_MAX per line,
 * HL_RESP_BODY_MAX bytes of body. Interim 1xx responses are skipped; a 101
 * is an error (nobody asked to switch). Big (about 24 KiB): allocate it. */
struct hl_resp {
    bool is_head;                /* the request was HEAD: no body follows */
    bool want_body;              /* keep the body; false: done after the head */
    int status;                  /* final status, 0 until its head is read */
    char body[HL_RESP_BODY_MAX + 1];  /* NUL-terminated; may hold NULs */
    size_t body_len;
    bool body_cut;               /* the body went on past HL_RESP_BODY_MAX */
    const char *err;             /* static reason once HL_RESP_BAD */
    /* parser state */
    enum hl_resp_phase phase;
    bool seen_bytes;             /* at least one byte arrived */
    bool is_chunked;
    bool has_length;
    uint64_t length;             /* Content-Length */
    uint64_t left;               /* bytes left of the body or of the chunk */
    size_t head_bytes;
    size_t line_len;
    char line[HL_RESP_LINE_MAX];
};

/* Prepares <r> for a response to a request that was HEAD (<is_head>),
 * keeping the body when <want_body>. */
void hl_resp_init(struct hl_resp *r, bool is_head, bool want_body);

/* Feeds <n> bytes at <p>; returns the state after them. Once DONE or BAD,
 * further bytes are ignored (the caller closes the connection). Sets
 * *<used> to the bytes consumed when not NULL. */
enum hl_resp_rc hl_resp_feed(struct hl_resp *r, const char *p, size_t n, size_t *used);

/* The peer closed: ends a close-delimited body (DONE); anything else
 * incomplete is BAD. */
enum hl_resp_rc hl_resp_eof(struct hl_resp *r);

/* True when <needle> (NUL-terminated, not empty) occurs in the kept body. */
bool hl_resp_body_has(const struct hl_resp *r, const char *needle);

#endif
