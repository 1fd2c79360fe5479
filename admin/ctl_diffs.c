/*
 * ctl_diffs: see ctl_diffs.h. Each kept difference: the request, both
 * answers, then the fields that differ side by side:
 *   GET /a  served legacy 127.0.0.1:9001 200 | shadow new 127.0.0.1:9002 500  (2 differing)
 *     FIELD                            SERVED                                   SHADOW
 *     status                           200                                      500
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "admin/ctl_diffs.h"
#include "admin/ctl_show.h"

/* <v> as shown: a string escaped (ctl_shown()), an integer in decimal,
 * anything else "-". */
static const char *
show(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        return ctl_shown(json_string_value(v), json_string_length(v), 0);
    if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return "-";
}

void
ctl_print_diffs(const json_t *reply)
{
    const json_t *diffs = json_object_get(reply, "diffs"), *d, *f;
    char b[9][32];
    size_t i, k;

    if (json_array_size(diffs) == 0)
        printf("no differences kept\n");
    json_array_foreach(diffs, i, d) {
        printf("%s %s  served %s %s %s | shadow %s %s %s  (%s differing)\n",
               show(json_object_get(d, "method"), b[0], sizeof(b[0])),
               show(json_object_get(d, "target"), b[1], sizeof(b[1])),
               show(json_object_get(d, "served_side"), b[2], sizeof(b[2])),
               show(json_object_get(d, "served_server"), b[3], sizeof(b[3])),
               show(json_object_get(d, "served_status"), b[4], sizeof(b[4])),
               show(json_object_get(d, "shadow_side"), b[5], sizeof(b[5])),
               show(json_object_get(d, "shadow_server"), b[6], sizeof(b[6])),
               show(json_object_get(d, "shadow_status"), b[7], sizeof(b[7])),
               show(json_object_get(d, "differing"), b[8], sizeof(b[8])));
        printf("  %-32s %-40s %s\n", "FIELD", "SERVED", "SHADOW");
        json_array_foreach(json_object_get(d, "fields"), k, f)
            printf("  %-32s %-40s %s\n", show(json_object_get(f, "field"), b[0], sizeof(b[0])),
                   show(json_object_get(f, "served"), b[1], sizeof(b[1])),
                   show(json_object_get(f, "shadow"), b[2], sizeof(b[2])));
    }
}
