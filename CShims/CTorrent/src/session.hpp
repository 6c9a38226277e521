// The session behind the C API's opaque ct_session: the libtorrent session, its in-memory store,
// and the map from the C API's torrent ids (session-unique, never reused) to handles.
#ifndef PEERSM_CTORRENT_SESSION_HPP
#define PEERSM_CTORRENT_SESSION_HPP
#include "CTorrent.h"
#include "free_rider_policy.hpp"
#include "memory_storage.hpp"

#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/sha1_hash.hpp>
#include <libtorrent/torrent_handle.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

struct ct_session {
    std::unique_ptr<lt::session> ses;
    ct::memory::disk_io *store = nullptr;              // owned by ses
    std::shared_ptr<ct::free_rider::refuse_plugin> refuse;
    std::string save_path;

    std::mutex tm;                                       // guards the torrent maps and counters below
    uint64_t next_id = 1;
    // Per torrent: its handle, the hashes the store may know it by, and the pieces that passed
    // their hash check (from piece_finished alerts), so reads need no round trip to libtorrent.
    struct entry {
        lt::torrent_handle h;
        lt::sha1_hash v1, best;
        std::set<int> verified;
    };
    std::unordered_map<uint64_t, entry> by_id;
    std::map<lt::torrent_handle, uint64_t> by_handle;  // kept until torrent_removed_alert
    int64_t removed_up = 0, removed_down = 0;

    std::mutex am;                                       // alert popping
    std::deque<ct_alert> pending;
};

namespace ct {

// A running session for a validated ct_settings (listen_interfaces and save_path non-empty).
std::unique_ptr<ct_session> create_session(ct_settings const &cfg);

// The handle for an id; invalid if unknown.
lt::torrent_handle find(ct_session *s, uint64_t id);
// The id for a handle; 0 if unknown.
uint64_t id_of(ct_session *s, lt::torrent_handle const &h);
// The store's keys for a torrent and whether a piece passed its hash check; false if unknown.
bool lookup(ct_session *s, uint64_t id, int piece, lt::sha1_hash &a, lt::sha1_hash &b, bool &verified);
void mark(ct_session *s, uint64_t id, int piece, bool verified);
// The torrent's v1 hash and its "best" hash: the store knows it by one of them.
void hashes(lt::torrent_handle const &h, lt::sha1_hash &a, lt::sha1_hash &b);

// Adds a torrent under the free-rider policy and gives it the next id.
int32_t add(ct_session *s, lt::add_torrent_params &p, int32_t keep_trackers, uint64_t *id, ct_error *err);

} // namespace ct
#endif
