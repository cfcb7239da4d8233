/* target.h: who a push or kick goes to (wsgw.v1.Target as plain C, owned arrays).
 * Filled by push_json.c (HTTP) and grpc_server.c (gRPC Push); routed by router.c. */
#ifndef WSGW_API_TARGET_H
#define WSGW_API_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct target {
    uint64_t *conn_ids;
    size_t n_conn_ids;
    char **user_ids; /* non-empty strings */
    size_t n_user_ids;
    char *room;      /* NULL or non-empty */
    bool all;
} target_t;

/* target_empty: true when the target names nobody. */
bool target_empty(const target_t *t);

/* target_free: releases the arrays and strings; *t is zeroed. */
void target_free(target_t *t);

#endif
