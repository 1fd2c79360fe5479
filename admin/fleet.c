/*
 * fleet: the control plane on the fleet's PostgreSQL store (see fleet.h).
 */
#include "admin/fleet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "admin/store_pg.h"
#include "admin/store_pg_conf.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

struct adm_fleet {
    struct adm_control *c;       /* borrowed: the owner */
    struct adm_pgstore *store;   /* owned */
    struct adm_pg_conf *conf;    /* owned: a copy (a reload frees the config) */
    bool fatal;                  /* the schema is refused */
};

static void
on_up(void *arg, bool reconnect)
{
    (void)arg;
    (void)reconnect;
}

static void
on_down(void *arg, const char *reason)
{
    (void)arg;
    (void)reason;
}

static void
on_changed(void *arg, const struct adm_pg_row *row)
{
    (void)arg;
    (void)row;
}

static void
on_fatal(void *arg, const char *reason)
{
    struct adm_fleet *f = arg;

    (void)reason;
    f->fatal = true;
}

int
adm_fleet_open(struct adm_control *c, struct event_base *base,
                       const struct adm_pg_conf *conf, uint64_t seed, char *err,
                       size_t errlen)
{
    static const struct adm_pgstore_cbs cbs = {
        .up = on_up, .down = on_down, .changed = on_changed, .fatal = on_fatal,
    };
    struct adm_fleet *f = xcalloc(1, sizeof(*f));
    char why[768];
    bool fatal = false, cache;

    f->c = c;
    f->conf = adm_pg_conf_dup(conf);
    conf = f->conf;
    f->store = adm_pgstore_new(base, conf, seed, &cbs, f);
    if (f->store == NULL) {
        snprintf(err, errlen, "store.postgres: cannot create the client");
        adm_pg_conf_free(f->conf);
        free(f);
        return -1;
    }
    c->fleet = f;
    if (adm_pgstore_wait_ready(f->store, why, sizeof(why), &fatal) == 0)
        return 0;
    cache = c->state_file != NULL && access(c->state_file, F_OK) == 0;
    if (fatal || !conf->start_without || !cache) {
        snprintf(err, errlen, "%s%s", why, fatal ? ""
                 : !conf->start_without ? " (cutoverd does not start without its store "
                                          "unless store.postgres.start_without is true and "
                                          "a local cache exists)"
                 : " (start_without is set, but there is no local cache to start from)");
        return -1;
    }
    log_at(LL_WARN, "fleet", 0, "%s; starting from the local cache %s (start_without): "
           "raises are refused until the store is back", why, c->state_file);
    return 0;
}

void
adm_fleet_free(struct adm_fleet *f)
{
    if (f == NULL)
        return;
    adm_pgstore_free(f->store);
    adm_pg_conf_free(f->conf);
    free(f);
}
