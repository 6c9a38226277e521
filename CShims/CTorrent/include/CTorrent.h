// extern "C" API over libtorrent-rasterbar 2.0. C++ stays inside; no exception crosses this boundary.
#ifndef PEERSM_CTORRENT_H
#define PEERSM_CTORRENT_H
#include <stddef.h>
#include <stdint.h>
#endif
