/* wake.h: coalesced cross-thread wake-up over an eventfd.
 *
 * Producers push into rings, then call wake_signal(): only the first signal after the consumer
 * last cleared the flag costs a write(2); the rest of the burst costs one atomic exchange.
 * The consumer calls wake_clear() when the eventfd is readable and then drains every ring:
 * clearing before draining means an item pushed after the drain started is either seen by the
 * drain or raises a fresh signal (same scheme as libuv's uv_async_send). */
#ifndef WSGW_WAKE_H
#define WSGW_WAKE_H

#include <stdatomic.h>
#include <stdbool.h>

typedef struct wake {
    int fd;               /* eventfd, non-blocking; owned by the consumer */
    _Atomic int pending;  /* 1 while a wake is outstanding; any thread */
} wake_t;

/* wake_init: creates the eventfd. Returns 0 or -errno. */
int wake_init(wake_t *w);
/* wake_destroy: closes the eventfd (consumer thread, after producers stopped). */
void wake_destroy(wake_t *w);

/* wake_raise (any thread): true when the caller is the one that must deliver the wake-up
 * (the flag was clear). Building block for other wake mechanisms (lws_cancel_service). */
static inline bool wake_raise(_Atomic int *pending)
{
    return atomic_exchange_explicit(pending, 1, memory_order_seq_cst) == 0;
}
/* wake_lower (consumer thread): clears the flag; call before draining. */
static inline void wake_lower(_Atomic int *pending)
{
    atomic_store_explicit(pending, 0, memory_order_seq_cst);
}

/* wake_signal (any thread): coalesced wake of the consumer. */
void wake_signal(wake_t *w);
/* wake_consume (consumer thread): reads the eventfd but leaves the flag raised, so producers
 * keep pushing without signalling (a consumer that polls; lower it with wake_lower later). */
void wake_consume(wake_t *w);
/* wake_clear (consumer thread): reads the eventfd and lowers the flag; drain afterwards. */
void wake_clear(wake_t *w);

#endif
