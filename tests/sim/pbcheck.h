/* pbcheck.h: the hand-written protobuf codecs of the hot path (gateway/dsdec.h, api/updec.h,
 * api/downstream.h's send1, gateway/batch.h's encoding) against protobuf-c, for
 * tests/unit/test_pbcodec.c and fuzz/fuzz_pbcodec.c.
 *
 * A "dump" is a canonical text of what a decoded message says, built from protobuf-c's
 * unpacked struct or from our views alike (strings as C code sees protobuf-c's copies: up to
 * the first NUL), so that two decoders agree exactly when their dumps are equal. */
#ifndef WSGW_PBCHECK_H
#define WSGW_PBCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "wsgw.pb-c.h"

/* pbcheck_downstream / pbcheck_upstream: decodes msg with ours and with protobuf-c. Returns
 * true when both refuse it or both accept it with equal dumps; *ours and *theirs get the dumps
 * ("REFUSED" for a refusal). */
bool pbcheck_downstream(const uint8_t *msg, size_t len, buf_t *ours, buf_t *theirs);
bool pbcheck_upstream(const uint8_t *msg, size_t len, buf_t *ours, buf_t *theirs);

/* Dumps of protobuf-c structs (what a message built with protobuf-c says). */
void pbcheck_dump_downstream(const Wsgw__V1__Downstream *d, buf_t *out);
void pbcheck_dump_upstream(const Wsgw__V1__Upstream *u, buf_t *out);

#endif
