/* redis_uv.h: hiredis' async context on a libuv loop (ws-api's loop thread only).
 *
 * Ours, not hiredis/adapters/libuv.h: that one ignores uv_poll errors, and libuv reports a
 * socket error (POLLERR: e.g. a refused connect) as status UV_EBADF with the poll stopped, so a
 * connect to a Redis that is down hung until our connect deadline. Here an error is handed to
 * hiredis as the event it waits for, and hiredis finds the socket error itself (SO_ERROR on
 * connect, a failing read otherwise) and fails the context. */
#ifndef WSGW_API_REDIS_UV_H
#define WSGW_API_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* redis_uv_attach: polls ac's socket on loop; hiredis' cleanup closes the poll (its memory is
 * freed when libuv has closed it). 0, or -1 (attached already, out of memory, bad fd). */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
