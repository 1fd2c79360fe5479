/*
 * 26_kill9: kill -9 at random (seeded) moments while cutoverd is making
 * changes and rollbacks, ITERATIONS times, restarting it after each kill.
 * Each round sends a burst of 1..MAX_BURST commands (weights, rollbacks,
 * promotes) on one admin connection, kills the daemon KILL_WINDOW_US at
 * most later, and checks the restarted daemon:
 *
 *   - the state file loads;
 *   - its generation G is at least that of the last command answered "ok"
 *     (an answered rollback keeps its latch) and at most the last one sent;
 *   - weight and state are exactly those the command of generation G set
 *     (the state file never holds a mix, nor a change that was not made);
 *   - the daemon's status says the same;
 *   - the audit log has no torn line and an entry for every generation up
 *     to G: its own, or a "recovered" one written at startup for a change
 *     that was saved but not yet audited when the process died.
 *
 * Bounded: short-lived daemons on a fixed seed; the commands are fast (an
 * fsync or two each). The summary line says how many kills fell inside a
 * burst and how many left a generation to recover.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin/control.h"
#include "tests/integration/fixture.h"

#define ITERATIONS     200
#define SEED           0x26c0ffeeu
#define MAX_BURST      6
#define KILL_WINDOW_US 15000         /* a kill falls this long after the burst, at most */

/* One command of a burst and the state it sets. */
struct cmd {
    char line[128];
    uint32_t bp;
    int state;                       /* enum adm_state */
};

static uint64_t rng;

static uint32_t
draw(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static void
sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void
make_cmd(struct cmd *c)
{
    uint32_t r = draw(10), bp;

    if (r < 3) {
        snprintf(c->line, sizeof(c->line), "{\"cmd\":\"rollback\",\"reason\":\"kill9\"}\n");
        c->bp = 0;
        c->state = ADM_ST_ROLLED_BACK;
    } else if (r < 4) {
        snprintf(c->line, sizeof(c->line), "{\"cmd\":\"promote\"}\n");
        c->bp = 10000;
        c->state = ADM_ST_PROMOTED;
    } else {
        bp = draw(10001);
        snprintf(c->line, sizeof(c->line), "{\"cmd\":\"weight\",\"percent\":%u.%02u}\n",
                 bp / 100, bp % 100);
        c->bp = bp;
        c->state = ADM_ST_STEADY;
    }
}

/* Reads the replies that arrived before the kill (up to EOF) and returns
 * how many complete ones there were; each must be ok. */
static unsigned
count_acked(int fd, unsigned sent)
{
    char buf[65536], *p, *nl;
    size_t got = 0;
    ssize_t n;
    unsigned acked = 0;

    while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    for (p = buf; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        *nl = '\0';
        if (strstr(p, "\"ok\":true") == NULL)
            fail_msg("a command was refused on a healthy disk: %s", p);
        acked++;
    }
    assert_true(acked <= sent);
    return acked;                      /* a reply cut by the kill does not count */
}

static void
test_kill9_during_changes(void **state)
{
    struct fx *f;
    struct cmd burst[MAX_BURST];
    struct adm_store_entry e;
    uint64_t g0 = 0;
    uint32_t prev_bp = 0;
    int prev_state = ADM_ST_STEADY;
    unsigned it, k, nb, acked, mid_burst = 0, recovered = 0, rec;
    long long t0 = h_now_ms();
    json_t *root, *svc;
    int fd;

    assert_int_equal(fx_open(state, false, 1, NULL, 26), 0);
    f = *state;
    rng = SEED;
    for (it = 0; it < ITERATIONS; it++) {
        nb = 1 + draw(MAX_BURST);
        fd = h_unix_connect(f->sock);
        assert_true(fd >= 0);
        for (k = 0; k < nb; k++)
            make_cmd(&burst[k]);
        for (k = 0; k < nb; k++)
            assert_int_equal(h_send_all(fd, burst[k].line, strlen(burst[k].line)), 0);
        sleep_us((long)draw(KILL_WINDOW_US));
        assert_int_equal(h_stop(f->proxy, SIGKILL, 5000), 128 + SIGKILL);
        acked = count_acked(fd, nb);
        close(fd);
        mid_burst += acked < nb;

        if (fx_start_proxy(f, 26) != 0)
            fail_msg("round %u: cutoverd did not come back after kill -9", it);
        e = fx_state_file(f, "web");
        if (e.weight_bp == (uint32_t)-1) {
            /* no entry for the service: nothing was ever saved for it, which
             * only the first round's kill can leave (before the daemon took
             * its first command); the daemon then starts from the config */
            if (g0 != 0 || acked != 0)
                fail_msg("round %u: the state file has no entry for the service after "
                         "generation %llu and %u answered command(s)", it,
                         (unsigned long long)g0, acked);
            e.weight_bp = 0;
            e.state = ADM_ST_STEADY;
        }
        if (e.generation < g0 + acked || e.generation > g0 + nb)
            fail_msg("round %u: generation %llu; %u of %u commands after generation %llu "
                     "were answered", it, (unsigned long long)e.generation, acked, nb,
                     (unsigned long long)g0);
        if (e.generation > g0) {
            prev_bp = burst[e.generation - g0 - 1].bp;
            prev_state = burst[e.generation - g0 - 1].state;
        }
        if (e.weight_bp != prev_bp || e.state != prev_state)
            fail_msg("round %u: generation %llu has weight %u bp state %d, its command set "
                     "%u bp state %d", it, (unsigned long long)e.generation, e.weight_bp,
                     e.state, prev_bp, prev_state);
        svc = fx_status(f, &root);
        assert_non_null(svc);
        assert_true(json_integer_value(json_object_get(svc, "generation"))
                    == (json_int_t)e.generation);
        assert_string_equal(json_string_value(json_object_get(svc, "state")),
                            adm_state_names[e.state]);
        json_decref(root);
        rec = fx_audit_covers(f, "web", e.generation);
        assert_true(rec >= recovered);
        recovered = rec;               /* the log's "recovered" entries so far */
        g0 = e.generation;
    }
    fx_stop_clean(f);
    fprintf(stderr, "26_kill9: %u kills in %.1f s: %u inside a burst, generation %llu "
            "reached, %u audit entr%s recovered at startup\n", ITERATIONS,
            (double)(h_now_ms() - t0) / 1000.0, mid_burst, (unsigned long long)g0,
            recovered, recovered == 1 ? "y" : "ies");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill9_during_changes, fx_teardown),
    };

    return cmocka_run_group_tests_name("integration: kill -9", tests, NULL, NULL);
}
