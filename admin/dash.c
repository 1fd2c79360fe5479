/*
 * dash: see dash.h. The byte arrays come from the generated
 * $(BUILD)/gen/dash_assets.c (admin/dash/embed.sh).
 */
#include "admin/dash.h"

#include <string.h>

extern const unsigned char adm_dash_index_html[], adm_dash_dash_js[], adm_dash_dash_css[];
extern const size_t adm_dash_index_html_len, adm_dash_dash_js_len, adm_dash_dash_css_len;

const struct adm_dash_asset *
adm_dash_find(const char *path, size_t len)
{
    static struct adm_dash_asset assets[3];
    size_t i;

    if (assets[0].path == NULL) {      /* the lengths are not constant expressions */
        assets[0] = (struct adm_dash_asset){ "/", "text/html; charset=utf-8",
                                             adm_dash_index_html, adm_dash_index_html_len };
        assets[1] = (struct adm_dash_asset){ "/dash.js", "text/javascript; charset=utf-8",
                                             adm_dash_dash_js, adm_dash_dash_js_len };
        assets[2] = (struct adm_dash_asset){ "/dash.css", "text/css; charset=utf-8",
                                             adm_dash_dash_css, adm_dash_dash_css_len };
    }
    for (i = 0; i < sizeof(assets) / sizeof(assets[0]); i++) {
        if (strlen(assets[i].path) == len && memcmp(assets[i].path, path, len) == 0)
            return &assets[i];
    }
    return NULL;
}
