/* wake.c: coalesced eventfd wake-up (see wake.h). */
#include "wake.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int wake_init(wake_t *w)
{
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0)
        return -errno;
    atomic_init(&w->pending, 0);
    return 0;
}

void wake_destroy(wake_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}

void wake_signal(wake_t *w)
{
    if (!wake_raise(&w->pending))
        return;
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: the consumer will wake anyway. */
    while (write(w->fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

void wake_consume(wake_t *w)
{
    uint64_t v;
    while (read(w->fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
}

void wake_clear(wake_t *w)
{
    wake_consume(w);
    wake_lower(&w->pending);
}
