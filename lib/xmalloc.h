/*
 * xmalloc: allocation that aborts on out-of-memory (a leaf utility, libc
 * only). Removes untested OOM branches from every caller.
 */
#ifndef CUTOVER_LIB_XMALLOC_H
#define CUTOVER_LIB_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
