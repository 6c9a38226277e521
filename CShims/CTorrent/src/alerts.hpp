// libtorrent alerts → ct_alert records. Conversion also keeps the session's torrent map current
// (verified pieces, store keys learnt with the metadata, ids of removed torrents).
#ifndef PEERSM_CTORRENT_ALERTS_HPP
#define PEERSM_CTORRENT_ALERTS_HPP
#include "CTorrent.h"

#include <libtorrent/alert.hpp>

#include <deque>

namespace ct {

struct cookie_tag;   // dht_direct_request cookies travel as a tagged pointer-sized integer

// Appends the records for one alert (none for kinds the C API does not report, several for a
// DHT node's reply).
void convert(ct_session *s, lt::alert *a, std::deque<ct_alert> &out);

} // namespace ct
#endif
