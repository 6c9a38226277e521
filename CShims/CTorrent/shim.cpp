// libtorrent 2.0 behind a C API (see include/CTorrent.h). Every entry point catches everything: no
// C++ exception may unwind into Swift.
//
// Free-rider configuration (what libtorrent lets us suppress, and how):
//  * no piece is ever served: fixed-slots choker with unchoke_slots_limit 0, the local peer class
//    (127/8, LAN) made to obey the slot limit (libtorrent exempts it by default), no allowed-fast
//    set, and a peer plugin that swallows any REQUEST that would still reach the default handler;
//  * read-only DHT (BEP 43) and every torrent added with disable_dht, so no announce_peer is ever
//    sent; peers come from explicit dht_get_peers lookups, trackers we were told to keep, or
//    explicit connects; no ut_pex plugin, no LSD/UPnP/NAT-PMP, incoming connections only if asked;
//  * nothing relayed touches disk: pieces live in an in-memory disk_interface and are dropped as
//    soon as the stream has consumed them (ct_release_piece) or the torrent goes.
// What libtorrent cannot suppress: the handshake and the bitfield/HAVE_NONE sent on connect, HAVE
// messages to peers that lack the piece (send_redundant_have=false only spares peers that have
// it), serving metadata over ut_metadata (needed to resolve magnets), and get_peers queries that
// reveal our interest to the DHT nodes asked. The Swift side keeps these small: it connects only
// to peers it needs and removes a torrent as soon as its last stream ends.
#include "CTorrent.h"

#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/bdecode.hpp>
#include <libtorrent/disk_interface.hpp>
#include <libtorrent/disk_buffer_holder.hpp>
#include <libtorrent/disk_observer.hpp>
#include <libtorrent/entry.hpp>
#include <libtorrent/extensions.hpp>
#include <libtorrent/extensions/smart_ban.hpp>
#include <libtorrent/extensions/ut_metadata.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/hex.hpp>
#include <libtorrent/io_context.hpp>
#include <libtorrent/ip_filter.hpp>
#include <libtorrent/magnet_uri.hpp>
#include <libtorrent/peer_class.hpp>
#include <libtorrent/peer_info.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/settings_pack.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_info.hpp>
#include <libtorrent/torrent_status.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>
#include <condition_variable>
#include <functional>
#include <thread>

namespace {

// ---- errors -------------------------------------------------------------------------------------

int32_t fail(ct_error *err, int32_t code, std::string const &msg) {
    if (err) {
        err->code = code;
        std::snprintf(err->message, sizeof err->message, "%s", msg.c_str());
    }
    return code;
}

void clear(ct_error *err) {
    if (err) { err->code = 0; err->message[0] = 0; }
}

template <size_t N> void copy_str(char (&dst)[N], std::string const &src) {
    std::snprintf(dst, N, "%s", src.c_str());
}

// Runs body; turns any exception into CT_ELIBTORRENT/CT_EINTERNAL.
template <class F> int32_t guarded(ct_error *err, F &&body) {
    try {
        clear(err);
        return body();
    } catch (lt::system_error const &e) {
        return fail(err, CT_ELIBTORRENT, e.code().message());
    } catch (std::exception const &e) {
        return fail(err, CT_EINTERNAL, e.what());
    } catch (...) {
        return fail(err, CT_EINTERNAL, "unknown C++ exception");
    }
}

// ---- in-memory storage --------------------------------------------------------------------------

constexpr int block_size = 0x4000;

struct mem_storage {
    lt::file_storage files;            // copy: the torrent's own may go before outstanding jobs
    lt::sha1_hash info_hash;
    uint64_t generation = 0;           // creation order: the newest storage of a hash is the live one
    std::map<int, std::vector<char>> pieces;
    std::set<int> released;            // consumed and dropped; reads of these fail
};

// A disk_interface that keeps pieces in RAM. libtorrent calls it on its network thread; the C API
// reads and releases pieces from the caller's thread, hence the mutex. Memory is bounded by the
// budget: past it, async_write answers "queue full" and the peer stops reading its socket until
// a release brings usage back under the budget (disk_observer::on_disk).
struct mem_disk_io final : lt::disk_interface, lt::buffer_allocator_interface {
    mem_disk_io(lt::io_context &ioc, int64_t budget) : ioc_(ioc), budget_(budget) {
        hasher_ = std::thread([this] { run_hasher(); });
    }
    ~mem_disk_io() override { stop_hasher(); }

    lt::storage_holder new_torrent(lt::storage_params const &p, std::shared_ptr<void> const &) override {
        std::lock_guard<std::mutex> l(m_);
        int idx;
        if (!free_.empty()) { idx = free_.back(); free_.pop_back(); }
        else { idx = int(torrents_.size()); torrents_.emplace_back(); }
        auto st = std::make_unique<mem_storage>();
        st->files = p.files;
        st->info_hash = p.info_hash;
        st->generation = ++generation_;
        torrents_[size_t(idx)] = std::move(st);
        return lt::storage_holder(lt::storage_index_t(idx), *this);
    }

    void remove_torrent(lt::storage_index_t idx) override {
        std::vector<std::shared_ptr<lt::disk_observer>> wake;
        {
            std::lock_guard<std::mutex> l(m_);
            auto &st = torrents_[size_t(static_cast<int>(idx))];
            if (st) for (auto &kv : st->pieces) bytes_ -= int64_t(kv.second.size());
            st.reset();
            free_.push_back(static_cast<int>(idx));
            wake = take_observers_locked();
        }
        notify(wake);
    }

    void async_read(lt::storage_index_t idx, lt::peer_request const &r,
                    std::function<void(lt::disk_buffer_holder, lt::storage_error const &)> handler,
                    lt::disk_job_flags_t) override {
        lt::storage_error se;
        char *buf = nullptr;
        {
            std::lock_guard<std::mutex> l(m_);
            mem_storage *st = get_locked(idx);
            auto it = st ? st->pieces.find(static_cast<int>(r.piece)) : decltype(st->pieces.end()){};
            if (!st || it == st->pieces.end() || r.start < 0 || r.length < 0 ||
                size_t(r.start) + size_t(r.length) > it->second.size()) {
                se.ec = boost::asio::error::eof;
                se.operation = lt::operation_t::file_read;
            } else {
                buf = new char[size_t(r.length)];
                std::memcpy(buf, it->second.data() + r.start, size_t(r.length));
            }
        }
        int const len = buf ? r.length : 0;
        boost::asio::post(ioc_, [this, handler = std::move(handler), buf, len, se] {
            handler(lt::disk_buffer_holder(*this, buf, len), se);
        });
    }

    bool async_write(lt::storage_index_t idx, lt::peer_request const &r, char const *buf,
                     std::shared_ptr<lt::disk_observer> o, std::function<void(lt::storage_error const &)> handler,
                     lt::disk_job_flags_t) override {
        lt::storage_error se;
        bool full = false;
        {
            std::lock_guard<std::mutex> l(m_);
            mem_storage *st = get_locked(idx);
            int const piece = static_cast<int>(r.piece);
            if (!st) {
                se.ec = boost::asio::error::bad_descriptor;
                se.operation = lt::operation_t::file_write;
            } else {
                auto &data = st->pieces[piece];
                if (data.empty()) {
                    data.assign(size_t(st->files.piece_size(r.piece)), 0);   // pad bytes stay zero
                    bytes_ += int64_t(data.size());
                    peak_ = std::max(peak_, bytes_);
                    st->released.erase(piece);
                }
                if (r.start < 0 || size_t(r.start) + size_t(r.length) > data.size()) {
                    se.ec = boost::asio::error::invalid_argument;
                    se.operation = lt::operation_t::file_write;
                } else {
                    std::memcpy(data.data() + r.start, buf, size_t(r.length));
                }
                if (budget_ > 0 && bytes_ > budget_ && o) { observers_.push_back(o); full = true; }
            }
        }
        boost::asio::post(ioc_, [handler = std::move(handler), se] { handler(se); });
        return full;
    }

    // Hashing a whole piece is the one CPU-heavy job (SHA-1 of 256 KiB: ~0.25 ms); done inline it
    // would run on libtorrent's network thread and compete with receiving. Like libtorrent's own
    // hashing_threads, it runs on a worker: the piece is copied under the lock (a piece can be
    // dropped meanwhile), hashed outside it, and the result posted back to the network thread.
    // libtorrent owns `v2` (the piece's block-hash slots) until the handler runs.
    void async_hash(lt::storage_index_t idx, lt::piece_index_t piece, lt::span<lt::sha256_hash> v2,
                    lt::disk_job_flags_t flags,
                    std::function<void(lt::piece_index_t, lt::sha1_hash const &, lt::storage_error const &)> handler) override {
        submit_hash([this, idx, piece, v2, flags, handler = std::move(handler)]() mutable {
            lt::storage_error se;
            lt::sha1_hash h1;
            std::vector<char> d;
            int len2 = 0;
            {
                std::lock_guard<std::mutex> l(m_);
                mem_storage *st = get_locked(idx);
                auto it = st ? st->pieces.find(static_cast<int>(piece)) : decltype(st->pieces.end()){};
                if (!st || it == st->pieces.end()) {
                    se.ec = boost::asio::error::eof;
                    se.operation = lt::operation_t::file_read;
                } else {
                    d = it->second;
                    len2 = st->files.piece_size2(piece);
                }
            }
            if (!se.ec) {
                if (flags & lt::disk_interface::v1_hash) h1 = lt::hasher(d.data(), int(d.size())).final();
                for (std::ptrdiff_t i = 0; i < v2.size(); ++i) {
                    int const off = int(i) * block_size;
                    int const n = std::min(block_size, len2 - off);
                    if (n <= 0 || size_t(off + n) > d.size()) break;
                    v2[i] = lt::hasher256(d.data() + off, n).final();
                }
            }
            boost::asio::post(ioc_, [handler = std::move(handler), piece, h1, se] { handler(piece, h1, se); });
        });
    }

    void async_hash2(lt::storage_index_t idx, lt::piece_index_t piece, int offset, lt::disk_job_flags_t,
                     std::function<void(lt::piece_index_t, lt::sha256_hash const &, lt::storage_error const &)> handler) override {
        lt::storage_error se;
        lt::sha256_hash h;
        {
            std::lock_guard<std::mutex> l(m_);
            mem_storage *st = get_locked(idx);
            auto it = st ? st->pieces.find(static_cast<int>(piece)) : decltype(st->pieces.end()){};
            int const n = st ? std::min(block_size, st->files.piece_size2(piece) - offset) : 0;
            if (!st || it == st->pieces.end() || n <= 0 || size_t(offset + n) > it->second.size()) {
                se.ec = boost::asio::error::eof;
                se.operation = lt::operation_t::file_read;
            } else {
                h = lt::hasher256(it->second.data() + offset, n).final();
            }
        }
        boost::asio::post(ioc_, [handler = std::move(handler), piece, h, se] { handler(piece, h, se); });
    }

    void async_move_storage(lt::storage_index_t, std::string p, lt::move_flags_t,
                            std::function<void(lt::status_t, std::string const &, lt::storage_error const &)> handler) override {
        boost::asio::post(ioc_, [handler = std::move(handler), p] {
            handler(lt::status_t::fatal_disk_error, p,
                    lt::storage_error(lt::error_code(boost::system::errc::operation_not_supported, lt::system_category())));
        });
    }

    void async_release_files(lt::storage_index_t, std::function<void()> handler) override {
        if (handler) boost::asio::post(ioc_, std::move(handler));
    }

    void async_check_files(lt::storage_index_t, lt::add_torrent_params const *,
                           lt::aux::vector<std::string, lt::file_index_t>,
                           std::function<void(lt::status_t, lt::storage_error const &)> handler) override {
        // Nothing is ever kept between runs: every torrent starts empty.
        boost::asio::post(ioc_, [handler = std::move(handler)] { handler(lt::status_t::no_error, lt::storage_error()); });
    }

    void async_stop_torrent(lt::storage_index_t, std::function<void()> handler) override {
        if (handler) boost::asio::post(ioc_, std::move(handler));
    }

    void async_rename_file(lt::storage_index_t, lt::file_index_t index, std::string name,
                           std::function<void(std::string const &, lt::file_index_t, lt::storage_error const &)> handler) override {
        boost::asio::post(ioc_, [handler = std::move(handler), name, index] { handler(name, index, lt::storage_error()); });
    }

    void async_delete_files(lt::storage_index_t idx, lt::remove_flags_t,
                            std::function<void(lt::storage_error const &)> handler) override {
        std::vector<std::shared_ptr<lt::disk_observer>> wake;
        {
            std::lock_guard<std::mutex> l(m_);
            if (mem_storage *st = get_locked(idx)) {
                for (auto &kv : st->pieces) bytes_ -= int64_t(kv.second.size());
                st->pieces.clear();
            }
            wake = take_observers_locked();
        }
        notify(wake);
        boost::asio::post(ioc_, [handler = std::move(handler)] { handler(lt::storage_error()); });
    }

    void async_set_file_priority(lt::storage_index_t, lt::aux::vector<lt::download_priority_t, lt::file_index_t> prio,
                                 std::function<void(lt::storage_error const &,
                                                    lt::aux::vector<lt::download_priority_t, lt::file_index_t>)> handler) override {
        // Priorities only steer the piece picker; the store keeps whatever arrives.
        boost::asio::post(ioc_, [handler = std::move(handler), prio = std::move(prio)]() mutable {
            handler(lt::storage_error(), std::move(prio));
        });
    }

    void async_clear_piece(lt::storage_index_t idx, lt::piece_index_t index,
                           std::function<void(lt::piece_index_t)> handler) override {
        drop(idx, static_cast<int>(index), false);   // after a hash failure: the bad bytes go
        boost::asio::post(ioc_, [handler = std::move(handler), index] { handler(index); });
    }

    void free_disk_buffer(char *b) override { delete[] b; }
    void update_stats_counters(lt::counters &) const override {}
    std::vector<lt::open_file_state> get_status(lt::storage_index_t) const override { return {}; }
    void abort(bool) override { stop_hasher(); }
    void submit_jobs() override {}
    void settings_updated() override {}

    // ---- used by the C API ----

    // Copies a held piece. Returns CT_OK, CT_ENOTREADY or CT_ESMALLBUF.
    int32_t read(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece, uint8_t *buf, size_t cap, size_t *len) {
        std::lock_guard<std::mutex> l(m_);
        mem_storage *st = find_locked(ih, ih2);
        if (!st) return CT_ENOTREADY;
        auto it = st->pieces.find(piece);
        if (it == st->pieces.end()) return CT_ENOTREADY;
        if (len) *len = it->second.size();
        if (cap < it->second.size() || !buf) return CT_ESMALLBUF;
        std::memcpy(buf, it->second.data(), it->second.size());
        return CT_OK;
    }

    bool holds(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece) {
        std::lock_guard<std::mutex> l(m_);
        mem_storage *st = find_locked(ih, ih2);
        return st && st->pieces.count(piece) != 0;
    }

    void release(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece) {
        std::vector<std::shared_ptr<lt::disk_observer>> wake;
        {
            std::lock_guard<std::mutex> l(m_);
            mem_storage *st = find_locked(ih, ih2);
            if (!st) return;
            erase_locked(*st, piece, true);
            wake = take_observers_locked();
        }
        notify(wake);
    }

    int64_t bytes() { std::lock_guard<std::mutex> l(m_); return bytes_; }
    int64_t peak() { std::lock_guard<std::mutex> l(m_); return peak_; }

private:
    void submit_hash(std::function<void()> job) {
        {
            std::lock_guard<std::mutex> l(hm_);
            if (!hasher_stop_) { hash_jobs_.push_back(std::move(job)); hcv_.notify_one(); return; }
        }
        job();   // after abort: run inline rather than drop the completion
    }
    void run_hasher() {
        std::unique_lock<std::mutex> l(hm_);
        for (;;) {
            hcv_.wait(l, [this] { return hasher_stop_ || !hash_jobs_.empty(); });
            if (hash_jobs_.empty()) return;   // stopping, and everything queued has run
            auto job = std::move(hash_jobs_.front());
            hash_jobs_.pop_front();
            l.unlock();
            job();
            l.lock();
        }
    }
    void stop_hasher() {
        {
            std::lock_guard<std::mutex> l(hm_);
            hasher_stop_ = true;
        }
        hcv_.notify_one();
        if (hasher_.joinable()) hasher_.join();
    }

    mem_storage *get_locked(lt::storage_index_t idx) {
        size_t const i = size_t(static_cast<int>(idx));
        return i < torrents_.size() ? torrents_[i].get() : nullptr;
    }
    // The C API names torrents by hash, not storage index. A torrent removed and added again at
    // once has two storages of the same hash for a while (the old one goes only when libtorrent
    // lets go of the dying torrent); the newest is the live one. Taking the first match instead
    // read and released pieces in the dying storage: reads failed as "released", and releases
    // left the live pieces counted against the memory budget.
    mem_storage *find_locked(lt::sha1_hash const &ih, lt::sha1_hash const &ih2) {
        mem_storage *found = nullptr;
        for (auto &t : torrents_)
            if (t && (t->info_hash == ih || t->info_hash == ih2) && (!found || t->generation > found->generation))
                found = t.get();
        return found;
    }
    void erase_locked(mem_storage &st, int piece, bool mark_released) {
        auto it = st.pieces.find(piece);
        if (it != st.pieces.end()) { bytes_ -= int64_t(it->second.size()); st.pieces.erase(it); }
        if (mark_released) st.released.insert(piece);
    }
    void drop(lt::storage_index_t idx, int piece, bool mark_released) {
        std::vector<std::shared_ptr<lt::disk_observer>> wake;
        {
            std::lock_guard<std::mutex> l(m_);
            if (mem_storage *st = get_locked(idx)) erase_locked(*st, piece, mark_released);
            wake = take_observers_locked();
        }
        notify(wake);
    }
    std::vector<std::shared_ptr<lt::disk_observer>> take_observers_locked() {
        std::vector<std::shared_ptr<lt::disk_observer>> out;
        if (budget_ <= 0 || bytes_ <= budget_) out.swap(observers_);
        return out;
    }
    void notify(std::vector<std::shared_ptr<lt::disk_observer>> &wake) {
        // on_disk() must run on the network thread.
        for (auto &o : wake) boost::asio::post(ioc_, [o] { o->on_disk(); });
    }

    lt::io_context &ioc_;
    int64_t const budget_;
    std::mutex m_;
    std::vector<std::unique_ptr<mem_storage>> torrents_;
    uint64_t generation_ = 0;
    std::vector<int> free_;
    std::vector<std::shared_ptr<lt::disk_observer>> observers_;
    int64_t bytes_ = 0;
    int64_t peak_ = 0;
    std::mutex hm_;                                      // guards the hash queue
    std::condition_variable hcv_;
    std::deque<std::function<void()>> hash_jobs_;
    bool hasher_stop_ = false;
    std::thread hasher_;                                 // last: started once the rest exists
};

// ---- free-rider plugin --------------------------------------------------------------------------

// Defence in depth behind the choker settings: a piece request that reaches us is swallowed before
// libtorrent's default handler could read and send the block.
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
struct refuse_plugin final : lt::plugin {
    lt::feature_flags_t implemented_features() override { return {}; }
    std::shared_ptr<lt::torrent_plugin> new_torrent(lt::torrent_handle const &, lt::client_data_t) override {
        return std::make_shared<refuse_torrent>(refused);
    }
    std::atomic<int64_t> refused{0};
};

struct cookie_tag;   // dht_direct_request cookies travel as a tagged pointer-sized integer

} // namespace

// ---- session ------------------------------------------------------------------------------------

struct ct_session {
    std::unique_ptr<lt::session> ses;
    mem_disk_io *store = nullptr;                       // owned by ses
    std::shared_ptr<refuse_plugin> refuse;
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

namespace {

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

// The store's keys for a torrent and whether a piece passed its hash check; false if unknown.
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

bool parse_hex20(const char *hex, lt::sha1_hash &out) {
    if (!hex || std::strlen(hex) != 40) return false;
    return lt::aux::from_hex({hex, 40}, out.data());
}

int32_t add(ct_session *s, lt::add_torrent_params &p, int32_t keep_trackers, uint64_t *id, ct_error *err) {
    if (!keep_trackers) { p.trackers.clear(); p.tracker_tiers.clear(); }
    p.url_seeds.clear();                              // web seeds would be fetched over plain HTTP
    p.save_path = s->save_path;
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
        int const max_pieces = s->ses->get_settings().get_int(lt::settings_pack::max_piece_count);
        p.piece_priorities.assign(size_t(std::max(1, max_pieces)), lt::dont_download);
    }
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

// The torrent's v1 hash and its "best" hash: the store knows it by one of them.
void hashes(lt::torrent_handle const &h, lt::sha1_hash &a, lt::sha1_hash &b) {
    lt::info_hash_t const ih = h.info_hashes();
    a = ih.v1;
    b = ih.get_best();
}

int state_of(lt::torrent_status::state_t st) {
    switch (st) {
    case lt::torrent_status::checking_files: return CT_STATE_CHECKING;
    case lt::torrent_status::downloading_metadata: return CT_STATE_METADATA;
    case lt::torrent_status::downloading: return CT_STATE_DOWNLOADING;
    case lt::torrent_status::finished: return CT_STATE_FINISHED;
    case lt::torrent_status::seeding: return CT_STATE_SEEDING;
    case lt::torrent_status::checking_resume_data: return CT_STATE_CHECKING_RESUME;
    default: return 0;
    }
}

void set_endpoint(char (&addr)[64], uint16_t &port, lt::address const &a, int p) {
    copy_str(addr, a.to_string());
    port = uint16_t(p);
}

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

} // namespace

extern "C" {

ct_session *ct_session_create(const ct_settings *cfg, ct_error *err) {
    ct_session *result = nullptr;
    guarded(err, [&]() -> int32_t {
        if (!cfg || cfg->struct_size != sizeof(ct_settings)) return fail(err, CT_EINVAL, "ct_settings size mismatch");
        if (!cfg->listen_interfaces || !*cfg->listen_interfaces)
            return fail(err, CT_EINVAL, "listen_interfaces must not be empty");
        if (!cfg->save_path || !*cfg->save_path) return fail(err, CT_EINVAL, "save_path must not be empty");
        namespace sp = lt;
        lt::settings_pack pack;
        pack.set_str(lt::settings_pack::listen_interfaces, cfg->listen_interfaces);
        pack.set_str(lt::settings_pack::dht_bootstrap_nodes, cfg->dht_bootstrap_nodes ? cfg->dht_bootstrap_nodes : "");
        pack.set_bool(lt::settings_pack::enable_dht, cfg->enable_dht != 0);
        pack.set_bool(lt::settings_pack::dht_read_only, true);
        pack.set_bool(lt::settings_pack::enable_lsd, false);
        pack.set_bool(lt::settings_pack::enable_upnp, false);
        pack.set_bool(lt::settings_pack::enable_natpmp, false);
        pack.set_bool(lt::settings_pack::enable_incoming_tcp, cfg->enable_incoming != 0);
        pack.set_bool(lt::settings_pack::enable_incoming_utp, cfg->enable_incoming != 0 && cfg->enable_utp != 0);
        pack.set_bool(lt::settings_pack::enable_outgoing_utp, cfg->enable_utp != 0);
        pack.set_bool(lt::settings_pack::enable_outgoing_tcp, true);
        // Never unchoke: the fixed-slots choker with zero slots (local peers fixed below), no
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
        if (cfg->connections_limit > 0) pack.set_int(lt::settings_pack::connections_limit, cfg->connections_limit);
        pack.set_int(lt::settings_pack::alert_queue_size, cfg->alert_queue_size > 0 ? cfg->alert_queue_size : 20000);
        pack.set_int(lt::settings_pack::alert_mask,
                     static_cast<int>(static_cast<std::uint32_t>(
                         lt::alert_category::status | lt::alert_category::error | lt::alert_category::peer |
                         lt::alert_category::connect | lt::alert_category::ip_block |
                         lt::alert_category::dht_operation | lt::alert_category::piece_progress |
                         lt::alert_category::dht)));

        auto s = std::make_unique<ct_session>();
        s->save_path = cfg->save_path;
        int64_t const budget = cfg->memory_budget;
        ct_session *raw = s.get();
        lt::session_params params(std::move(pack), std::vector<std::shared_ptr<lt::plugin>>{});
        params.disk_io_constructor = [raw, budget](lt::io_context &ioc, lt::settings_interface const &, lt::counters &) {
            auto d = std::make_unique<mem_disk_io>(ioc, budget);
            raw->store = d.get();
            return std::unique_ptr<lt::disk_interface>(std::move(d));
        };
        s->ses = std::make_unique<lt::session>(std::move(params));
        // ut_metadata resolves magnets, smart_ban bans peers that send bad data; ut_pex is left out.
        s->ses->add_extension(&lt::create_ut_metadata_plugin);
        s->ses->add_extension(&lt::create_smart_ban_plugin);
        s->refuse = std::make_shared<refuse_plugin>();
        s->ses->add_extension(s->refuse);
        // libtorrent exempts local peers (127/8, LAN ranges) from the unchoke slot limit.
        lt::peer_class_info lpc = s->ses->get_peer_class(lt::session::local_peer_class_id);
        lpc.ignore_unchoke_slots = false;
        s->ses->set_peer_class(lt::session::local_peer_class_id, lpc);
        lt::peer_class_info gpc = s->ses->get_peer_class(lt::session::global_peer_class_id);
        gpc.ignore_unchoke_slots = false;
        s->ses->set_peer_class(lt::session::global_peer_class_id, gpc);
        result = s.release();
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
        return add(s, p, keep_trackers, id, err);
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
        return add(s, p, 0, id, err);
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
        return add(s, p, keep_trackers, id, err);
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
        lt::torrent_handle h = find(s, id);
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
        lt::torrent_handle h = find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        std::memset(reinterpret_cast<char *>(out) + sizeof(uint32_t), 0, sizeof(*out) - sizeof(uint32_t));
        lt::sha1_hash v1, best;
        hashes(h, v1, best);
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
        lt::torrent_handle h = find(s, id);
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
        lt::torrent_handle h = find(s, id);
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
        lt::torrent_handle h = find(s, id);
        if (!h.is_valid()) return fail(err, CT_ENOTFOUND, "no such torrent");
        h.clear_piece_deadlines();
        return CT_OK;
    });
}

int32_t ct_set_piece_priorities(ct_session *s, uint64_t id, int32_t first, int32_t last, int32_t prio, int32_t others,
                                ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::torrent_handle h = find(s, id);
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
        if (!s || !lookup(s, id, piece, a, b, verified) || !verified) return 0;
        return s->store && s->store->holds(a, b, piece) ? 1 : 0;
    } catch (...) {
        return 0;
    }
}

int32_t ct_read_piece(ct_session *s, uint64_t id, int32_t piece, uint8_t *buf, size_t cap, size_t *len, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        lt::sha1_hash a, b;
        bool verified = false;
        if (!s || !lookup(s, id, piece, a, b, verified)) return fail(err, CT_ENOTFOUND, "no such torrent");
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
        if (!s || !lookup(s, id, piece, a, b, verified)) return fail(err, CT_ENOTFOUND, "no such torrent");
        mark(s, id, piece, false);
        if (s->store) s->store->release(a, b, piece);
        return CT_OK;
    });
}

int32_t ct_torrent_stats_get(ct_session *s, uint64_t id, ct_torrent_stats *out, ct_error *err) {
    return guarded(err, [&]() -> int32_t {
        if (!out || out->struct_size != sizeof(ct_torrent_stats)) return fail(err, CT_EINVAL, "bad arguments");
        lt::torrent_handle h = find(s, id);
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
        lt::torrent_handle h = find(s, id);
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
                                   lt::client_data_t(reinterpret_cast<cookie_tag *>(uintptr_t(cookie))));
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
            for (lt::alert *a : alerts) convert(s, a, s->pending);
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
