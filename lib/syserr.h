/*
 * lib/syserr: which system errors say something about this host rather than
 * about a peer. Out of descriptors (EMFILE, ENFILE), of memory or buffers
 * (ENOMEM, ENOBUFS) or of local ports (EADDRNOTAVAIL from a connect) is the
 * proxy's own trouble: never a verdict on a backend (a failed health check,
 * a failed request counted against a side), so never a reason to mark a
 * server down or to roll back. A leaf: libc only, header only.
 */
#ifndef CUTOVER_LIB_SYSERR_H
#define CUTOVER_LIB_SYSERR_H

#include <errno.h>
#include <stdbool.h>

/* True when errno value <e> is a shortage of a local resource. */
static inline bool
sys_err_local(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS || e == EADDRNOTAVAIL;
}

#endif
