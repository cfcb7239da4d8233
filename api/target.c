/* target.c: push/kick target helpers (see target.h). */
#include "target.h"

#include <stdlib.h>
#include <string.h>

bool target_empty(const target_t *t)
{
    return t->n_conn_ids == 0 && t->n_user_ids == 0 && !(t->room && *t->room) && !t->all;
}

void target_free(target_t *t)
{
    for (size_t i = 0; i < t->n_user_ids; i++)
        free(t->user_ids[i]);
    free(t->user_ids);
    free(t->conn_ids);
    free(t->room);
    memset(t, 0, sizeof *t);
}
