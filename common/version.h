/* version.h: the release of the three programs (file VERSION at the top of the tree). */
#ifndef WSGW_VERSION_H
#define WSGW_VERSION_H

/* wsgw_version: "0.1.0"; what --version prints and the version label of
 * wsgw_build_info / wsapi_build_info. */
extern const char wsgw_version[];

#endif
