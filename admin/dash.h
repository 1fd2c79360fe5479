/*
 * dash: the files of the dashboard (admin/dash/: index.html, dash.js,
 * dash.css), built into the daemon by the Makefile (admin/dash/embed.sh),
 * and the headers they are served with: a strict Content-Security-Policy
 * (scripts, styles and connections from the page's own origin only, no
 * inline script or style, no eval, no framing), nosniff, no referrer.
 * admin/http.c serves them at GET / and below; the figures come from
 * GET /v1/events (admin/events.h).
 */
#ifndef CUTOVER_ADMIN_DASH_H
#define CUTOVER_ADMIN_DASH_H

#include <stddef.h>

/* The header lines of every dashboard response (each ends in CRLF). */
#define ADM_DASH_HEADERS                                                              \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; "                \
    "style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; "         \
    "form-action 'none'; frame-ancestors 'none'\r\n"                                  \
    "X-Content-Type-Options: nosniff\r\n"                                             \
    "X-Frame-Options: DENY\r\n"                                                       \
    "Referrer-Policy: no-referrer\r\n"                                                \
    "Cross-Origin-Opener-Policy: same-origin\r\n"                                     \
    "Cross-Origin-Resource-Policy: same-origin\r\n"

struct adm_dash_asset {
    const char *path;                /* "/", "/dash.js", "/dash.css" */
    const char *ctype;               /* its Content-Type */
    const unsigned char *body;       /* static */
    size_t len;
};

/* The file served at <path> (<len> bytes, no query), or NULL. */
const struct adm_dash_asset *adm_dash_find(const char *path, size_t len);

#endif
