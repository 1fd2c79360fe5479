/*
 * lib/timeval: milliseconds as the struct timeval libevent's timers and
 * bufferevent timeouts take. The one conversion of the tree. A leaf: libc
 * only, header only.
 */
#ifndef CUTOVER_LIB_TIMEVAL_H
#define CUTOVER_LIB_TIMEVAL_H

#include <sys/time.h>

/* <ms> milliseconds as a struct timeval. */
static inline struct timeval
tv_ms(unsigned ms)
{
    struct timeval tv = { (time_t)(ms / 1000u), (suseconds_t)((ms % 1000u) * 1000u) };

    return tv;
}

#endif
