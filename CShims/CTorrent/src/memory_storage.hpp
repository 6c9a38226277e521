// The in-memory piece store: nothing relayed touches disk. Pieces live in RAM from the first block
// written until the stream has consumed them (release) or the torrent goes.
#ifndef PEERSM_CTORRENT_MEMORY_STORAGE_HPP
#define PEERSM_CTORRENT_MEMORY_STORAGE_HPP
#include <libtorrent/disk_buffer_holder.hpp>
#include <libtorrent/disk_interface.hpp>
#include <libtorrent/disk_observer.hpp>
#include <libtorrent/io_context.hpp>
#include <libtorrent/sha1_hash.hpp>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ct::memory {

struct storage;   // one torrent's pieces

// A disk_interface that keeps pieces in RAM. libtorrent calls it on its network thread; the C API
// reads and releases pieces from the caller's thread, hence the mutex. Memory is bounded by the
// budget: past it, async_write answers "queue full" and the peer stops reading its socket until
// a release brings usage back under the budget (disk_observer::on_disk).
class disk_io final : public lt::disk_interface, public lt::buffer_allocator_interface {
public:
    disk_io(lt::io_context &ioc, int64_t budget);
    ~disk_io() override;

    lt::storage_holder new_torrent(lt::storage_params const &p, std::shared_ptr<void> const &) override;
    void remove_torrent(lt::storage_index_t idx) override;
    void async_read(lt::storage_index_t idx, lt::peer_request const &r,
                    std::function<void(lt::disk_buffer_holder, lt::storage_error const &)> handler,
                    lt::disk_job_flags_t) override;
    bool async_write(lt::storage_index_t idx, lt::peer_request const &r, char const *buf,
                     std::shared_ptr<lt::disk_observer> o, std::function<void(lt::storage_error const &)> handler,
                     lt::disk_job_flags_t) override;
    void async_hash(lt::storage_index_t idx, lt::piece_index_t piece, lt::span<lt::sha256_hash> v2,
                    lt::disk_job_flags_t flags,
                    std::function<void(lt::piece_index_t, lt::sha1_hash const &, lt::storage_error const &)> handler) override;
    void async_hash2(lt::storage_index_t idx, lt::piece_index_t piece, int offset, lt::disk_job_flags_t,
                     std::function<void(lt::piece_index_t, lt::sha256_hash const &, lt::storage_error const &)> handler) override;
    void async_move_storage(lt::storage_index_t, std::string p, lt::move_flags_t,
                            std::function<void(lt::status_t, std::string const &, lt::storage_error const &)> handler) override;
    void async_release_files(lt::storage_index_t, std::function<void()> handler) override;
    void async_check_files(lt::storage_index_t, lt::add_torrent_params const *,
                           lt::aux::vector<std::string, lt::file_index_t>,
                           std::function<void(lt::status_t, lt::storage_error const &)> handler) override;
    void async_stop_torrent(lt::storage_index_t, std::function<void()> handler) override;
    void async_rename_file(lt::storage_index_t, lt::file_index_t index, std::string name,
                           std::function<void(std::string const &, lt::file_index_t, lt::storage_error const &)> handler) override;
    void async_delete_files(lt::storage_index_t idx, lt::remove_flags_t,
                            std::function<void(lt::storage_error const &)> handler) override;
    void async_set_file_priority(lt::storage_index_t, lt::aux::vector<lt::download_priority_t, lt::file_index_t> prio,
                                 std::function<void(lt::storage_error const &,
                                                    lt::aux::vector<lt::download_priority_t, lt::file_index_t>)> handler) override;
    void async_clear_piece(lt::storage_index_t idx, lt::piece_index_t index,
                           std::function<void(lt::piece_index_t)> handler) override;

    void free_disk_buffer(char *b) override;
    void update_stats_counters(lt::counters &) const override;
    std::vector<lt::open_file_state> get_status(lt::storage_index_t) const override;
    void abort(bool) override;
    void submit_jobs() override;
    void settings_updated() override;

    // ---- used by the C API: torrents are named by their v1 and best hash ----

    // Copies a held piece. Returns CT_OK, CT_ENOTREADY or CT_ESMALLBUF.
    int32_t read(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece, uint8_t *buf, size_t cap, size_t *len);
    bool holds(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece);
    void release(lt::sha1_hash const &ih, lt::sha1_hash const &ih2, int piece);
    int64_t bytes();
    int64_t peak();

private:
    void submit_hash(std::function<void()> job);
    void run_hasher();
    void stop_hasher();

    storage *get_locked(lt::storage_index_t idx);
    storage *find_locked(lt::sha1_hash const &ih, lt::sha1_hash const &ih2);
    void erase_locked(storage &st, int piece, bool mark_released);
    void drop(lt::storage_index_t idx, int piece, bool mark_released);
    std::vector<std::shared_ptr<lt::disk_observer>> take_observers_locked();
    void notify(std::vector<std::shared_ptr<lt::disk_observer>> &wake);

    lt::io_context &ioc_;
    int64_t const budget_;
    std::mutex m_;
    std::vector<std::unique_ptr<storage>> torrents_;
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

} // namespace ct::memory
#endif
