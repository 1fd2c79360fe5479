/*
 * shadow_cap: the capture of the client's response for shadow traffic
 * (see shadow_cap.h).
 */
#include <stdlib.h>

#include <event2/buffer.h>

#include "lib/http1.h"
#include "lib/xmalloc.h"
#include "proxy/shadow_cap.h"

struct px_shadow_cap *
px_shadow_cap_new(const struct hl_diff_conf *conf, void (*ended)(void *arg), void *arg)
{
    struct px_shadow_cap *cap = xcalloc(1, sizeof(*cap));

    cap->refs = 2;
    cap->conf = conf;
    cap->ended = ended;
    cap->arg = arg;
    hl_diff_resp_init(&cap->resp, conf);
    return cap;
}

void
px_shadow_cap_head(struct px_shadow_cap *cap, const struct h1_resp *r)
{
    size_t i;

    hl_diff_resp_status(&cap->resp, r->status);
    for (i = 0; i < r->nfields; i++)
        hl_diff_resp_header(&cap->resp, cap->conf, r->fields[i].name.p, r->fields[i].name.len,
                            r->fields[i].value.p, r->fields[i].value.len);
}

void
px_shadow_cap_body(struct px_shadow_cap *cap, struct evbuffer *src, size_t n)
{
    struct evbuffer_iovec v[8];
    struct evbuffer_ptr at;
    int k, i;

    if (cap->state != PX_CAP_WAIT || cap->resp.too_large || cap->ended == NULL ||
        cap->conf->body == HL_DIFF_BODY_NONE)
        return;
    evbuffer_ptr_set(src, &at, 0, EVBUFFER_PTR_SET);
    while (n > 0) {
        k = evbuffer_peek(src, (ev_ssize_t)n, &at, v, 8);
        if (k <= 0)
            return;
        for (i = 0; i < k && i < 8 && n > 0; i++) {
            size_t m = v[i].iov_len < n ? v[i].iov_len : n;

            if (hl_diff_resp_body(&cap->resp, cap->conf, v[i].iov_base, m) < 0)
                return;                /* past max_response_bytes: not compared */
            n -= m;
            evbuffer_ptr_set(src, &at, m, EVBUFFER_PTR_ADD);
        }
    }
}

void
px_shadow_cap_end(struct px_shadow_cap *cap, bool whole)
{
    void (*fn)(void *) = cap->ended;

    if (cap->state != PX_CAP_WAIT)
        return;
    cap->state = whole ? PX_CAP_DONE : PX_CAP_FAILED;
    if (whole)
        hl_diff_resp_end(&cap->resp, cap->conf);
    cap->ended = NULL;
    if (fn != NULL)
        fn(cap->arg);
}

void
px_shadow_cap_put(struct px_shadow_cap *cap)
{
    if (cap == NULL || --cap->refs > 0)
        return;
    hl_diff_resp_free(&cap->resp);
    free(cap);
}
