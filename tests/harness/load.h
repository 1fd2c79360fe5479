/*
 * load: a client load for the fault tests (pool races, soaks, descriptor
 * exhaustion): many keep-alive HTTP/1.1 connections to 127.0.0.1 driven by
 * one poll() loop in the test's own thread, each sending a request, reading
 * its whole response, pausing a seeded random gap and sending the next. Every
 * response is parsed strictly (lib/http1.h: head, then the body by its
 * framing), so a test can tell a well-formed answer from a cut or garbled
 * one, and a clean close from a reset. Bounded: it stops after a number of
 * requests or a time, whichever comes first; a tick callback lets the test
 * act while the load runs (flip a weight, restart a backend).
 */
#ifndef CUTOVER_TESTS_LOAD_H
#define CUTOVER_TESTS_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct h_load;

/* What one request of the load is: its raw bytes (a whole request) and
 * whether its method is HEAD (the response then has no body). */
struct h_load_req {
    const char *raw;
    size_t len;
    bool is_head;
};

struct h_load_conf {
    int port;                    /* 127.0.0.1:<port> */
    unsigned conns;              /* keep-alive connections at a time (<= 1024) */
    unsigned gap_min_ms, gap_max_ms;   /* pause after each answer, uniform */
    unsigned requests;           /* stop sending after this many */
    unsigned duration_ms;        /* and after this long; then the answers still
                                  * awaited get up to 5 s */
    uint64_t seed;               /* gaps and the request draw */
    unsigned connect_first_ms;   /* > 0: every connection is opened at the start and
                                  * sends its first request this much later (the
                                  * server accepts them all first) */
    /* The request to send as the <nth> of the load (rnd: a fresh random
     * draw); NULL: "GET / HTTP/1.1" with a Host field. */
    void (*request)(void *arg, unsigned nth, uint64_t rnd, struct h_load_req *out);
    /* Called about every <tick_ms> ms (0: never) with the time since the
     * start; it may block (the connections wait). */
    void (*tick)(void *arg, long long elapsed_ms);
    unsigned tick_ms;
    void *arg;
    bool quiet;                  /* no line per malformed answer on stderr */
};

struct h_load_stats {
    unsigned long sent;          /* requests written whole */
    unsigned long answered;      /* well-formed final responses */
    unsigned long status[600];   /* answers by status */
    unsigned long closed_idle;   /* the server closed a connection while no request
                                  * of it was waiting (between requests) */
    unsigned long closed_clean;  /* a connection ended by EOF while a request waited,
                                  * with no byte of its response: a clean close */
    unsigned long reset;         /* ...by a reset (or a send that failed), with no
                                  * byte of the response */
    unsigned long malformed;     /* a response that was cut, or not HTTP, or bytes
                                  * nobody asked for */
    unsigned long connects;      /* connections opened */
    unsigned long connect_failed;
    unsigned long unanswered;    /* requests still waiting when the load gave up */
    long long elapsed_ms;
};

/* Runs the load described by <c> to its end and fills <st>. Returns 0, or
 * -1 when it could not run at all (said on stderr). */
int h_load_run(const struct h_load_conf *c, struct h_load_stats *st);

/* Answers of class <k> (2 for 2xx ... 5) in <st>. */
unsigned long h_load_class(const struct h_load_stats *st, int k);

/* Prints <st> on stderr under <label>. */
void h_load_print(const char *label, const struct h_load_stats *st);

#endif
