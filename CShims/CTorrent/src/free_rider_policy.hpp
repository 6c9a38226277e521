// The free-rider policy, in one place: the session settings, the per-torrent add flags and the
// plugins. Swift chooses what ct_settings exposes (listen interfaces, DHT, incoming, uTP, limits,
// memory budget) and what to fetch when; the guarantees below are set here.
//
// What libtorrent lets us suppress, and how:
//  * no piece is ever served: fixed-slots choker with unchoke_slots_limit 0, the local peer class
//    (127/8, LAN) made to obey the slot limit (libtorrent exempts it by default), no allowed-fast
//    set, and a peer plugin that swallows any REQUEST that would still reach the default handler;
//  * read-only DHT (BEP 43) and every torrent added with disable_dht, so no announce_peer is ever
//    sent; peers come from explicit dht_get_peers lookups, trackers we were told to keep, or
//    explicit connects; no ut_pex plugin, no LSD/UPnP/NAT-PMP, incoming connections only if asked;
//  * nothing relayed touches disk: pieces live in an in-memory disk_interface (memory_storage.hpp)
//    and are dropped as soon as the stream has consumed them (ct_release_piece) or the torrent goes.
// What libtorrent cannot suppress: the handshake and the bitfield/HAVE_NONE sent on connect, HAVE
// messages to peers that lack the piece (send_redundant_have=false only spares peers that have
// it), serving metadata over ut_metadata (needed to resolve magnets), and get_peers queries that
// reveal our interest to the DHT nodes asked. The Swift side keeps these small: it connects only
// to peers it needs and removes a torrent as soon as its last stream ends.
#ifndef PEERSM_CTORRENT_FREE_RIDER_POLICY_HPP
#define PEERSM_CTORRENT_FREE_RIDER_POLICY_HPP
#include "CTorrent.h"

#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/extensions.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/settings_pack.hpp>

#include <atomic>
#include <cstdint>
#include <memory>

namespace ct::free_rider {

// The session's settings for a validated ct_settings (listen_interfaces non-empty).
lt::settings_pack session_settings(ct_settings const &cfg);

// Defence in depth behind the choker settings: a piece request that reaches us is swallowed before
// libtorrent's default handler could read and send the block. `refused` counts them.
struct refuse_plugin final : lt::plugin {
    lt::feature_flags_t implemented_features() override;
    std::shared_ptr<lt::torrent_plugin> new_torrent(lt::torrent_handle const &, lt::client_data_t) override;
    std::atomic<int64_t> refused{0};
};

// Adds the session's plugins and makes every peer class obey the (zero) unchoke slot limit.
// Returns the request-swallowing plugin, whose count the session reports.
std::shared_ptr<refuse_plugin> install(lt::session &ses);

// Applies the per-torrent flags to a torrent about to be added: trackers dropped unless
// keep_trackers, no web seeds, no DHT/LSD/PEX, not auto-managed, every piece at priority 0.
void prepare_add(lt::add_torrent_params &p, int32_t keep_trackers, lt::session const &ses);

} // namespace ct::free_rider
#endif
