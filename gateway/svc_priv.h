/* svc_priv.h: what svc.c (the loop, wake-ups, drain) and svc_cmd.c (commands from writers)
 * share. Service thread only. */
#ifndef GW_SVC_PRIV_H
#define GW_SVC_PRIV_H

#include "svc.h"

/* gw_svc__run_cmd: runs one command from writer u (svc_cmd.c says what becomes of it). */
void gw_svc__run_cmd(gw_svc_t *s, int u, gw_cmd_t *cmd);
/* gw_svc__resync_run: writer u asked for this thread's presence again: an Open for every live
 * connection, then the marker, straight into the ring (svc_cmd.c). */
void gw_svc__resync_run(gw_svc_t *s, int u);
/* gw_svc__flush_dirty: writes out what the connections touched this turn have queued. */
void gw_svc__flush_dirty(gw_svc_t *s);

#endif
