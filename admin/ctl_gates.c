/*
 * ctl_gates: see ctl_gates.h. One line per gate:
 *   web  rows_match   compare          pass     0          since 2024-05-01T10:00:00.120Z  legacy 12, new 12: ...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "admin/ctl_gates.h"
#include "admin/ctl_proto.h"

/* <v> as shown text into <buf>: strings escaped, numbers as %.15g, null "-". */
static const char *
show(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        ctl_escape(buf, len, json_string_value(v), json_string_length(v), 0);
    else if (json_is_number(v))
        snprintf(buf, len, "%.15g", json_number_value(v));
    else
        snprintf(buf, len, "-");
    return buf;
}

void
ctl_print_gates(const json_t *reply, bool as_json)
{
    const json_t *svc, *g, *held;
    json_t *out = json_array();
    char b[7][1024];
    size_t i, k;
    unsigned n = 0;
    char *text;

    json_array_foreach(json_object_get(reply, "services"), i, svc) {
        const json_t *gates = json_object_get(svc, "gates");

        held = json_object_get(json_object_get(svc, "plan"), "held_by");
        if (as_json) {
            json_array_append_new(out, json_pack("{s:O, s:O, s:O*}",
                                                 "service", json_object_get(svc, "name"),
                                                 "gates", gates != NULL ? gates : json_null(),
                                                 "plan_held_by", held));
            continue;
        }
        json_array_foreach(gates, k, g) {
            if (n++ == 0)
                printf("%-12s %-16s %-16s %-8s %-12s %-26s %s\n", "SERVICE", "GATE", "KIND",
                       "VERDICT", "VALUE", "SINCE", "REASON");
            printf("%-12s %-16s %-16s %-8s %-12s %-26s %s\n",
                   show(json_object_get(svc, "name"), b[0], sizeof(b[0])),
                   show(json_object_get(g, "name"), b[1], sizeof(b[1])),
                   show(json_object_get(g, "kind"), b[2], sizeof(b[2])),
                   show(json_object_get(g, "verdict"), b[3], sizeof(b[3])),
                   show(json_object_get(g, "value"), b[4], sizeof(b[4])),
                   show(json_object_get(g, "since"), b[5], sizeof(b[5])),
                   show(json_object_get(g, "reason"), b[6], sizeof(b[6])));
        }
        if (json_is_string(held))
            printf("%s: the plan is held by %s\n",
                   show(json_object_get(svc, "name"), b[0], sizeof(b[0])),
                   show(held, b[1], sizeof(b[1])));
    }
    if (as_json) {
        text = json_dumps(out, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15));
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else if (n == 0) {
        printf("no migration gates configured\n");
    }
    json_decref(out);
}
