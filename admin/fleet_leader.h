/*
 * fleet_leader: the fleet's windows and its leader (docs/fleet.md, "Windows
 * and the leader"; docs/DESIGN.md, "Fleet on PostgreSQL"). With
 * "store": {"postgres"}, every instance keeps one more session to the
 * database, its fleet session (lib/pg.h, on the main loop, never blocking;
 * application_name "<name>-fleet"), beside the store's (admin/store_pg.h),
 * on which it:
 *
 *   - publishes, every second, its instance row (address, host, version,
 *     process, what it applied of each service, last seen) and the window
 *     counts of both sides of every service in ONE statement, an upsert
 *     (no notification: NOTIFY is for control changes);
 *   - contends for the fleet's leadership, a session-level advisory lock
 *     (pg_try_advisory_lock, keys ADM_LEADER_LOCK_CLASS and the hash of
 *     the fleet's name): tried with every publication and half a second
 *     after it while another holds it. The lock belongs to the session:
 *     losing the session (the instance killed or partitioned, the session
 *     terminated, a statement timed out) loses the lock, and the server
 *     frees it for the next instance. The session's server-side settings
 *     make that quick (see ADM_LEADER_* and docs/fleet.md): TCP keepalives
 *     and tcp_user_timeout for a vanished peer, client_connection_check_
 *     interval for one that dies while a statement of it runs. A holder
 *     that hangs keeps its session (its kernel still answers), so the
 *     lock also carries a lease (ADM_LEADER_LEASE_MS): a follower that
 *     finds the holder's heartbeat too old ends the holder's session and
 *     takes the lock, in one statement;
 *   - as the leader, half a second after each publication, reads every
 *     instance's last publication and hands them to the evaluate hook,
 *     service by service (the caller sums them with hl_fleet_sum() and
 *     applies the rollback policy, acting through the normal automatic
 *     path, which writes the rollback to the store, so every instance
 *     applies it). The same statement records in cutover_leader who leads
 *     and how many instances it counted, which every instance's
 *     publication reads back (cutover_fleet_instances). The leader acts
 *     only from the answer of a statement on the session that holds the
 *     lock, so it never acts on a lock it lost more than one round trip
 *     before, and only when that answer came within ADM_LEADER_LEASE_MS
 *     of the statement being sent, so never while a follower may already
 *     have ended its session for an expired lease.
 *
 * Per instance: 2 statements a second on its fleet session (publish, then
 * the leader's read or a follower's try), 2 connections with the store's.
 * Nothing polls other instances: the leader's read is one statement over
 * the fleet's rows, linear in the instances.
 */
#ifndef CUTOVER_ADMIN_FLEET_LEADER_H
#define CUTOVER_ADMIN_FLEET_LEADER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "admin/fleet_windows.h"
#include "health/fleet.h"

struct adm_leader;
struct adm_pg_conf;
struct event_base;

#define ADM_LEADER_LOCK_CLASS   1668641910  /* "cutv": the lock's first key */
#define ADM_LEADER_PERIOD_MS    1000u       /* publish; the read or try between */
#define ADM_LEADER_LIVE_MS      3000u       /* an instance seen within this is live */
#define ADM_LEADER_KEEP_MS      60000u      /* rows older are not read at all */
#define ADM_LEADER_FRESH_MS     1500u       /* the leader's row, written with every
                                             * read, names the leader while younger */
/* The leader's lease (docs/fleet.md, "The sessions and their timeouts"):
 * its heartbeat is the database's clock at its last statement, the
 * publication (cutover_instance.seen_at) or the read (cutover_leader.at),
 * one of the two every half period. A follower whose try fails and which
 * finds the holder's heartbeat older than ADM_LEADER_LEASE_MS ends the
 * holder's session (pg_terminate_backend) and takes the lock in the same
 * statement, trying it ADM_LEADER_TAKEOVER_TRIES times at most, a
 * millisecond apart, while the ended session exits (a few milliseconds). 1.25 s is the half period (0.5 s) with 0.75 s of
 * margin for a slow statement and a late timer; with tries every half
 * period another instance leads within 1.25 + 0.5 s of the last heartbeat
 * and so within 2 s of a hang. A leader acts on no answer that came later
 * than the lease after its statement was sent: by then another may lead. */
#define ADM_LEADER_LEASE_MS           1250u
#define ADM_LEADER_TAKEOVER_TRIES     250u   /* pg_sleep(0.001) apart: about 0.5 s */
/* The fleet session's settings. Client side (libpq, this instance's socket):
 * a silent database is noticed within about 3 s while idle, within 3 s of
 * unacknowledged data otherwise. Server side (SET at every connect, the
 * server's socket to this instance): a vanished instance's session, and so
 * the leader's lock, is freed within about 3 s; a dying one's within half a
 * second even while a statement of it runs. docs/fleet.md says why. */
#define ADM_LEADER_KEEPALIVE_IDLE_S      1u
#define ADM_LEADER_KEEPALIVE_INTERVAL_S  1u
#define ADM_LEADER_KEEPALIVE_COUNT       2u
#define ADM_LEADER_TCP_USER_TIMEOUT_MS   3000u
#define ADM_LEADER_CHECK_INTERVAL_MS     500u

/* Who this instance is, for its row (strings copied). */
struct adm_leader_ident {
    const char *address;         /* its listen addresses, "127.0.0.1:8080,..." */
    const char *host;            /* the host name */
    const char *version;         /* cutoverd's */
    long pid;
    double started_ms;           /* Unix ms */
};

/* What the leader knows at an evaluation. */
struct adm_leader_view {
    const char *instance;        /* this instance: the leader */
    unsigned live_ms;            /* ADM_LEADER_LIVE_MS */
    unsigned instances;          /* live instances counted in this read (all services) */
};

/* A takeover: whose lease expired, by how much (the database's clock). */
struct adm_leader_takeover {
    const char *fleet;
    const char *instance;        /* the leader whose session was ended */
    int backend_pid;             /* its fleet session's server process */
    double stale_ms;             /* its last heartbeat's age when it was ended */
    const char *by;              /* this instance */
    bool leading;                /* it took the lock (else another's plain try
                                  * came first, between the end and its try) */
};

struct adm_leader_hooks {
    /* This instance's services now: a new array (the caller's xcalloc;
     * freed here) in *<out>, and its length. */
    unsigned (*collect)(void *arg, struct adm_fw_svc **out);
    /* Leader only, from the answer of its read: the last publication of
     * every instance that published service <name> within ADM_LEADER_KEEP_MS
     * (<rows> valid during the call; live or not: hl_fleet_sum() decides). */
    void (*evaluate)(void *arg, const char *name, const struct hl_fleet_row *rows,
                     unsigned n, const struct adm_leader_view *v);
    /* May be NULL. This instance ended the session of leader <t->instance>,
     * whose lease had expired, and leads now unless another instance took
     * the lock first (logged here; the hook audits). */
    void (*takeover)(void *arg, const struct adm_leader_takeover *t);
};

/* A fleet session for <conf> (copied) on <base>; nothing runs before
 * adm_leader_start(). NULL on a libevent failure (logged). */
struct adm_leader *adm_leader_new(struct event_base *base, const struct adm_pg_conf *conf,
                                  const struct adm_leader_ident *id, uint64_t seed,
                                  const struct adm_leader_hooks *hooks, void *arg);

/* Connects (on the loop) and starts the timer. 0 or -1. */
int adm_leader_start(struct adm_leader *l);

/* Closes the session (the lock goes with it: another instance leads at its
 * next try) and frees. NULL is a no-op. */
void adm_leader_free(struct adm_leader *l);

/* What status and the metrics show. */
struct adm_leader_figures {
    bool up;                     /* the fleet session is up and set */
    bool leader;                 /* this instance holds the lock */
    unsigned instances;          /* live instances as the leader counted them
                                  * last (0 when no leader counted within
                                  * ADM_LEADER_LIVE_MS) */
    char leader_instance[64];    /* who leads: this instance, or the one whose
                                  * read the last publication found younger than
                                  * ADM_LEADER_FRESH_MS; "" when none */
    uint64_t publishes, reads;   /* statements answered since start */
    uint64_t terms;              /* times this instance became the leader */
    uint64_t takeovers;          /* sessions of leaders whose lease had expired that
                                  * this instance ended (and, but for a race with
                                  * another's plain try, led after) */
    double read_sum_ms;          /* the leader's reads: parse and evaluation time here */
    double read_max_ms;
};
void adm_leader_figures(const struct adm_leader *l, struct adm_leader_figures *out);

/* The status "store" object's leader part, added to <o>: "leader" (bool),
 * "leader_instance" (string or null), "fleet_instances", "leader_takeovers". */
void adm_leader_status(const struct adm_leader *l, json_t *o);

/* `status --fleet`: reads every instance's row. <cb> gets a new
 * {"fleet","instance","live_ms","instances":[{"instance","address","host",
 * "version","pid","started_at","last_seen","last_seen_ms","live","leader",
 * "applied","services":[{"name","generation","window_s","legacy","new"}]}]}
 * (the windows as adm_fw_window_json), or NULL and why. 0, or -1 (<cb> not
 * called) when the session is not up: <err> says so. */
typedef void adm_leader_fleet_fn(void *arg, json_t *fleet, const char *err);
int adm_leader_fleet_status(struct adm_leader *l, adm_leader_fleet_fn *cb, void *arg,
                            char *err, size_t errlen);

#endif
