// The extern "C" entry points (see include/CTorrent.h). Each one catches everything, through
// `guarded` or its own try: no C++ exception may unwind into Swift. Records passed in are checked
// against their struct_size before anything is written.
#include "CTorrent.h"

#include "alerts.hpp"
#include "boundary.hpp"
#include "session.hpp"

#include <libtorrent/entry.hpp>
#include <libtorrent/hex.hpp>
#include <libtorrent/ip_filter.hpp>
#include <libtorrent/magnet_uri.hpp>
#include <libtorrent/peer_info.hpp>
#include <libtorrent/torrent_info.hpp>
#include <libtorrent/torrent_status.hpp>

#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

using ct::copy_str;
using ct::fail;
using ct::guarded;
using ct::set_endpoint;
using ct::state_of;

static bool parse_hex20(const char *hex, lt::sha1_hash &out) {
    if (!hex || std::strlen(hex) != 40) return false;
    return lt::aux::from_hex({hex, 40}, out.data());
}

extern "C" {

ct_session *ct_session_create(const ct_settings *cfg, ct_error *err) {
    ct_session *result = nullptr;
    guarded(err, [&]() -> int32_t {
        if (!cfg || cfg->struct_size != sizeof(ct_settings)) return fail(err, CT_EINVAL, "ct_settings size mismatch");
        if (!cfg->listen_interfaces || !*cfg->listen_interfaces)
            return fail(err, CT_EINVAL, "listen_interfaces must not be empty");
        if (!cfg->save_path || !*cfg->save_path) return fail(err, CT_EINVAL, "save_path must not be empty");
        result = ct::create_session(*cfg).release();
        return CT_OK;
    });
    return result;
}

void ct_session_destroy(ct_session *s) {
    if (!s) return;
    try {
        s->ses.reset();   // joins libtorrent's threads; the store goes with it
    } catch (...) {
    }
    delete s;
}

int32_t ct_session_listen_port(ct_session *s) {
    try { return s && s->ses ? s->ses->listen_port() : 0; } catch (...) { return 0; }
}

static int32_t apply(ct_session *s, const char *name, ct_error *err, std::function<void(lt::settings_pack &, int)> set,
                     int want_type) {
    return guarded(err, [&]() -> int32_t {
        if (!s || !name) return fail(err, CT_EINVAL, "null argument");
        int const key = lt::setting_by_name(name);
        if (key < 0 || (key & lt::settings_pack::type_mask) != want_type)
            return fail(err, CT_EINVAL, std::string("unknown setting or wrong type: ") + name);
        lt::settings_pack p;
        set(p, key);
        s->ses->apply_settings(std::move(p));
        return CT_OK;
    });
}

int32_t ct_session_set_bool(ct_session *s, const char *name, int32_t value, ct_error *err) {
    return apply(s, name, err, [&](lt::settings_pack &p, int k) { p.set_bool(k, value != 0); }, lt::settings_pack::bool_type_base);
}
int32_t ct_session_set_int(ct_session *s, const char *name, int32_t value, ct_error *err) {
    return apply(s, name, err, [&](lt::settings_pack &p, int k) { p.set_int(k, value); }, lt::settings_pack::int_type_base);
}
int32_t ct_session_set_string(ct_session *s, const char *name, const char *value, ct_error *err) {
    return apply(s, name, err, [&](lt::settings_pack &p, int k) { p.set_str(k, value ? value : ""); },
                 lt::settings_pack::string_type_base);
}

int32_t ct_session_stats_get(ct_session *s, ct_session_stats *out, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!s || !out || out->struct_size != sizeof(ct_session_stats)) return fail(err, CT_EINVAL, "bad arguments");
        std::vector<lt::torrent_handle> hs;
        int64_t up, down;
        {
            std::lock_guard<std::mutex> l(s->tm);
            for (auto &kv : s->by_id) hs.push_back(kv.second.h);
            up = s->removed_up;
            down = s->removed_down;
        }
        for (auto &h : hs) {
            try {
                lt::torrent_status const st = h.status({});
                up += st.total_payload_upload;
                down += st.total_payload_download;
            } catch (...) {
            }
        }
        out->payload_uploaded = up;
        out->payload_downloaded = down;
        out->store_bytes = s->store ? s->store->bytes() : 0;
        out->store_peak_bytes = s->store ? s->store->peak() : 0;
        out->requests_refused = s->refuse ? s->refuse->refused.load() : 0;
        out->num_torrents = int32_t(hs.size());
        return CT_OK;
    });
}

// ---- torrents -------------------------------------------------------------------------------------

int32_t ct_add_magnet(ct_session *s, const char *uri, int32_t keep_trackers, uint64_t *id, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!s || !uri) return fail(err, CT_EINVAL, "null argument");
        lt::error_code ec;
        lt::add_torrent_params p = lt::parse_magnet_uri(uri, ec);
        if (ec) return fail(err, CT_EINVAL, "malformed magnet link: " + ec.message());
        // The link's author chose these: the caller connects the ones its policy allows.
        p.peers.clear();
        p.dht_nodes.clear();
        return ct::add(s, p, keep_trackers, id, err);
    });
}

int32_t ct_magnet_endpoints(const char *uri, ct_magnet_endpoint *out, size_t cap, size_t *count, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!uri || (cap && !out)) return fail(err, CT_EINVAL, "null argument");
        lt::error_code ec;
        lt::add_torrent_params const p = lt::parse_magnet_uri(uri, ec);
        if (ec) return fail(err, CT_EINVAL, "malformed magnet link: " + ec.message());
        size_t n = 0;
        auto put = [&](int kind, std::string const &host, int port) {
            // Longer than any host name: skipped rather than truncated into another name.
            if (host.size() >= sizeof(out->host)) return true;
            if (n < cap) {
                if (out[n].struct_size != sizeof(ct_magnet_endpoint)) return false;
                ct_magnet_endpoint &o = out[n];
                std::memset(reinterpret_cast<char *>(&o) + sizeof(uint32_t), 0, sizeof(o) - sizeof(uint32_t));
                o.kind = kind;
                copy_str(o.host, host);
                o.port = uint16_t(port);
            }
            ++n;
            return true;
        };
        for (auto const &ep : p.peers)
            if (!put(CT_MAGNET_PEER, ep.address().to_string(), ep.port()))
                return fail(err, CT_EINVAL, "ct_magnet_endpoint size mismatch");
        for (auto const &node : p.dht_nodes)
            if (!put(CT_MAGNET_DHT_NODE, node.first, node.second))
                return fail(err, CT_EINVAL, "ct_magnet_endpoint size mismatch");
        if (count) *count = n;
        return CT_OK;
    });
}

int32_t ct_magnet_info_hash(const char *uri, char out[41], ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!uri || !out) return fail(err, CT_EINVAL, "null argument");
        out[0] = 0;
        lt::error_code ec;
        lt::add_torrent_params const p = lt::parse_magnet_uri(uri, ec);
        if (ec) return fail(err, CT_EINVAL, "malformed magnet link: " + ec.message());
        if (p.info_hashes.has_v1()) std::snprintf(out, 41, "%s", lt::aux::to_hex(p.info_hashes.v1).c_str());
        return CT_OK;
    });
}

int32_t ct_add_infohash(ct_session *s, const char *hex40, uint64_t *id, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!s || !hex40) return fail(err, CT_EINVAL, "null argument");
        lt::sha1_hash ih;
        if (!parse_hex20(hex40, ih)) return fail(err, CT_EINVAL, "an info-hash is 40 hexadecimal digits");
        lt::add_torrent_params p;
        p.info_hashes.v1 = ih;
        return ct::add(s, p, 0, id, err);
    });
}

int32_t ct_add_torrent_bytes(ct_session *s, const uint8_t *bytes, size_t len, int32_t keep_trackers, uint64_t *id,
                             ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!s || !bytes || len == 0) return fail(err, CT_EINVAL, "empty .torrent");
        lt::error_code ec;
        auto ti = std::make_shared<lt::torrent_info>(lt::span<char const>(reinterpret_cast<char const *>(bytes),
                                                                           std::ptrdiff_t(len)), ec, lt::from_span);
        if (ec) return fail(err, CT_EINVAL, "malformed .torrent: " + ec.message());
        lt::add_torrent_params p;
        for (auto const &t : ti->trackers()) p.trackers.push_back(t.url);
        p.ti = std::move(ti);
        return ct::add(s, p, keep_trackers, id, err);
    });
}

int32_t ct_remove_torrent(ct_session *s, uint64_t id, int32_t delete_files, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!s) return fail(err, CT_EINVAL, "null session");
        lt::torrent_handle h;
        {
            std::lock_guard<std::mutex> l(s->tm);
            auto it = s->by_id.find(id);
            if (it == s->by_id.end()) return fail(err, CT_ENOTFOUND, "no such torrent");
            h = it->second.h;
            s->by_id.erase(it);
        }
        try {
            lt::torrent_status const st = h.status({});
            std::lock_guard<std::mutex> l(s->tm);
            s->removed_up += st.total_payload_upload;
            s->removed_down += st.total_payload_download;
        } catch (...) {
        }
        s->ses->remove_torrent(h, delete_files ? lt::session::delete_files : lt::remove_flags_t{});
        return CT_OK;
    });
}

int32_t ct_connect_peer(ct_session *s, uint64_t id, const char *ip, uint16_t port, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::torrent_handle h = ct::find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        lt::error_code ec;
        lt::address const a = lt::make_address(ip ? ip : "", ec);
        if (ec || port == 0) return fail(err, CT_EINVAL, std::string("bad peer address: ") + (ip ? ip : ""));
        h.connect_peer(lt::tcp::endpoint(a, port));
        return CT_OK;
    });
}

int32_t ct_torrent_info_get(ct_session *s, uint64_t id, ct_torrent_info *out, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!out || out->struct_size != sizeof(ct_torrent_info)) return fail(err, CT_EINVAL, "bad arguments");
        lt::torrent_handle h = ct::find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        std::memset(reinterpret_cast<char *>(out) + sizeof(uint32_t), 0, sizeof(*out) - sizeof(uint32_t));
        lt::sha1_hash v1, best;
        ct::hashes(h, v1, best);
        copy_str(out->info_hash_hex, lt::aux::to_hex(v1.is_all_zeros() ? best : v1));
        std::shared_ptr<const lt::torrent_info> ti = h.torrent_file();
        if (!ti || !ti->is_valid()) return CT_OK;
        out->has_metadata = 1;
        out->num_files = ti->num_files();
        out->num_pieces = ti->num_pieces();
        out->piece_length = ti->piece_length();
        out->total_size = ti->total_size();
        copy_str(out->name, ti->name());
        return CT_OK;
    });
}

int32_t ct_file_info_get(ct_session *s, uint64_t id, int32_t index, ct_file_info *out, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!out || out->struct_size != sizeof(ct_file_info)) return fail(err, CT_EINVAL, "bad arguments");
        lt::torrent_handle h = ct::find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        std::shared_ptr<const lt::torrent_info> ti = h.torrent_file();
        if (!ti || !ti->is_valid()) return fail(err, CT_ENOMETADATA, "metadata not received yet");
        if (index < 0 || index >= ti->num_files()) return fail(err, CT_ENOTFOUND, "no such file index");
        lt::file_storage const &fs = ti->files();
        lt::file_index_t const fi(index);
        out->size = fs.file_size(fi);
        out->offset = fs.file_offset(fi);
        out->is_pad = fs.pad_file_at(fi) ? 1 : 0;
        copy_str(out->path, fs.file_path(fi));
        return CT_OK;
    });
}

static int32_t with_piece(ct_session *s, uint64_t id, int32_t piece, ct_error *err,
                          std::function<void(lt::torrent_handle &, lt::piece_index_t)> f) {
    return guarded(err, [&]() -> int32_t {
        lt::torrent_handle h = ct::find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        std::shared_ptr<const lt::torrent_info> ti = h.torrent_file();
        if (!ti || !ti->is_valid()) return fail(err, CT_ENOMETADATA, "metadata not received yet");
        if (piece < 0 || piece >= ti->num_pieces()) return fail(err, CT_EINVAL, "piece index out of range");
        f(h, lt::piece_index_t(piece));
        return CT_OK;
    });
}

int32_t ct_set_piece_deadline(ct_session *s, uint64_t id, int32_t piece, int32_t ms, ct_error *err) {
    return with_piece(s, id, piece, err, [&](lt::torrent_handle &h, lt::piece_index_t p) {
        h.set_piece_deadline(p, ms < 0 ? 0 : ms, {});   // no alert_when_available: we read from the store
    });
}

int32_t ct_reset_piece_deadline(ct_session *s, uint64_t id, int32_t piece, ct_error *err) {
    return with_piece(s, id, piece, err, [&](lt::torrent_handle &h, lt::piece_index_t p) { h.reset_piece_deadline(p); });
}

int32_t ct_clear_piece_deadlines(ct_session *s, uint64_t id, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::torrent_handle h = ct::find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        h.clear_piece_deadlines();
        return CT_OK;
    });
}

int32_t ct_set_piece_priorities(ct_session *s, uint64_t id, int32_t first, int32_t last, int32_t prio, int32_t others,
                                ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::torrent_handle h = ct::find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        std::shared_ptr<const lt::torrent_info> ti = h.torrent_file();
        if (!ti || !ti->is_valid()) return fail(err, CT_ENOMETADATA, "metadata not received yet");
        int const n = ti->num_pieces();
        if (first < 0 || last < first || last >= n || prio < 0 || prio > 7 || others > 7)
            return fail(err, CT_EINVAL, "bad piece range or priority");
        if (others >= 0) {
            std::vector<lt::download_priority_t> v(size_t(n), lt::download_priority_t{std::uint8_t(others)});
            for (int i = first; i <= last; ++i) v[size_t(i)] = lt::download_priority_t(std::uint8_t(prio));
            h.prioritize_pieces(v);
        } else {
            std::vector<std::pair<lt::piece_index_t, lt::download_priority_t>> v;
            for (int i = first; i <= last; ++i) v.emplace_back(lt::piece_index_t(i), lt::download_priority_t(std::uint8_t(prio)));
            h.prioritize_pieces(v);
        }
        return CT_OK;
    });
}

int32_t ct_piece_ready(ct_session *s, uint64_t id, int32_t piece) {
    try {
        lt::sha1_hash a, b;
        bool verified = false;
        if (!s || !ct::lookup(s, id, piece, a, b, verified) || !verified) return 0;
        return s->store && s->store->holds(a, b, piece) ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

int32_t ct_read_piece(ct_session *s, uint64_t id, int32_t piece, uint8_t *buf, size_t cap, size_t *len, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::sha1_hash a, b;
        bool verified = false;
        if (!s || !ct::lookup(s, id, piece, a, b, verified)) return fail(err, CT_ENOTFOUND, "no such torrent");
        // Only verified pieces: the store also holds half-written ones. (Never libtorrent's
        // read_piece: in 2.0.8 it stops the torrent when asked for a piece it lacks.)
        if (!verified) return fail(err, CT_ENOTREADY, "piece not downloaded and verified");
        int32_t const rc = s->store ? s->store->read(a, b, piece, buf, cap, len) : CT_ENOTREADY;
        if (rc == CT_ENOTREADY) return fail(err, rc, "piece no longer held (released)");
        if (rc == CT_ESMALLBUF) return fail(err, rc, "buffer too small for the piece");
        return rc;
    });
}

int32_t ct_release_piece(ct_session *s, uint64_t id, int32_t piece, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::sha1_hash a, b;
        bool verified = false;
        if (!s || !ct::lookup(s, id, piece, a, b, verified)) return fail(err, CT_ENOTFOUND, "no such torrent");
        ct::mark(s, id, piece, false);
        if (s->store) s->store->release(a, b, piece);
        return CT_OK;
    });
}

int32_t ct_torrent_stats_get(ct_session *s, uint64_t id, ct_torrent_stats *out, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!out || out->struct_size != sizeof(ct_torrent_stats)) return fail(err, CT_EINVAL, "bad arguments");
        lt::torrent_handle h = ct::find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        lt::torrent_status const st = h.status({});
        std::memset(reinterpret_cast<char *>(out) + sizeof(uint32_t), 0, sizeof(*out) - sizeof(uint32_t));
        out->state = state_of(st.state);
        out->paused = (st.flags & lt::torrent_flags::paused) ? 1 : 0;
        out->has_metadata = st.has_metadata ? 1 : 0;
        out->num_peers = st.num_peers;
        out->num_seeds = st.num_seeds;
        out->num_pieces_have = st.num_pieces;
        out->payload_uploaded = st.total_payload_upload;
        out->payload_downloaded = st.total_payload_download;
        out->download_rate = st.download_payload_rate;
        out->upload_rate = st.upload_payload_rate;
        out->error_code = st.errc.value();
        if (st.errc) copy_str(out->error, st.errc.message());
        return CT_OK;
    });
}

int32_t ct_peer_stats_get(ct_session *s, uint64_t id, ct_peer_stats *out, size_t cap, size_t *count, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::torrent_handle h = ct::find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        std::vector<lt::peer_info> peers;
        h.get_peer_info(peers);
        if (count) *count = peers.size();
        for (size_t i = 0; i < peers.size() && i < cap; ++i) {
            if (out[i].struct_size != sizeof(ct_peer_stats)) return fail(err, CT_EINVAL, "ct_peer_stats size mismatch");
            auto const &p = peers[i];
            ct_peer_stats &o = out[i];
            std::memset(reinterpret_cast<char *>(&o) + sizeof(uint32_t), 0, sizeof(o) - sizeof(uint32_t));
            set_endpoint(o.address, o.port, p.ip.address(), p.ip.port());
            o.is_seed = (p.flags & lt::peer_info::seed) ? 1 : 0;
            o.is_utp = (p.flags & lt::peer_info::utp_socket) ? 1 : 0;
            o.is_incoming = (p.source & lt::peer_info::incoming) ? 1 : 0;
            o.we_choke = (p.flags & lt::peer_info::choked) ? 1 : 0;
            o.peer_interested = (p.flags & lt::peer_info::remote_interested) ? 1 : 0;
            o.payload_uploaded = p.total_upload;
            o.payload_downloaded = p.total_download;
            copy_str(o.client, p.client);
        }
        return CT_OK;
    });
}

// ---- IP filter, DHT -------------------------------------------------------------------------------

int32_t ct_set_ip_filter(ct_session *s, const ct_ip_range *ranges, size_t n, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!s || (n && !ranges)) return fail(err, CT_EINVAL, "null argument");
        lt::ip_filter f;
        for (size_t i = 0; i < n; ++i) {
            lt::error_code e1, e2;
            lt::address const a = lt::make_address(ranges[i].first ? ranges[i].first : "", e1);
            lt::address const b = lt::make_address(ranges[i].last ? ranges[i].last : "", e2);
            if (e1 || e2 || a.is_v4() != b.is_v4() || b < a)
                return fail(err, CT_EINVAL, "bad IP range #" + std::to_string(i) + ": " +
                                                (ranges[i].first ? ranges[i].first : "") + " - " +
                                                (ranges[i].last ? ranges[i].last : ""));
            f.add_rule(a, b, lt::ip_filter::blocked);
        }
        s->ses->set_ip_filter(std::move(f));
        return CT_OK;
    });
}

int32_t ct_dht_add_node(ct_session *s, const char *host, uint16_t port, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!s || !host || !*host || port == 0) return fail(err, CT_EINVAL, "bad DHT node");
        s->ses->add_dht_node({host, int(port)});
        return CT_OK;
    });
}

int32_t ct_dht_get_peers(ct_session *s, const char *hex40, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::sha1_hash ih;
        if (!s || !parse_hex20(hex40, ih)) return fail(err, CT_EINVAL, "an info-hash is 40 hexadecimal digits");
        s->ses->dht_get_peers(ih);
        return CT_OK;
    });
}

int32_t ct_dht_direct_get_peers(ct_session *s, const char *ip, uint16_t port, const char *hex40, uint64_t cookie,
                                ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::sha1_hash ih;
        if (!s || !parse_hex20(hex40, ih)) return fail(err, CT_EINVAL, "an info-hash is 40 hexadecimal digits");
        lt::error_code ec;
        lt::address const a = lt::make_address(ip ? ip : "", ec);
        if (ec || port == 0) return fail(err, CT_EINVAL, "bad DHT node address");
        lt::entry e;
        e["q"] = "get_peers";
        e["a"]["info_hash"] = std::string(ih.data(), 20);
        s->ses->dht_direct_request(lt::udp::endpoint(a, port), e,
                                   lt::client_data_t(reinterpret_cast<ct::cookie_tag *>(uintptr_t(cookie))));
        return CT_OK;
    });
}

// ---- alerts ---------------------------------------------------------------------------------------

size_t ct_pop_alerts(ct_session *s, ct_alert *out, size_t cap) {
    if (!s || !out) return 0;
    try {
        std::lock_guard<std::mutex> l(s->am);
        if (s->pending.size() < cap) {
            std::vector<lt::alert *> alerts;
            s->ses->pop_alerts(&alerts);
            for (lt::alert *a : alerts) ct::convert(s, a, s->pending);
        }
        size_t n = 0;
        while (n < cap && !s->pending.empty()) {
            out[n++] = s->pending.front();
            s->pending.pop_front();
        }
        return n;
    } catch (...) {
        return 0;
    }
}

int32_t ct_wait_alerts(ct_session *s, int32_t timeout_ms) {
    if (!s) return 0;
    try {
        {
            std::lock_guard<std::mutex> l(s->am);
            if (!s->pending.empty()) return 1;
        }
        return s->ses->wait_for_alert(std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms)) ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

} // extern "C"
