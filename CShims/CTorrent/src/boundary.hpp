// The C boundary's guarantees, shared by every unit that fills a C record: errors reported through
// `ct_error`, no exception unwinding into Swift, strings truncated into fixed-size fields.
#ifndef PEERSM_CTORRENT_BOUNDARY_HPP
#define PEERSM_CTORRENT_BOUNDARY_HPP
#include "CTorrent.h"

#include <libtorrent/address.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/torrent_status.hpp>

#include <cstdio>
#include <exception>
#include <string>

namespace ct {

inline int32_t fail(ct_error *err, int32_t code, std::string const &msg) {
    if (err) {
        err->code = code;
        std::snprintf(err->message, sizeof err->message, "%s", msg.c_str());
    }
    return code;
}

inline void clear(ct_error *err) {
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

inline void set_endpoint(char (&addr)[64], uint16_t &port, lt::address const &a, int p) {
    copy_str(addr, a.to_string());
    port = uint16_t(p);
}

inline int state_of(lt::torrent_status::state_t st) {
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

} // namespace ct
#endif
