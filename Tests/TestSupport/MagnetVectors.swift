/// Magnet links and the v1 info-hash each names, as libtorrent 2.0.8's parse_magnet_uri reads it
/// (TorrentEngineTests check each hash against the installed libtorrent).
/// NetBasics' `MagnetLink.btih` is the one reader; the tests hold its users to the same answers:
/// PeersmProtocol's `HashName.infohash` (what the spy hunt looks for) and TorrentEngine's
/// `TorrentSource.btih` (what the engine fetches), and those answers to libtorrent's.
public enum MagnetVectors {
    public static let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
    /// `hex` in RFC 4648 base32.
    public static let base32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"
    public static let other = "0123456789abcdef0123456789abcdef01234567"
    public static let btmh = "1220" + String(repeating: "ab", count: 32)

    /// (link, v1 hash in lowercase hex). nil: no v1 hash can be relied on — none named, malformed,
    /// or two different ones (libtorrent would take the last).
    public static let all: [(magnet: String, btih: String?)] = [
        ("magnet:?xt=urn:btih:\(hex)", hex),
        ("magnet:?xt=urn:btih:\(hex.uppercased())", hex),
        ("magnet:?dn=x&xt=urn:btih:\(hex.uppercased())&tr=udp%3A%2F%2Fa", hex),
        ("magnet:?xt=urn:btih:\(base32)", hex),
        ("magnet:?xt=urn:btih:\(base32.lowercased())", hex),
        ("magnet:?xt=urn:btih:YEX6DQDLX1SUVHOJ6UM3GNNKPQJWPKEK", hex),    // libtorrent reads '1' as 'I'
        ("magnet:?xt.1=urn:btih:\(hex)", hex),                            // numeric suffix: still xt
        ("magnet:?xt=urn%3Abtih%3A\(hex)", hex),                          // percent-encoded value
        ("magnet:?xt=urn:btih:\(hex)&xt=urn:btih:\(hex.uppercased())", hex),  // the same hash twice
        ("magnet:?xt=urn:btih:\(hex)&xt.2=urn:btih:\(base32)", hex),
        ("magnet:?xt=urn:btih:\(hex)&xt=urn:btmh:\(btmh)", hex),          // hybrid v1+v2
        ("magnet:?xt=urn:btmh:\(btmh)&xt=urn:btih:\(hex)&x.pe=127.0.0.1:1", hex),
        ("magnet:?xt=urn:btmh:\(btmh)", nil),                             // v2 only
        ("magnet:?xt=urn:btih:\(hex)&xt=urn:btih:\(other)", nil),         // ambiguous
        ("magnet:?xt.1=urn:btih:\(other)&xt.2=urn:btih:\(hex)", nil),
        ("magnet:?XT=urn:btih:\(hex)", hex),                              // names are case-insensitive
        ("magnet:?Xt.3=urn:btih:\(hex)", hex),
        ("magnet:?xt=URN:BTIH:\(hex)", nil),                              // the urn prefix is not
        ("magnet:?xt.a=urn:btih:\(hex)", nil),                            // not a numeric suffix
        ("magnet:?foo&xt=urn:btih:\(hex)", nil),                          // libtorrent: the name is "foo&xt"
        ("magnet:?xt=urn:btih:\(hex.dropLast())", nil),
        ("magnet:?xt=urn:btih:\(hex.dropLast(2))zz", nil),                // not hex
        ("magnet:?xt=urn:btih:\(base32.dropLast())8", nil),               // not base32
        ("magnet:?xt=urn:btih:zz", nil),
        ("magnet:?xt=urn%3Abtih%3A\(hex)%G0", nil),                       // bad escape
        ("magnet:?dn=name", nil),
    ]
}
