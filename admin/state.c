/*
 * admin/state: the names of the control plane's value types (see state.h).
 */
#include "admin/state.h"

#include <string.h>

const char *const adm_state_names[ADM_ST__COUNT] = {
    "steady", "progressing", "paused", "rolled_back", "frozen", "promoted",
};

int
adm_state_from_name(const char *name)
{
    int i;

    if (name == NULL)
        return -1;
    for (i = 0; i < ADM_ST__COUNT; i++) {
        if (strcmp(name, adm_state_names[i]) == 0)
            return i;
    }
    return -1;
}

const char *const adm_rollback_reason_names[ADM_RB__COUNT] = {
    "manual", "error_rate", "p99", "ratio_to_legacy", "new_down", "gate", "diff_rate", "other",
};
