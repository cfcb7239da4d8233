/* push.c: push / kick routing (see push.h). */
#include "push.h"

#include <string.h>

#include "clock.h"

int push_send(router_t *r, const target_t *t, const uint8_t *payload, size_t len, bool binary)
{
    Wsgw__V1__Send send = WSGW__V1__SEND__INIT;
    send.payload.data = (uint8_t *)payload;
    send.payload.len = len;
    send.binary = binary;
    send.api_ns = clock_wall_ns();
    Wsgw__V1__Command cmd = WSGW__V1__COMMAND__INIT;
    cmd.kind_case = WSGW__V1__COMMAND__KIND_SEND;
    cmd.send = &send;
    return router_route(r, t, &cmd, NULL);
}

int push_kick(router_t *r, const target_t *t, int code, const char *reason)
{
    Wsgw__V1__Kick kick = WSGW__V1__KICK__INIT;
    kick.code = code;
    kick.reason = (char *)(reason ? reason : "");
    Wsgw__V1__Command cmd = WSGW__V1__COMMAND__INIT;
    cmd.kind_case = WSGW__V1__COMMAND__KIND_KICK;
    cmd.kick = &kick;
    return router_route(r, t, &cmd, NULL);
}
