/* group.h: the worker processes of a run. The connections [0, users) are split into `procs`
 * contiguous ranges; each range runs in a forked child (its own RLIMIT_NOFILE budget) with
 * cfg->threads engine threads. Children talk to the parent over two pipes:
 *   child -> parent: READY (connect phase over: open connections, memory) then RESULT (its
 *                    report_t, written whole: histograms travel as exact bucket counts);
 *   parent -> child: one byte (or EOF) = stop.
 * Children die with the parent (PR_SET_PDEATHSIG).
 *
 * Thread: the main thread of the parent. */
#ifndef WSGW_BENCH_GROUP_H
#define WSGW_BENCH_GROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "report.h"

typedef struct group group_t;

/* group_signals: SIGINT/SIGTERM write to stop_fd (an eventfd) from then on; SIGPIPE ignored. */
void group_signals(int stop_fd);

/* group_start: forks the workers. stop_fd: the parent's stop eventfd (signals); it is left
 * alone in the children, which make their own. Returns the group or NULL (message in err). */
group_t *group_start(const bench_cfg_t *cfg, int procs, char err[ENGINE_ERR_LEN]);

/* group_wait_ready: waits until every worker has sent READY (or ended), or stop_fd fires, or
 * timeout_ms passes (-1: no limit). Returns the number of open connections at ready summed
 * over the workers that are ready; *all_ready tells whether all are. */
uint64_t group_wait_ready(group_t *g, int stop_fd, int timeout_ms, bool *all_ready);

/* group_sleep: waits ms milliseconds, less when stop_fd fires (returns false) or when every
 * worker has ended (all their connections gone; returns true). */
bool group_sleep(group_t *g, int stop_fd, int64_t ms);

/* group_stop: tells every worker to stop (close its connections and report). */
void group_stop(group_t *g);

/* group_collect: waits for every RESULT (sending stop to all workers if stop_fd fires),
 * merges them into out and reaps the children. Returns the number of workers that died
 * without a result or exited with a non-zero status (0 when all is well). Frees g. */
int group_collect(group_t *g, int stop_fd, report_t *out);

#endif
