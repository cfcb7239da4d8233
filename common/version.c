/* version.c: the release string, set by the Makefile from the file VERSION. */
#include "version.h"

#ifndef WSGW_VERSION
#error "WSGW_VERSION is defined by the Makefile (from the file VERSION)"
#endif

const char wsgw_version[] = WSGW_VERSION;
