// The session and its torrent ids (see session.hpp).
#include "session.hpp"

#include "boundary.hpp"

#include <libtorrent/error_code.hpp>
#include <libtorrent/info_hash.hpp>
#include <libtorrent/session_params.hpp>

#include <utility>
#include <vector>

namespace ct {

std::unique_ptr<ct_session> create_session(ct_settings const &cfg) {
    lt::settings_pack pack = free_rider::session_settings(cfg);
    auto s = std::make_unique<ct_session>();
    s->save_path = cfg.save_path;
    int64_t const budget = cfg.memory_budget;
    ct_session *raw = s.get();
    lt::session_params params(std::move(pack), std::vector<std::shared_ptr<lt::plugin>>{});
    params.disk_io_constructor = [raw, budget](lt::io_context &ioc, lt::settings_interface const &, lt::counters &) {
        auto d = std::make_unique<memory::disk_io>(ioc, budget);
        raw->store = d.get();
        return std::unique_ptr<lt::disk_interface>(std::move(d));
    };
    s->ses = std::make_unique<lt::session>(std::move(params));
    s->refuse = free_rider::install(*s->ses);
    return s;
}

lt::torrent_handle find(ct_session *s, uint64_t id) {
    std::lock_guard<std::mutex> l(s->tm);
    auto it = s->by_id.find(id);
    return it == s->by_id.end() ? lt::torrent_handle() : it->second.h;
}

uint64_t id_of(ct_session *s, lt::torrent_handle const &h) {
    std::lock_guard<std::mutex> l(s->tm);
    auto it = s->by_handle.find(h);
    return it == s->by_handle.end() ? 0 : it->second;
}

bool lookup(ct_session *s, uint64_t id, int piece, lt::sha1_hash &a, lt::sha1_hash &b, bool &verified) {
    std::lock_guard<std::mutex> l(s->tm);
    auto it = s->by_id.find(id);
    if (it == s->by_id.end()) return false;
    a = it->second.v1;
    b = it->second.best;
    verified = it->second.verified.count(piece) != 0;
    return true;
}

void mark(ct_session *s, uint64_t id, int piece, bool verified) {
    std::lock_guard<std::mutex> l(s->tm);
    auto it = s->by_id.find(id);
    if (it == s->by_id.end()) return;
    if (verified) it->second.verified.insert(piece);
    else it->second.verified.erase(piece);
}

void hashes(lt::torrent_handle const &h, lt::sha1_hash &a, lt::sha1_hash &b) {
    lt::info_hash_t const ih = h.info_hashes();
    a = ih.v1;
    b = ih.get_best();
}

int32_t add(ct_session *s, lt::add_torrent_params &p, int32_t keep_trackers, uint64_t *id, ct_error *err) {
    free_rider::prepare_add(p, keep_trackers, *s->ses);
    p.save_path = s->save_path;
    lt::error_code ec;
    lt::torrent_handle h = s->ses->add_torrent(std::move(p), ec);
    if (ec) return fail(err, ec == lt::errors::duplicate_torrent ? CT_EINVAL : CT_ELIBTORRENT,
                        "add_torrent: " + ec.message());
    std::lock_guard<std::mutex> l(s->tm);
    uint64_t const n = s->next_id++;
    auto &e = s->by_id[n];
    e.h = h;
    lt::info_hash_t const ih = h.info_hashes();
    e.v1 = ih.v1;
    e.best = ih.get_best();
    s->by_handle[h] = n;
    if (id) *id = n;
    return CT_OK;
}

} // namespace ct
