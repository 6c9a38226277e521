// extern "C" API over libtorrent-rasterbar 2.0. C++ stays inside; no exception crosses this boundary.
//
// Conventions: fixed-argument functions only (Swift cannot call C varargs); every fallible call
// returns 0 on success or a CT_E* code and fills the optional `ct_error*` with a message; records
// passed in carry `struct_size` so a caller built against another header is refused, not misread.
// Torrents are named by a session-unique 64-bit id (never reused). What to fetch, when, and how
// much to keep is decided in Swift. The free-rider policy (never serve a piece, never announce)
// is set in C++, in one unit (src/free_rider_policy.hpp), and pieces live only in memory
// (src/memory_storage.hpp); Swift configures what ct_settings exposes and may adjust single
// libtorrent settings by name (ct_session_set_*).
#ifndef PEERSM_CTORRENT_H
#define PEERSM_CTORRENT_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CT_OK = 0,
    CT_EINVAL = 1,        // bad argument (malformed magnet/infohash, range, settings record)
    CT_ENOTFOUND = 2,     // unknown torrent id / file index
    CT_ENOMETADATA = 3,   // the torrent's metadata has not arrived yet
    CT_ENOTREADY = 4,     // piece not downloaded and verified, or already released
    CT_ESMALLBUF = 5,     // caller buffer too small (required size reported)
    CT_ELIBTORRENT = 6,   // libtorrent reported an error (message says which)
    CT_EINTERNAL = 7,     // unexpected C++ exception
};

typedef struct ct_error {
    int32_t code;
    char message[256];
} ct_error;

typedef struct ct_session ct_session;

typedef struct ct_settings {
    uint32_t struct_size;              // sizeof(ct_settings)
    const char *listen_interfaces;     // e.g. "127.0.0.1:0"; never empty (an empty list disables DHT and uTP)
    const char *dht_bootstrap_nodes;   // "" = none (routers: they never enter the routing table)
    int32_t enable_dht;                // run a read-only (BEP 43) DHT node; torrents never announce
    int32_t enable_incoming;           // accept incoming peer connections (TCP and, if enabled, uTP)
    int32_t enable_utp;                // outgoing/incoming uTP (TCP is always on)
    int32_t connections_limit;         // <= 0: libtorrent default
    int32_t alert_queue_size;          // <= 0: 20000
    int64_t memory_budget;             // bytes the in-memory piece store may hold before peers are throttled
    const char *save_path;             // required by libtorrent; the in-memory store never writes there
} ct_settings;

// ---- session -------------------------------------------------------------------------------
ct_session *ct_session_create(const ct_settings *settings, ct_error *err);
void ct_session_destroy(ct_session *s);
int32_t ct_session_listen_port(ct_session *s);   // TCP port actually bound, 0 if none
int32_t ct_session_set_bool(ct_session *s, const char *name, int32_t value, ct_error *err);
int32_t ct_session_set_int(ct_session *s, const char *name, int32_t value, ct_error *err);
int32_t ct_session_set_string(ct_session *s, const char *name, const char *value, ct_error *err);

typedef struct ct_session_stats {
    uint32_t struct_size;
    int64_t payload_uploaded;          // summed over live torrents and those already removed
    int64_t payload_downloaded;
    int64_t store_bytes;               // bytes currently held by the in-memory piece store
    int64_t store_peak_bytes;
    int64_t requests_refused;          // piece requests swallowed by the free-rider plugin
    int32_t num_torrents;
} ct_session_stats;
int32_t ct_session_stats_get(ct_session *s, ct_session_stats *out, ct_error *err);

// ---- torrents ------------------------------------------------------------------------------
// All three add paths: no trackers kept from a magnet unless keep_trackers, DHT/LSD/PEX off per
// torrent, not auto-managed, every piece priority 0 until the caller asks for a range.
// ct_add_magnet never dials the peers (x.pe) or DHT nodes (dht=) a magnet names: whoever wrote the
// link chose them, so the caller lists them with ct_magnet_endpoints and applies its policy.
int32_t ct_add_magnet(ct_session *s, const char *uri, int32_t keep_trackers, uint64_t *id, ct_error *err);
enum { CT_MAGNET_PEER = 1, CT_MAGNET_DHT_NODE = 2 };
typedef struct ct_magnet_endpoint {
    uint32_t struct_size;
    int32_t kind;                      // CT_MAGNET_PEER or CT_MAGNET_DHT_NODE
    char host[256];                    // a peer: IP text as libtorrent parsed it; a DHT node: as written (IP or name)
    uint16_t port;
} ct_magnet_endpoint;
// Parses `uri` as ct_add_magnet does and lists the endpoints it names, in order. *count is the
// total; at most `cap` are written (call again with a larger buffer if *count > cap).
int32_t ct_magnet_endpoints(const char *uri, ct_magnet_endpoint *out, size_t cap, size_t *count, ct_error *err);
// The v1 info-hash libtorrent reads from a magnet link, as 40 lowercase hex digits and a NUL;
// "" when the link names only a v2 (btmh) hash. (Lets tests hold our own readers to libtorrent's.)
int32_t ct_magnet_info_hash(const char *uri, char out[41], ct_error *err);
int32_t ct_add_infohash(ct_session *s, const char *hex40, uint64_t *id, ct_error *err);
int32_t ct_add_torrent_bytes(ct_session *s, const uint8_t *bytes, size_t len, int32_t keep_trackers,
                             uint64_t *id, ct_error *err);
// Removes the torrent; its pieces leave memory at once (delete_files also asks libtorrent to delete).
int32_t ct_remove_torrent(ct_session *s, uint64_t id, int32_t delete_files, ct_error *err);
int32_t ct_connect_peer(ct_session *s, uint64_t id, const char *ip, uint16_t port, ct_error *err);

typedef struct ct_torrent_info {
    uint32_t struct_size;
    int32_t has_metadata;
    int32_t num_files;
    int32_t num_pieces;
    int32_t piece_length;
    int64_t total_size;
    char info_hash_hex[41];            // v1 (or truncated v2) info-hash, lowercase hex
    char name[256];
} ct_torrent_info;
int32_t ct_torrent_info_get(ct_session *s, uint64_t id, ct_torrent_info *out, ct_error *err);

typedef struct ct_file_info {
    uint32_t struct_size;
    int64_t size;
    int64_t offset;                    // byte offset of the file inside the torrent
    int32_t is_pad;
    char path[1024];                   // relative path inside the torrent, UTF-8, truncated if longer
} ct_file_info;
int32_t ct_file_info_get(ct_session *s, uint64_t id, int32_t index, ct_file_info *out, ct_error *err);

// Pieces. Deadlines make a piece time-critical (top priority even if its priority is 0).
int32_t ct_set_piece_deadline(ct_session *s, uint64_t id, int32_t piece, int32_t ms, ct_error *err);
int32_t ct_reset_piece_deadline(ct_session *s, uint64_t id, int32_t piece, ct_error *err);
int32_t ct_clear_piece_deadlines(ct_session *s, uint64_t id, ct_error *err);
// Sets priority `prio` (0–7) on pieces first…last; if others >= 0 every other piece gets `others`.
int32_t ct_set_piece_priorities(ct_session *s, uint64_t id, int32_t first, int32_t last, int32_t prio,
                                int32_t others, ct_error *err);
// 1 if the piece passed its hash check and is still held in memory, 0 otherwise.
int32_t ct_piece_ready(ct_session *s, uint64_t id, int32_t piece);
// Copies a verified piece into buf (cap bytes). *len gets the piece size (also on CT_ESMALLBUF).
int32_t ct_read_piece(ct_session *s, uint64_t id, int32_t piece, uint8_t *buf, size_t cap, size_t *len,
                      ct_error *err);
// Drops a piece from memory once the stream has consumed it (the bytes are gone for good).
int32_t ct_release_piece(ct_session *s, uint64_t id, int32_t piece, ct_error *err);

enum {
    CT_STATE_CHECKING = 1, CT_STATE_METADATA = 2, CT_STATE_DOWNLOADING = 3, CT_STATE_FINISHED = 4,
    CT_STATE_SEEDING = 5, CT_STATE_CHECKING_RESUME = 7,
};
typedef struct ct_torrent_stats {
    uint32_t struct_size;
    int32_t state;                     // CT_STATE_*
    int32_t paused;
    int32_t has_metadata;
    int32_t num_peers;
    int32_t num_seeds;
    int32_t num_pieces_have;
    int64_t payload_uploaded;          // total since added
    int64_t payload_downloaded;
    int32_t download_rate;             // payload bytes/s
    int32_t upload_rate;
    int32_t error_code;                // 0 = none
    char error[192];
} ct_torrent_stats;
int32_t ct_torrent_stats_get(ct_session *s, uint64_t id, ct_torrent_stats *out, ct_error *err);

typedef struct ct_peer_stats {
    uint32_t struct_size;
    char address[64];
    uint16_t port;
    int32_t is_seed;
    int32_t is_utp;
    int32_t is_incoming;
    int32_t we_choke;                  // 1 while we choke the peer (always, in free-rider mode)
    int32_t peer_interested;
    int64_t payload_uploaded;          // to this peer
    int64_t payload_downloaded;        // from this peer
    char client[64];
} ct_peer_stats;
// Fills up to cap entries; *count gets the number of connected peers.
int32_t ct_peer_stats_get(ct_session *s, uint64_t id, ct_peer_stats *out, size_t cap, size_t *count,
                          ct_error *err);

// ---- IP filter, DHT -------------------------------------------------------------------------
typedef struct ct_ip_range {
    const char *first;                 // IPv4 or IPv6 text, both ends the same family
    const char *last;
} ct_ip_range;
// Replaces the whole filter: listed ranges are blocked, everything else allowed.
int32_t ct_set_ip_filter(ct_session *s, const ct_ip_range *ranges, size_t n, ct_error *err);
int32_t ct_dht_add_node(ct_session *s, const char *host, uint16_t port, ct_error *err);
// Lookups: results come back as CT_ALERT_DHT_* alerts.
int32_t ct_dht_get_peers(ct_session *s, const char *hex40, ct_error *err);
// Sends one get_peers query straight to a node; the reply names the node's id and the peers it gave.
int32_t ct_dht_direct_get_peers(ct_session *s, const char *ip, uint16_t port, const char *hex40,
                                uint64_t cookie, ct_error *err);

// ---- alerts ---------------------------------------------------------------------------------
enum {
    CT_ALERT_METADATA_RECEIVED = 1,
    CT_ALERT_METADATA_FAILED = 2,
    CT_ALERT_PIECE_FINISHED = 3,
    CT_ALERT_HASH_FAILED = 4,
    CT_ALERT_TORRENT_ERROR = 5,
    CT_ALERT_FILE_ERROR = 6,
    CT_ALERT_TORRENT_REMOVED = 7,
    CT_ALERT_PEER_CONNECTED = 8,
    CT_ALERT_PEER_DISCONNECTED = 9,
    CT_ALERT_PEER_BLOCKED = 10,       // reason: peer_blocked_alert::reason_t (0 = ip_filter)
    CT_ALERT_PEER_ERROR = 11,
    CT_ALERT_PEER_SNUBBED = 12,       // the peer stopped answering our requests (request timeout)
    CT_ALERT_BLOCK_TIMEOUT = 13,
    CT_ALERT_PEER_BANNED = 14,        // smart_ban: sent data that failed the hash check
    CT_ALERT_LISTEN_SUCCEEDED = 15,
    CT_ALERT_LISTEN_FAILED = 16,
    CT_ALERT_DHT_PEER = 17,           // address/port: a peer from dht_get_peers; info_hash set
    CT_ALERT_DHT_NODE_REPLY = 18,     // address/port/node_id: a node answered a direct get_peers
    CT_ALERT_DHT_NODE_PEER = 19,      // address2/port2: a peer that node returned; address: the node
    CT_ALERT_DHT_NODE_TIMEOUT = 20,   // a direct query got no answer
    CT_ALERT_DHT_NODE_CONTACT = 21,   // address: the answering node; address2/port2/node_id: a node it named
    CT_ALERT_STATE_CHANGED = 22,      // count = new CT_STATE_*
    CT_ALERT_TORRENT_PAUSED = 23,
    CT_ALERT_ALERTS_DROPPED = 24,     // libtorrent's queue overflowed: state may be stale
    CT_ALERT_DHT_BOOTSTRAP = 25,
    CT_ALERT_PEER_CONNECT_FAILED = 26, // outgoing connection attempt failed (peer_disconnected before handshake)
};
typedef struct ct_alert {
    int32_t kind;                      // CT_ALERT_*
    int32_t piece;                     // -1 if none
    uint64_t torrent;                  // 0 if none
    uint64_t cookie;                   // direct DHT request cookie
    int32_t error_code;
    int32_t reason;
    int32_t count;
    uint16_t port;
    uint16_t port2;
    char address[64];
    char address2[64];
    uint8_t node_id[20];
    uint8_t info_hash[20];
    char message[192];
} ct_alert;
// Copies up to cap alerts, never blocks. Alerts beyond cap are kept for the next call.
size_t ct_pop_alerts(ct_session *s, ct_alert *out, size_t cap);
// Blocks up to timeout_ms for an alert (for a dedicated pump thread); 1 if one is pending.
int32_t ct_wait_alerts(ct_session *s, int32_t timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
