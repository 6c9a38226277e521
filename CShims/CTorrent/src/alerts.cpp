// libtorrent alerts → ct_alert records (see alerts.hpp).
#include "alerts.hpp"

#include "boundary.hpp"
#include "session.hpp"

#include <libtorrent/alert_types.hpp>
#include <libtorrent/bdecode.hpp>

#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace ct {

namespace {

ct_alert blank(int kind, uint64_t torrent) {
    ct_alert a;
    std::memset(&a, 0, sizeof a);
    a.kind = kind;
    a.torrent = torrent;
    a.piece = -1;
    return a;
}

// Decodes compact peer/node lists out of a get_peers response.
void direct_response(ct_session *s, lt::dht_direct_response_alert const *d, std::deque<ct_alert> &out) {
    uint64_t const cookie = uint64_t(reinterpret_cast<uintptr_t>(d->userdata.get<cookie_tag>()));
    lt::udp::endpoint const ep = d->endpoint;
    lt::bdecode_node const resp = d->response();
    if (resp.type() != lt::bdecode_node::dict_t) {
        ct_alert a = blank(CT_ALERT_DHT_NODE_TIMEOUT, 0);
        a.cookie = cookie;
        set_endpoint(a.address, a.port, ep.address(), ep.port());
        out.push_back(a);
        return;
    }
    lt::bdecode_node const r = resp.dict_find_dict("r");
    ct_alert head = blank(CT_ALERT_DHT_NODE_REPLY, 0);
    head.cookie = cookie;
    set_endpoint(head.address, head.port, ep.address(), ep.port());
    if (!r) {
        head.error_code = 1;
        copy_str(head.message, "response without r dictionary");
        out.push_back(head);
        return;
    }
    auto const id = r.dict_find_string_value("id");
    if (id.size() == 20) std::memcpy(head.node_id, id.data(), 20);
    std::vector<ct_alert> peers;
    if (lt::bdecode_node const values = r.dict_find_list("values")) {
        for (int i = 0; i < values.list_size(); ++i) {
            auto const v = values.list_string_value_at(i);
            ct_alert a = head;
            a.kind = CT_ALERT_DHT_NODE_PEER;
            if (v.size() == 6) {
                lt::address_v4::bytes_type b;
                std::memcpy(b.data(), v.data(), 4);
                set_endpoint(a.address2, a.port2, lt::address_v4(b), (uint8_t(v[4]) << 8) | uint8_t(v[5]));
            } else if (v.size() == 18) {
                lt::address_v6::bytes_type b;
                std::memcpy(b.data(), v.data(), 16);
                set_endpoint(a.address2, a.port2, lt::address_v6(b), (uint8_t(v[16]) << 8) | uint8_t(v[17]));
            } else continue;
            peers.push_back(a);
        }
    }
    head.count = int32_t(peers.size());
    out.push_back(head);
    for (auto &p : peers) out.push_back(p);
    auto const nodes = r.dict_find_string_value("nodes");
    for (size_t off = 0; off + 26 <= nodes.size(); off += 26) {
        ct_alert a = head;
        a.kind = CT_ALERT_DHT_NODE_CONTACT;
        std::memcpy(a.node_id, nodes.data() + off, 20);
        lt::address_v4::bytes_type b;
        std::memcpy(b.data(), nodes.data() + off + 20, 4);
        set_endpoint(a.address2, a.port2, lt::address_v4(b),
                     (uint8_t(nodes[off + 24]) << 8) | uint8_t(nodes[off + 25]));
        out.push_back(a);
    }
    (void)s;
}

// A torrent alert's message without the torrent's name, which libtorrent puts first (the display
// name, or the info-hash in hex before the metadata): messages reach logs and peer events, which
// must not say what a requester asked for.
std::string without_torrent_name(lt::torrent_alert *ta) {
    std::string m = ta->message();
    char const *name = ta->torrent_name();
    size_t const n = name ? std::strlen(name) : 0;
    if (n > 0 && m.compare(0, n, name) == 0) m.erase(0, n);
    else if (m.compare(0, 3, " - ") == 0) m.erase(0, 3);   // the handle was already invalid
    size_t const start = m.find_first_not_of(" :");
    return start == std::string::npos ? std::string() : m.substr(start);
}

} // namespace

void convert(ct_session *s, lt::alert *a, std::deque<ct_alert> &out) {
    uint64_t tid = 0;
    if (auto *ta = dynamic_cast<lt::torrent_alert *>(a)) tid = id_of(s, ta->handle);
    auto peer = [&](int kind, lt::peer_alert *pa) {
        ct_alert c = blank(kind, tid);
        lt::tcp::endpoint const ep = pa->endpoint;
        set_endpoint(c.address, c.port, ep.address(), ep.port());
        copy_str(c.message, without_torrent_name(pa));
        return c;
    };
    switch (a->type()) {
    case lt::metadata_received_alert::alert_type: {
        // A magnet may learn its v2 hash with the metadata: refresh the store keys.
        lt::info_hash_t const ih = static_cast<lt::metadata_received_alert *>(a)->handle.info_hashes();
        {
            std::lock_guard<std::mutex> l(s->tm);
            auto it = s->by_id.find(tid);
            if (it != s->by_id.end()) { it->second.v1 = ih.v1; it->second.best = ih.get_best(); }
        }
        out.push_back(blank(CT_ALERT_METADATA_RECEIVED, tid));
        break;
    }
    case lt::metadata_failed_alert::alert_type: {
        ct_alert c = blank(CT_ALERT_METADATA_FAILED, tid);
        copy_str(c.message, static_cast<lt::metadata_failed_alert *>(a)->error.message());
        out.push_back(c);
        break;
    }
    case lt::piece_finished_alert::alert_type: {
        ct_alert c = blank(CT_ALERT_PIECE_FINISHED, tid);
        c.piece = static_cast<int>(static_cast<lt::piece_finished_alert *>(a)->piece_index);
        mark(s, tid, c.piece, true);
        out.push_back(c);
        break;
    }
    case lt::hash_failed_alert::alert_type: {
        ct_alert c = blank(CT_ALERT_HASH_FAILED, tid);
        c.piece = static_cast<int>(static_cast<lt::hash_failed_alert *>(a)->piece_index);
        mark(s, tid, c.piece, false);
        copy_str(c.message, "piece " + std::to_string(c.piece) + " failed its hash check");
        out.push_back(c);
        break;
    }
    case lt::torrent_error_alert::alert_type: {
        auto *e = static_cast<lt::torrent_error_alert *>(a);
        ct_alert c = blank(CT_ALERT_TORRENT_ERROR, tid);
        c.error_code = e->error.value();
        copy_str(c.message, e->error.message());   // not message(): it names the torrent and a file path
        out.push_back(c);
        break;
    }
    case lt::file_error_alert::alert_type: {
        auto *e = static_cast<lt::file_error_alert *>(a);
        ct_alert c = blank(CT_ALERT_FILE_ERROR, tid);
        c.error_code = e->error.value();
        copy_str(c.message, std::string(lt::operation_name(e->op)) + ": " + e->error.message());
        out.push_back(c);
        break;
    }
    case lt::torrent_paused_alert::alert_type:
        out.push_back(blank(CT_ALERT_TORRENT_PAUSED, tid));
        break;
    case lt::state_changed_alert::alert_type: {
        ct_alert c = blank(CT_ALERT_STATE_CHANGED, tid);
        c.count = state_of(static_cast<lt::state_changed_alert *>(a)->state);
        out.push_back(c);
        break;
    }
    case lt::torrent_removed_alert::alert_type: {
        auto *r = static_cast<lt::torrent_removed_alert *>(a);
        {
            std::lock_guard<std::mutex> l(s->tm);
            auto it = s->by_handle.find(r->handle);
            if (it != s->by_handle.end()) { tid = it->second; s->by_handle.erase(it); }
        }
        ct_alert c = blank(CT_ALERT_TORRENT_REMOVED, tid);
        std::memcpy(c.info_hash, r->info_hashes.get_best().data(), 20);
        out.push_back(c);
        break;
    }
    case lt::peer_connect_alert::alert_type:
        out.push_back(peer(CT_ALERT_PEER_CONNECTED, static_cast<lt::peer_alert *>(a)));
        break;
    case lt::peer_disconnected_alert::alert_type: {
        auto *d = static_cast<lt::peer_disconnected_alert *>(a);
        bool const never = d->op == lt::operation_t::connect || d->op == lt::operation_t::sock_open ||
                           d->op == lt::operation_t::sock_bind;
        ct_alert c = peer(never ? CT_ALERT_PEER_CONNECT_FAILED : CT_ALERT_PEER_DISCONNECTED, d);
        c.error_code = d->error.value();
        c.reason = int32_t(static_cast<int>(d->reason));
        out.push_back(c);
        break;
    }
    case lt::peer_blocked_alert::alert_type: {
        auto *b = static_cast<lt::peer_blocked_alert *>(a);
        ct_alert c = peer(CT_ALERT_PEER_BLOCKED, b);
        c.reason = b->reason;
        out.push_back(c);
        break;
    }
    case lt::peer_error_alert::alert_type: {
        auto *e = static_cast<lt::peer_error_alert *>(a);
        ct_alert c = peer(CT_ALERT_PEER_ERROR, e);
        c.error_code = e->error.value();
        out.push_back(c);
        break;
    }
    case lt::peer_snubbed_alert::alert_type:
        out.push_back(peer(CT_ALERT_PEER_SNUBBED, static_cast<lt::peer_alert *>(a)));
        break;
    case lt::block_timeout_alert::alert_type: {
        auto *b = static_cast<lt::block_timeout_alert *>(a);
        ct_alert c = peer(CT_ALERT_BLOCK_TIMEOUT, b);
        c.piece = static_cast<int>(b->piece_index);
        out.push_back(c);
        break;
    }
    case lt::peer_ban_alert::alert_type:
        out.push_back(peer(CT_ALERT_PEER_BANNED, static_cast<lt::peer_alert *>(a)));
        break;
    case lt::listen_succeeded_alert::alert_type: {
        auto *l = static_cast<lt::listen_succeeded_alert *>(a);
        ct_alert c = blank(CT_ALERT_LISTEN_SUCCEEDED, 0);
        set_endpoint(c.address, c.port, l->address, l->port);
        c.reason = int32_t(static_cast<int>(l->socket_type));
        out.push_back(c);
        break;
    }
    case lt::listen_failed_alert::alert_type: {
        auto *l = static_cast<lt::listen_failed_alert *>(a);
        ct_alert c = blank(CT_ALERT_LISTEN_FAILED, 0);
        set_endpoint(c.address, c.port, l->address, l->port);
        c.error_code = l->error.value();
        copy_str(c.message, a->message());
        out.push_back(c);
        break;
    }
    case lt::dht_get_peers_reply_alert::alert_type: {
        auto *r = static_cast<lt::dht_get_peers_reply_alert *>(a);
        for (auto const &ep : r->peers()) {
            ct_alert c = blank(CT_ALERT_DHT_PEER, 0);
            std::memcpy(c.info_hash, r->info_hash.data(), 20);
            set_endpoint(c.address, c.port, ep.address(), ep.port());
            out.push_back(c);
        }
        break;
    }
    case lt::dht_direct_response_alert::alert_type:
        direct_response(s, static_cast<lt::dht_direct_response_alert *>(a), out);
        break;
    case lt::dht_bootstrap_alert::alert_type:
        out.push_back(blank(CT_ALERT_DHT_BOOTSTRAP, 0));
        break;
    case lt::alerts_dropped_alert::alert_type:
        out.push_back(blank(CT_ALERT_ALERTS_DROPPED, 0));
        break;
    default:
        break;
    }
}

} // namespace ct
