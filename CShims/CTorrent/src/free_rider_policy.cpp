// The free-rider policy (see free_rider_policy.hpp).
#include "free_rider_policy.hpp"

#include <libtorrent/alert.hpp>
#include <libtorrent/download_priority.hpp>
#include <libtorrent/extensions/smart_ban.hpp>
#include <libtorrent/extensions/ut_metadata.hpp>
#include <libtorrent/peer_class.hpp>
#include <libtorrent/torrent_flags.hpp>
#include <libtorrent/torrent_info.hpp>

#include <algorithm>

namespace ct::free_rider {

lt::settings_pack session_settings(ct_settings const &cfg) {
    lt::settings_pack pack;
    pack.set_str(lt::settings_pack::listen_interfaces, cfg.listen_interfaces);
    pack.set_str(lt::settings_pack::dht_bootstrap_nodes, cfg.dht_bootstrap_nodes ? cfg.dht_bootstrap_nodes : "");
    pack.set_bool(lt::settings_pack::enable_dht, cfg.enable_dht != 0);
    pack.set_bool(lt::settings_pack::dht_read_only, true);
    pack.set_bool(lt::settings_pack::enable_lsd, false);
    pack.set_bool(lt::settings_pack::enable_upnp, false);
    pack.set_bool(lt::settings_pack::enable_natpmp, false);
    pack.set_bool(lt::settings_pack::enable_incoming_tcp, cfg.enable_incoming != 0);
    pack.set_bool(lt::settings_pack::enable_incoming_utp, cfg.enable_incoming != 0 && cfg.enable_utp != 0);
    pack.set_bool(lt::settings_pack::enable_outgoing_utp, cfg.enable_utp != 0);
    pack.set_bool(lt::settings_pack::enable_outgoing_tcp, true);
    // Never unchoke: the fixed-slots choker with zero slots (local peers fixed in install), no
    // allowed-fast pieces, no suggestions or predictive HAVEs, no HAVE to peers that have the piece.
    pack.set_int(lt::settings_pack::choking_algorithm, lt::settings_pack::fixed_slots_choker);
    pack.set_int(lt::settings_pack::unchoke_slots_limit, 0);
    pack.set_int(lt::settings_pack::allowed_fast_set_size, 0);
    pack.set_int(lt::settings_pack::suggest_mode, lt::settings_pack::no_piece_suggestions);
    pack.set_int(lt::settings_pack::predictive_piece_announce, 0);
    pack.set_bool(lt::settings_pack::send_redundant_have, false);
    // A torrent whose unwanted pieces have priority 0 is "finished" between windows; keep seeds.
    pack.set_bool(lt::settings_pack::close_redundant_connections, false);
    pack.set_bool(lt::settings_pack::anonymous_mode, true);
    pack.set_bool(lt::settings_pack::allow_multiple_connections_per_ip, true);
    if (cfg.connections_limit > 0) pack.set_int(lt::settings_pack::connections_limit, cfg.connections_limit);
    pack.set_int(lt::settings_pack::alert_queue_size, cfg.alert_queue_size > 0 ? cfg.alert_queue_size : 20000);
    pack.set_int(lt::settings_pack::alert_mask,
                 static_cast<int>(static_cast<std::uint32_t>(
                     lt::alert_category::status | lt::alert_category::error | lt::alert_category::peer |
                     lt::alert_category::connect | lt::alert_category::ip_block |
                     lt::alert_category::dht_operation | lt::alert_category::piece_progress |
                     lt::alert_category::dht)));
    return pack;
}

namespace {

struct refuse_peer final : lt::peer_plugin {
    explicit refuse_peer(std::atomic<int64_t> &n) : refused(n) {}
    bool on_request(lt::peer_request const &) override { refused.fetch_add(1); return true; }
    std::atomic<int64_t> &refused;
};
struct refuse_torrent final : lt::torrent_plugin {
    explicit refuse_torrent(std::atomic<int64_t> &n) : refused(n) {}
    std::shared_ptr<lt::peer_plugin> new_connection(lt::peer_connection_handle const &) override {
        return std::make_shared<refuse_peer>(refused);
    }
    std::atomic<int64_t> &refused;
};

} // namespace

lt::feature_flags_t refuse_plugin::implemented_features() { return {}; }

std::shared_ptr<lt::torrent_plugin> refuse_plugin::new_torrent(lt::torrent_handle const &, lt::client_data_t) {
    return std::make_shared<refuse_torrent>(refused);
}

std::shared_ptr<refuse_plugin> install(lt::session &ses) {
    // ut_metadata resolves magnets, smart_ban bans peers that send bad data; ut_pex is left out.
    ses.add_extension(&lt::create_ut_metadata_plugin);
    ses.add_extension(&lt::create_smart_ban_plugin);
    auto refuse = std::make_shared<refuse_plugin>();
    ses.add_extension(refuse);
    // libtorrent exempts local peers (127/8, LAN ranges) from the unchoke slot limit.
    lt::peer_class_info lpc = ses.get_peer_class(lt::session::local_peer_class_id);
    lpc.ignore_unchoke_slots = false;
    ses.set_peer_class(lt::session::local_peer_class_id, lpc);
    lt::peer_class_info gpc = ses.get_peer_class(lt::session::global_peer_class_id);
    gpc.ignore_unchoke_slots = false;
    ses.set_peer_class(lt::session::global_peer_class_id, gpc);
    return refuse;
}

void prepare_add(lt::add_torrent_params &p, int32_t keep_trackers, lt::session const &ses) {
    if (!keep_trackers) { p.trackers.clear(); p.tracker_tiers.clear(); }
    p.url_seeds.clear();                              // web seeds would be fetched over plain HTTP
    p.flags &= ~(lt::torrent_flags::auto_managed | lt::torrent_flags::paused | lt::torrent_flags::upload_mode |
                 lt::torrent_flags::share_mode | lt::torrent_flags::seed_mode | lt::torrent_flags::sequential_download |
                 lt::torrent_flags::super_seeding);
    p.flags |= lt::torrent_flags::disable_dht | lt::torrent_flags::disable_lsd | lt::torrent_flags::disable_pex |
               lt::torrent_flags::duplicate_is_error | lt::torrent_flags::apply_ip_filter;
    // Nothing is fetched until a stream sets deadlines: every piece starts at priority 0.
    if (p.ti && p.ti->is_valid()) {
        p.flags |= lt::torrent_flags::default_dont_download;
    } else {
        // Without metadata (magnet, bare info-hash) default_dont_download is the wrong tool: when the
        // metadata arrives, torrent::init() first initialises the connected peers (a seed becomes
        // "interesting" and gets INTERESTED), then applies the zero file priorities, which flips
        // the peer to NOT_INTERESTED, and libtorrent ends TCP-like slow start for good on that
        // flip. The connection then restarts at 2 outstanding requests and grows only with the
        // 1-second rate samples (measured: 0.27 s to the first byte, ~1 s ramp, 0.4-0.6x the rate
        // of a plain download). Zero piece priorities from add_torrent_params are applied right
        // after, without re-evaluating interest, so the peer stays interested, keeps slow start,
        // and still nothing is requested. The vector only needs to cover the largest piece count
        // libtorrent accepts (max_piece_count); init() trims it to the real count, then frees it.
        int const max_pieces = ses.get_settings().get_int(lt::settings_pack::max_piece_count);
        p.piece_priorities.assign(size_t(std::max(1, max_pieces)), lt::dont_download);
    }
}

} // namespace ct::free_rider
