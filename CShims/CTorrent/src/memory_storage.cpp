// The in-memory piece store (see memory_storage.hpp).
#include "memory_storage.hpp"

#include "CTorrent.h"

#include <libtorrent/error_code.hpp>
#include <libtorrent/file_storage.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/storage_defs.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

namespace ct::memory {

namespace {
constexpr int block_size = 0x4000;
}

struct storage {
    lt::file_storage files;            // copy: the torrent's own may go before outstanding jobs
    lt::sha1_hash info_hash;
    uint64_t generation = 0;           // creation order: the newest storage of a hash is the live one
    std::map<int, std::vector<char>> pieces;
    std::set<int> released;            // consumed and dropped; reads of these fail
};

disk_io::disk_io(lt::io_context &ioc, int64_t budget) : ioc_(ioc), budget_(budget) {
    hasher_ = std::thread([this] { run_hasher(); });
}

disk_io::~disk_io() { stop_hasher(); }

lt::storage_holder disk_io::new_torrent(lt::storage_params const &p, std::shared_ptr<void> const &) {
    std::lock_guard<std::mutex> l(m_);
    int idx;
    if (!free_.empty()) { idx = free_.back(); free_.pop_back(); }
    else { idx = int(torrents_.size()); torrents_.emplace_back(); }
    auto st = std::make_unique<storage>();
    st->files = p.files;
    st->info_hash = p.info_hash;
    st->generation = ++generation_;
    torrents_[size_t(idx)] = std::move(st);
    return lt::storage_holder(lt::storage_index_t(idx), *this);
}

void disk_io::remove_torrent(lt::storage_index_t idx) {
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

void disk_io::async_read(lt::storage_index_t idx, lt::peer_request const &r,
                         std::function<void(lt::disk_buffer_holder, lt::storage_error const &)> handler,
                         lt::disk_job_flags_t) {
    lt::storage_error se;
    char *buf = nullptr;
    {
        std::lock_guard<std::mutex> l(m_);
        storage *st = get_locked(idx);
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

bool disk_io::async_write(lt::storage_index_t idx, lt::peer_request const &r, char const *buf,
                          std::shared_ptr<lt::disk_observer> o, std::function<void(lt::storage_error const &)> handler,
                          lt::disk_job_flags_t) {
    lt::storage_error se;
    bool full = false;
    {
        std::lock_guard<std::mutex> l(m_);
        storage *st = get_locked(idx);
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
void disk_io::async_hash(lt::storage_index_t idx, lt::piece_index_t piece, lt::span<lt::sha256_hash> v2,
                         lt::disk_job_flags_t flags,
                         std::function<void(lt::piece_index_t, lt::sha1_hash const &, lt::storage_error const &)> handler) {
    submit_hash([this, idx, piece, v2, flags, handler = std::move(handler)]() mutable {
        lt::storage_error se;
        lt::sha1_hash h1;
        std::vector<char> d;
        int len2 = 0;
        {
            std::lock_guard<std::mutex> l(m_);
            storage *st = get_locked(idx);
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

void disk_io::async_hash2(lt::storage_index_t idx, lt::piece_index_t piece, int offset, lt::disk_job_flags_t,
                          std::function<void(lt::piece_index_t, lt::sha256_hash const &, lt::storage_error const &)> handler) {
    lt::storage_error se;
    lt::sha256_hash h;
    {
        std::lock_guard<std::mutex> l(m_);
        storage *st = get_locked(idx);
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

void disk_io::async_move_storage(lt::storage_index_t, std::string p, lt::move_flags_t,
                                 std::function<void(lt::status_t, std::string const &, lt::storage_error const &)> handler) {
    boost::asio::post(ioc_, [handler = std::move(handler), p] {
        handler(lt::status_t::fatal_disk_error, p,
                lt::storage_error(lt::error_code(boost::system::errc::operation_not_supported, lt::system_category())));
    });
}

void disk_io::async_release_files(lt::storage_index_t, std::function<void()> handler) {
    if (handler) boost::asio::post(ioc_, std::move(handler));
}

void disk_io::async_check_files(lt::storage_index_t, lt::add_torrent_params const *,
                                lt::aux::vector<std::string, lt::file_index_t>,
                                std::function<void(lt::status_t, lt::storage_error const &)> handler) {
    // Nothing is ever kept between runs: every torrent starts empty.
    boost::asio::post(ioc_, [handler = std::move(handler)] { handler(lt::status_t::no_error, lt::storage_error()); });
}

void disk_io::async_stop_torrent(lt::storage_index_t, std::function<void()> handler) {
    if (handler) boost::asio::post(ioc_, std::move(handler));
}

void disk_io::async_rename_file(lt::storage_index_t, lt::file_index_t index, std::string name,
                                std::function<void(std::string const &, lt::file_index_t, lt::storage_error const &)> handler) {
    boost::asio::post(ioc_, [handler = std::move(handler), name, index] { handler(name, index, lt::storage_error()); });
}

void disk_io::async_delete_files(lt::storage_index_t idx, lt::remove_flags_t,
                                 std::function<void(lt::storage_error const &)> handler) {
    std::vector<std::shared_ptr<lt::disk_observer>> wake;
    {
        std::lock_guard<std::mutex> l(m_);
        if (storage *st = get_locked(idx)) {
            for (auto &kv : st->pieces) bytes_ -= int64_t(kv.second.size());
            st->pieces.clear();
        }
        wake = take_observers_locked();
    }
    notify(wake);
    boost::asio::post(ioc_, [handler = std::move(handler)] { handler(lt::storage_error()); });
}

void disk_io::async_set_file_priority(lt::storage_index_t, lt::aux::vector<lt::download_priority_t, lt::file_index_t> prio,
                                      std::function<void(lt::storage_error const &,
                                                         lt::aux::vector<lt::download_priority_t, lt::file_index_t>)> handler) {
    // Priorities only steer the piece picker; the store keeps whatever arrives.
    boost::asio::post(ioc_, [handler = std::move(handler), prio = std::move(prio)]() mutable {
        handler(lt::storage_error(), std::move(prio));
    });
}

void disk_io::async_clear_piece(lt::storage_index_t idx, lt::piece_index_t index,
                                std::function<void(lt::piece_index_t)> handler) {
    drop(idx, static_cast<int>(index), false);   // after a hash failure: the bad bytes go
    boost::asio::post(ioc_, [handler = std::move(handler), index] { handler(index); });
}

void disk_io::free_disk_buffer(char *b) { delete[] b; }
void disk_io::update_stats_counters(lt::counters &) const {}
std::vector<lt::open_file_state> disk_io::get_status(lt::storage_index_t) const { return {}; }
void disk_io::abort(bool) { stop_hasher(); }
void disk_io::submit_jobs() {}
void disk_io::settings_updated() {}

// ---- used by the C API ----

int32_t disk_io::read(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece, uint8_t *buf, size_t cap, size_t *len) {
    std::lock_guard<std::mutex> l(m_);
    storage *st = find_locked(ih, ih2);
    if (!st) return CT_ENOTREADY;
    auto it = st->pieces.find(piece);
    if (it == st->pieces.end()) return CT_ENOTREADY;
    if (len) *len = it->second.size();
    if (cap < it->second.size() || !buf) return CT_ESMALLBUF;
    std::memcpy(buf, it->second.data(), it->second.size());
    return CT_OK;
}

bool disk_io::holds(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece) {
    std::lock_guard<std::mutex> l(m_);
    storage *st = find_locked(ih, ih2);
    return st && st->pieces.count(piece) != 0;
}

void disk_io::release(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece) {
    std::vector<std::shared_ptr<lt::disk_observer>> wake;
    {
        std::lock_guard<std::mutex> l(m_);
        storage *st = find_locked(ih, ih2);
        if (!st) return;
        erase_locked(*st, piece, true);
        wake = take_observers_locked();
    }
    notify(wake);
}

int64_t disk_io::bytes() { std::lock_guard<std::mutex> l(m_); return bytes_; }
int64_t disk_io::peak() { std::lock_guard<std::mutex> l(m_); return peak_; }

void disk_io::submit_hash(std::function<void()> job) {
    {
        std::lock_guard<std::mutex> l(hm_);
        if (!hasher_stop_) { hash_jobs_.push_back(std::move(job)); hcv_.notify_one(); return; }
    }
    job();   // after abort: run inline rather than drop the completion
}

void disk_io::run_hasher() {
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

void disk_io::stop_hasher() {
    {
        std::lock_guard<std::mutex> l(hm_);
        hasher_stop_ = true;
    }
    hcv_.notify_one();
    if (hasher_.joinable()) hasher_.join();
}

storage *disk_io::get_locked(lt::storage_index_t idx) {
    size_t const i = size_t(static_cast<int>(idx));
    return i < torrents_.size() ? torrents_[i].get() : nullptr;
}

// The C API names torrents by hash, not storage index. A torrent removed and added again at
// once has two storages of the same hash for a while (the old one goes only when libtorrent
// lets go of the dying torrent); the newest is the live one. Taking the first match instead
// read and released pieces in the dying storage: reads failed as "released", and releases
// left the live pieces counted against the memory budget.
storage *disk_io::find_locked(lt::sha1_hash const &ih, lt::sha1_hash const &ih2) {
    storage *found = nullptr;
    for (auto &t : torrents_)
        if (t && (t->info_hash == ih || t->info_hash == ih2) && (!found || t->generation > found->generation))
            found = t.get();
    return found;
}

void disk_io::erase_locked(storage &st, int piece, bool mark_released) {
    auto it = st.pieces.find(piece);
    if (it != st.pieces.end()) { bytes_ -= int64_t(it->second.size()); st.pieces.erase(it); }
    if (mark_released) st.released.insert(piece);
}

void disk_io::drop(lt::storage_index_t idx, int piece, bool mark_released) {
    std::vector<std::shared_ptr<lt::disk_observer>> wake;
    {
        std::lock_guard<std::mutex> l(m_);
        if (storage *st = get_locked(idx)) erase_locked(*st, piece, mark_released);
        wake = take_observers_locked();
    }
    notify(wake);
}

std::vector<std::shared_ptr<lt::disk_observer>> disk_io::take_observers_locked() {
    std::vector<std::shared_ptr<lt::disk_observer>> out;
    if (budget_ <= 0 || bytes_ <= budget_) out.swap(observers_);
    return out;
}

void disk_io::notify(std::vector<std::shared_ptr<lt::disk_observer>> &wake) {
    // on_disk() must run on the network thread.
    for (auto &o : wake) boost::asio::post(ioc_, [o] { o->on_disk(); });
}

} // namespace ct::memory
