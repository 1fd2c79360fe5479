/*
 * cdp: a headless Chromium for the tests of the dashboard, driven over the
 * Chrome DevTools Protocol on a pipe (--remote-debugging-pipe: requests on
 * the browser's fd 3, replies and events on its fd 4, each message JSON
 * ended by a NUL). Nothing is downloaded and no port is opened: the
 * browser resolves no name but loopback addresses, runs with a fresh
 * profile in a directory the test gives, and dies with the test. One page
 * (one target, one flat session) per browser. Blocking, with a time bound
 * on every call; failures say what failed on stderr and return -1/NULL.
 */
#ifndef CUTOVER_TESTS_CDP_H
#define CUTOVER_TESTS_CDP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct h_cdp;

/* The browser to run: $CUTOVER_CHROMIUM, else /usr/bin/chromium. NULL when
 * it is not an executable file. */
const char *h_cdp_browser(void);

/* Starts the browser (profile and crash files in <dir>, its output appended
 * to <log>), a <width> x <height> page on about:blank. NULL on failure (no
 * browser, or no answer within 20 s). */
struct h_cdp *h_cdp_start(const char *dir, const char *log, int width, int height);

/* Stops the browser (Browser.close, then SIGKILL) and frees <b>. NULL: no-op. */
void h_cdp_stop(struct h_cdp *b);

/* Calls <method> with <params> (stolen; NULL: {}) on the page's session
 * (<on_page>) or the browser, and waits up to <timeout_ms> for the reply.
 * Returns its "result" (caller json_decref()s), or NULL on an error reply
 * (printed) or timeout. Events that arrive meanwhile are read and kept in
 * the counters below. */
json_t *h_cdp_call(struct h_cdp *b, bool on_page, const char *method, json_t *params,
                   int timeout_ms);

/* Evaluates the JavaScript expression <js> in the page (promises awaited)
 * and returns its value by value (caller json_decref()s; JSON null for
 * undefined), or NULL when it threw (printed) or timed out. */
json_t *h_cdp_eval(struct h_cdp *b, const char *js, int timeout_ms);

/* h_cdp_eval() of <js> as a string: copied into <buf> (NUL-terminated,
 * truncated to <len>); "" when it is not a string. Returns 0 or -1. */
int h_cdp_eval_str(struct h_cdp *b, const char *js, char *buf, size_t len);

/* Evaluates <js> every 50 ms until it is true (JavaScript truthiness of a
 * boolean, number or string) or <timeout_ms> passed. Returns the ms it
 * took, or -1 (with <js> printed). */
long h_cdp_wait(struct h_cdp *b, const char *js, int timeout_ms);

/* Loads <url> in the page and waits for its load event (document complete). 0 or -1. */
int h_cdp_navigate(struct h_cdp *b, const char *url, int timeout_ms);

/* Types <text> into the focused element, as a keyboard would (Input.insertText). 0 or -1. */
int h_cdp_type(struct h_cdp *b, const char *text);

/* Writes a PNG of the page's viewport to <path>. 0 or -1. */
int h_cdp_screenshot(struct h_cdp *b, const char *path);

/* What the page reported: uncaught exceptions, and console or browser log
 * entries of level error. The texts of the last ones are in h_cdp_log(). */
unsigned h_cdp_exceptions(const struct h_cdp *b);
unsigned h_cdp_errors(const struct h_cdp *b);

/* The page's exceptions and error entries so far, one per line (NUL-terminated). */
const char *h_cdp_log(const struct h_cdp *b);

#endif
