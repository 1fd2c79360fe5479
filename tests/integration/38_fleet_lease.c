/*
 * 38_fleet_lease: the lease on the fleet leader's lock (docs/fleet.md,
 * "The sessions and their timeouts"), three cutoverd instances on a private
 * PostgreSQL cluster (tests/harness/pg.h; never a system one). A leader
 * that hangs (SIGSTOP) keeps its session: its kernel still answers, so the
 * server never ends it by itself. Here:
 *   - three healthy instances for 5 s: the leader never changes, nobody
 *     takes over (leader_takeovers 0 everywhere, the leader's row's
 *     "since" unchanged);
 *   - the leader SIGSTOPped: another leads within TAKEOVER_MS (the
 *     contract's 2 s plus a margin for a loaded machine; it never happens
 *     without the lease), the stopped leader's fleet session ended (gone
 *     from pg_stat_activity), once: one takeover counted, logged and
 *     audited (locally and in the fleet's audit) by the instance that
 *     ended it, which leads unless the other's plain try came first
 *     between the end and its own try; SIGCONT: the old leader
 *     logs leader_lost, reads nothing more as leader, reconnects and
 *     follows; exactly one leader;
 *   - two followers racing: every instance stopped until the leader's
 *     lease has expired, then both followers woken together: the stale
 *     leader's session is ended exactly once, one of them leads;
 *   - the leader's read made to wait (the test holds the leader's row)
 *     longer than the lease, not as long as the statement timeout: nobody
 *     takes over meanwhile (the takers skip the locked row), and the
 *     leader does not act on the late answer but still leads;
 *   - followers whose role may not end the leader's session (the leader
 *     connects as the superuser, they as a plain role): each says so once,
 *     nobody takes over, the leader woken still leads.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "tests/harness/pg.h"
#include "tests/integration/fleet_fixture.h"

#define N FLEET_N
#define TAKEOVER_MS 3000         /* the contract's 2 s, and 1 s for a loaded machine */
#define QUIET_MS 5000            /* the healthy fleet watched for spurious takeovers */

/* Waits up to <ms> for server process <pid> to be gone. */
static bool
backend_gone(struct fleet *fl, const char *pid, int ms)
{
    long long end = h_now_ms() + ms;
    char sql[128], buf[32];

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", pid);
    do {
        if (strcmp(fleet_db_value(fl, sql, buf, sizeof(buf)), "0") == 0)
            return true;
        h_sleep_ms(20);
    } while (h_now_ms() < end);
    return false;
}

/* Occurrences of <needle> in instance <i>'s log. */
static int
log_count(struct fleet *fl, int i, const char *needle)
{
    char *text = h_read_file(fl->fx[i].log), *p;
    int n = 0;

    for (p = text; p != NULL && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

static long long
takeovers_total(struct fleet *fl, int skip)
{
    long long n = 0;
    int i;

    for (i = 0; i < N; i++)
        if (i != skip)
            n += fleet_status_int(fl, i, "store.leader_takeovers");
    return n;
}

/* Waits up to 3 s for the instances but <L> to have ended <want> sessions
 * in all, then as long again as a second taker's statement could take
 * (it tries the lock for about half a second after the end): exactly
 * <want>. */
static void
expect_takeovers(struct fleet *fl, int L, long long want)
{
    long long end = h_now_ms() + 3000;

    while (takeovers_total(fl, L) < want && h_now_ms() < end)
        h_sleep_ms(20);
    h_sleep_ms(1500);
    assert_int_equal(takeovers_total(fl, L), want);
}

/* The stopped leader <L>, woken: it finds its session ended, stops leading
 * (leader_lost), reads nothing more as leader, reconnects and follows <L2>. */
static void
wake_old_leader(struct fleet *fl, int L, int L2)
{
    long long reads, end;
    json_t *who;
    char want[8];
    int lost = log_count(fl, L, "event=leader_lost");

    assert_int_equal(kill(fl->fx[L].proxy, SIGCONT), 0);
    end = h_now_ms() + 3000;           /* its log may hold an earlier one */
    while (log_count(fl, L, "event=leader_lost") == lost && h_now_ms() < end)
        h_sleep_ms(10);
    assert_int_equal(log_count(fl, L, "event=leader_lost"), lost + 1);
    assert_false(fleet_is_leader(fl, L));
    reads = fleet_status_int(fl, L, "store.leader_reads.count");
    h_sleep_ms(1500);                  /* three turns: a leader would read */
    assert_false(fleet_is_leader(fl, L));
    assert_int_equal(fleet_status_int(fl, L, "store.leader_reads.count"), reads);
    snprintf(want, sizeof(want), "i%d", L2);
    end = h_now_ms() + 5000;
    for (;;) {
        json_t *up = fleet_status_at(fl, L, "store.fleet_session_up");

        who = fleet_status_at(fl, L, "store.leader_instance");
        if ((json_is_true(up) && json_is_string(who)
             && strcmp(json_string_value(who), want) == 0) || h_now_ms() > end) {
            json_decref(up);
            break;
        }
        json_decref(up);
        json_decref(who);
        h_sleep_ms(50);
    }
    assert_true(json_is_string(who));
    assert_string_equal(json_string_value(who), want);
    json_decref(who);
    assert_int_equal(fleet_leader_of(fl, -1, 3000), L2);
}

/* Healthy instances: the lease never lapses, nobody takes over. */
static int
setup(void **state)
{
    static const struct fleet_opts o = { .fleet = "l", .seed = 38, .poll_ms = 20 };

    return fleet_setup(state, &o);
}

static void
test_no_spurious_takeover(void **state)
{
    struct fleet *fl = *state;
    char since0[64], since1[64], *text;
    long long end;
    int L, i;

    L = fleet_leader_of(fl, -1, 5000);
    assert_true(L >= 0);
    h_sleep_ms(600);                   /* its first read has written the row */
    fleet_db_value(fl, "SELECT instance || ' ' || backend_pid || ' ' || since FROM cutover_leader "
             "WHERE fleet = 'l'", since0, sizeof(since0));
    end = h_now_ms() + QUIET_MS;
    while (h_now_ms() < end) {
        assert_int_equal(fleet_leader_of(fl, -1, 0), L);
        h_sleep_ms(100);
    }
    fleet_db_value(fl, "SELECT instance || ' ' || backend_pid || ' ' || since FROM cutover_leader "
             "WHERE fleet = 'l'", since1, sizeof(since1));
    assert_string_equal(since1, since0);
    for (i = 0; i < N; i++) {
        assert_int_equal(fleet_status_int(fl, i, "store.leader_takeovers"), 0);
        assert_int_equal(log_count(fl, i, "event=leader_takeover"), 0);
        assert_int_equal(log_count(fl, i, "event=leader_lost"), 0);
        text = fx_scrape(&fl->fx[i]);
        assert_true(fx_metric(text, "cutover_fleet_leader_takeovers_total") == 0);
        free(text);
    }
}

/* The leader hangs: another ends its session and leads. */
static void
test_stopped_leader(void **state)
{
    struct fleet *fl = *state;
    char pid[32], buf[256], want[64], *text;
    long long t0, ms, end;
    json_t *all, *e, *found;
    size_t k;
    int L, L2, T, i;

    L = fleet_leader_of(fl, -1, 3000);
    assert_true(L >= 0);
    assert_true(atoi(fleet_lock_holder(fl, pid, sizeof(pid))) > 0);
    assert_int_equal(kill(fl->fx[L].proxy, SIGSTOP), 0);
    t0 = h_now_ms();
    ms = fleet_takeover(fl, L, t0, TAKEOVER_MS + 3000, "stopped", &L2);
    fprintf(stderr, "leader i%d stopped: i%d leads after %lld ms\n", L, L2, ms);
    assert_true(ms < TAKEOVER_MS);
    /* the stopped leader's fleet session was ended; the new one holds */
    assert_true(backend_gone(fl, pid, 2000));
    assert_true(atoi(fleet_lock_holder(fl, buf, sizeof(buf))) > 0);
    assert_string_not_equal(buf, pid);
    /* once, by T: counted, logged, audited there and in the fleet's audit */
    expect_takeovers(fl, L, 1);
    for (T = -1, i = 0; i < N; i++)
        if (i != L && fleet_status_int(fl, i, "store.leader_takeovers") == 1)
            T = i;
    assert_true(T >= 0);
    if (T != L2)
        fprintf(stderr, "i%d ended the session, i%d's plain try took the lock first\n", T,
                L2);
    snprintf(want, sizeof(want), "leader i%d's lease expired (stale ", L);
    assert_int_equal(h_wait_log(fl->fx[T].log, want, 1000), 0);
    assert_int_equal(log_count(fl, T, want), 1);
    assert_int_equal(log_count(fl, 3 - L - T, want), 0);
    assert_int_equal(log_count(fl, T, T == L2 ? "its session ended; leading"
                                              : "another instance took the lock first"), 1);
    text = fx_scrape(&fl->fx[T]);
    assert_true(fx_metric(text, "cutover_fleet_leader_takeovers_total") == 1);
    free(text);
    all = fx_audit(&fl->fx[T], NULL);
    found = NULL;
    json_array_foreach(all, k, e) {
        const char *action = json_string_value(json_object_get(e, "action"));

        if (action != NULL && strcmp(action, "leader_takeover") == 0)
            found = e;
    }
    assert_non_null(found);
    assert_string_equal(json_string_value(json_object_get(found, "actor")), "fleet");
    snprintf(want, sizeof(want), "i%d", L);
    assert_string_equal(json_string_value(h_json_at(found, "figures.previous")), want);
    assert_true(json_real_value(h_json_at(found, "figures.stale_ms")) > 1250.0);
    assert_true(json_is_true(h_json_at(found, "figures.leading")) == (T == L2));
    json_decref(all);
    snprintf(want, sizeof(want), "i%d i%d", T, L);
    end = h_now_ms() + 2000;           /* the fleet's audit is written after */
    while (strcmp(fleet_db_value(fl, "SELECT string_agg(instance || ' ' || "
                           "(entry->'figures'->>'previous'), ',') FROM cutover_audit "
                           "WHERE fleet = 'l' AND entry->>'action' = 'leader_takeover'",
                           buf, sizeof(buf)), want) != 0 && h_now_ms() < end)
        h_sleep_ms(20);
    assert_string_equal(buf, want);
    wake_old_leader(fl, L, L2);
}

/* Both followers find the same expired lease at the same moment: the
 * leader's session is ended once, and one of them leads. */
static void
test_racing_followers(void **state)
{
    struct fleet *fl = *state;
    char pid[32], before[16], after[16];
    long long n0, ms, t0, end;
    int L, L2, f[2], i, k;

    L = fleet_leader_of(fl, -1, 3000);
    assert_true(L >= 0);
    for (i = 0, k = 0; i < N; i++)
        if (i != L)
            f[k++] = i;
    n0 = takeovers_total(fl, L);
    fleet_db_value(fl, "SELECT count(*) FROM cutover_audit WHERE fleet = 'l' AND "
             "entry->>'action' = 'leader_takeover'", before, sizeof(before));
    assert_true(atoi(fleet_lock_holder(fl, pid, sizeof(pid))) > 0);
    for (i = 0; i < N; i++)
        assert_int_equal(kill(fl->fx[i].proxy, SIGSTOP), 0);
    h_sleep_ms(2000);                  /* the leader's lease expires */
    assert_int_equal(kill(fl->fx[f[0]].proxy, SIGCONT), 0);
    assert_int_equal(kill(fl->fx[f[1]].proxy, SIGCONT), 0);
    t0 = h_now_ms();
    ms = fleet_takeover(fl, L, t0, TAKEOVER_MS + 3000, "stopped", &L2);
    fprintf(stderr, "followers woken after the leader's lease expired: i%d leads after "
            "%lld ms\n", L2, ms);
    assert_true(ms < TAKEOVER_MS);
    assert_true(backend_gone(fl, pid, 2000));
    expect_takeovers(fl, L, n0 + 1);
    assert_int_equal(log_count(fl, f[0], "could not be ended")
                     + log_count(fl, f[1], "could not be ended"), 0);
    end = h_now_ms() + 2000;           /* the fleet's audit is written after */
    while (atoi(fleet_db_value(fl, "SELECT count(*) FROM cutover_audit WHERE fleet = 'l' AND "
                         "entry->>'action' = 'leader_takeover'", after, sizeof(after)))
           <= atoi(before) && h_now_ms() < end)
        h_sleep_ms(20);
    assert_int_equal(atoi(after), atoi(before) + 1);
    assert_int_equal(fleet_leader_of(fl, L, 0), L2);
    wake_old_leader(fl, L, L2);
}

/* The leader's read waits on its own row, held by the test, for longer
 * than the lease: its answer is not acted upon; nobody takes over. */
static void
test_late_read(void **state)
{
    struct fleet *fl = *state;
    static const char late[] = "longer than the leader's lease (1250 ms): not acted upon";
    char pid[32], buf[32];
    long long n0, reads, end;
    PGconn *lock;
    int L, lates;

    L = fleet_leader_of(fl, -1, 3000);
    assert_true(L >= 0);
    n0 = takeovers_total(fl, -1);
    lates = log_count(fl, L, late);
    assert_true(atoi(fleet_lock_holder(fl, pid, sizeof(pid))) > 0);
    lock = fleet_hold_leader_row(fl, pid);
    reads = fleet_status_int(fl, L, "store.leader_reads.count");
    /* 1.5 s: past the lease (1.25 s), short of the statement timeout (2 s) */
    h_sleep_ms(1500);
    assert_int_equal(takeovers_total(fl, -1), n0);
    assert_string_equal(fleet_lock_holder(fl, buf, sizeof(buf)), pid);
    PQclear(PQexec(lock, "COMMIT"));
    PQfinish(lock);
    end = h_now_ms() + 2000;
    while (log_count(fl, L, late) == lates && h_now_ms() < end)
        h_sleep_ms(10);
    assert_int_equal(log_count(fl, L, late), lates + 1);
    assert_int_equal(fleet_status_int(fl, L, "store.leader_reads.count"), reads);
    /* and it goes on leading: its next read is on time */
    h_sleep_ms(1500);
    assert_int_equal(fleet_leader_of(fl, -1, 0), L);
    assert_true(fleet_status_int(fl, L, "store.leader_reads.count") > reads);
    assert_string_equal(fleet_lock_holder(fl, buf, sizeof(buf)), pid);
    assert_int_equal(takeovers_total(fl, -1), n0);
}

/* The followers restarted under a plain role: pg_terminate_backend of the
 * superuser's session is refused. */
static void
test_refused_role(void **state)
{
    struct fleet *fl = *state;
    static const char refused[] = "may not end its session (pg_terminate_backend: ";
    char pid[32], buf[32], pw[600];
    int L, f[2], i, k, lost0;

    L = fleet_leader_of(fl, -1, 3000);
    assert_true(L >= 0);
    for (i = 0, k = 0; i < N; i++)
        if (i != L)
            f[k++] = i;
    assert_int_equal(pgh_exec(fl->pg, "CREATE ROLE plain LOGIN PASSWORD 'pw'"), 0);
    assert_int_equal(pgh_exec(fl->pg, "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN "
                                      "SCHEMA public TO plain"), 0);
    assert_int_equal(pgh_exec(fl->pg, "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "
                                      "plain"), 0);
    /* no CREATE on the schema: a start on a schema made by another role
     * creates nothing, so it needs none */
    for (k = 0; k < 2; k++) {
        struct fx *x = &fl->fx[f[k]];

        assert_int_equal(h_stop(x->proxy, SIGTERM, 5000), 0);
        snprintf(pw, sizeof(pw), "%s/pg.pass", x->dir);
        assert_int_equal(h_write_file(pw, "pw\n"), 0);
        snprintf(x->top_extra, sizeof(x->top_extra),
                 ", \"store\": {\"postgres\": {\"conninfo\": \"host=%s port=%s "
                 "dbname=postgres user=plain\", \"password_file\": \"%s\", \"fleet\": "
                 "\"l\", \"instance\": \"i%d\"}}", pgh_host(fl->pg), pgh_port(fl->pg), pw,
                 f[k]);
        unlink(x->log);
        assert_int_equal(fleet_start(fl, f[k]), 0);
    }
    assert_int_equal(fleet_leader_of(fl, -1, 3000), L);
    for (k = 0; k < 2; k++) {
        json_t *up = fleet_status_at(fl, f[k], "store.fleet_session_up");

        assert_true(json_is_true(up));
        json_decref(up);
    }
    assert_true(atoi(fleet_lock_holder(fl, pid, sizeof(pid))) > 0);
    lost0 = log_count(fl, L, "event=leader_lost");
    assert_int_equal(kill(fl->fx[L].proxy, SIGSTOP), 0);
    for (k = 0; k < 2; k++)
        assert_int_equal(h_wait_log(fl->fx[f[k]].log, refused, 4000), 0);
    h_sleep_ms(1500);                  /* three more tries each */
    for (k = 0; k < 2; k++) {
        assert_int_equal(log_count(fl, f[k], refused), 1);
        assert_int_equal(fleet_status_int(fl, f[k], "store.leader_takeovers"), 0);
        assert_false(fleet_is_leader(fl, f[k]));
    }
    assert_string_equal(fleet_lock_holder(fl, buf, sizeof(buf)), pid);
    assert_int_equal(kill(fl->fx[L].proxy, SIGCONT), 0);
    assert_int_equal(fleet_leader_of(fl, -1, 3000), L);
    h_sleep_ms(1000);
    assert_true(fleet_is_leader(fl, L));
    assert_int_equal(log_count(fl, L, "event=leader_lost"), lost0);
    assert_string_equal(fleet_lock_holder(fl, buf, sizeof(buf)), pid);
}

/* SIGTERM: every instance stops cleanly (under the sanitizers, nothing
 * leaked). */
static void
test_stop_clean(void **state)
{
    fleet_stop_clean(*state);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_spurious_takeover),
        cmocka_unit_test(test_stopped_leader),
        cmocka_unit_test(test_racing_followers),
        cmocka_unit_test(test_late_read),
        cmocka_unit_test(test_refused_role),
        cmocka_unit_test(test_stop_clean),
    };

    return cmocka_run_group_tests(tests, setup, fleet_teardown);
}
