/*
 * lib/text: the out-of-line text helpers (see text.h).
 */
#include "lib/text.h"

#include <stdarg.h>
#include <stdio.h>

int
text_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}
