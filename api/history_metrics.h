/* history_metrics.h: metric ids of the history and recovery (history.h, recover.h),
 * registered by history_metrics_init() once at start-up. Loop thread. */
#ifndef WSGW_API_HISTORY_METRICS_H
#define WSGW_API_HISTORY_METRICS_H

typedef struct hist_metrics {
    int add_ok, add_full, add_error;    /* wsapi_history_adds_total{result} */
    int push_refused;                   /* wsapi_history_push_refused_total */
    int read_recovered, read_missed, read_error, read_refused; /* wsapi_history_reads_total */
    int read_msgs;                      /* wsapi_history_read_messages_total */
    int ev_recover;                     /* wsapi_events_total{kind="recover"} */
    int channels, bytes;                /* gauges of the memory store */
} hist_metrics_t;

extern hist_metrics_t hist_m;

void history_metrics_init(void);

#endif
