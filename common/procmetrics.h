/* procmetrics.h: the standard process_* metrics every Prometheus exporter serves
 * (process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds), read from /proc at scrape
 * time, as the Go and Python client libraries do. */
#ifndef WSGW_PROCMETRICS_H
#define WSGW_PROCMETRICS_H

#include "buf.h"

/* procmetrics_render: appends the process_* families (HELP, TYPE, one sample each) for the
 * calling process. A value /proc does not give is left out, never invented. Any thread. */
void procmetrics_render(buf_t *out);

/* procmetrics_build_info: registers the gauge `name`{version="<wsgw_version>"} with value 1
 * (wsgw_build_info, wsapi_build_info). Call once at start-up. */
void procmetrics_build_info(const char *name);

#endif
