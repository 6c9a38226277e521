import CTorrent
import Foundation
import NetBasics

/// What the engine does with the peers (`x.pe`, BEP 9) and DHT nodes (`dht=`) written inside a
/// magnet link. Whoever wrote the link chose those addresses; on a facilitator that is an
/// anonymous requester, who could otherwise make the exit dial 127.0.0.1 or the LAN behind it
/// (TCP connections and BitTorrent handshakes, or DHT pings), past the relay's exit policy.
/// Peers given through the API (`peers:`, `connectPeer`) are the caller's own and always used.
public enum MagnetPeerPolicy: String, Sendable, CaseIterable {
    /// Only globally routable unicast IP addresses (NetBasics' `AddressClass`, the table EXTEND2
    /// uses too); DHT nodes given by name are dropped too (resolving them is itself a request on
    /// the requester's behalf).
    case publicOnly = "public"
    /// Every endpoint as written (loopback tests and the local demo).
    case any
    /// None: a magnet's peers and nodes are ignored. (Not `.none`, which an optional would shadow.)
    case ignored = "none"

    /// Whether an endpoint named in a magnet may be used.
    public func allows(host: String) -> Bool {
        switch self {
        case .any: return true
        case .ignored: return false
        case .publicOnly: return AddressClass.isPublic(host: host)
        }
    }
}

/// An endpoint a magnet link names, as libtorrent parsed it.
struct MagnetEndpoint: Equatable {
    enum Kind { case peer, dhtNode }
    let kind: Kind
    let host: String
    let port: UInt16
}

extension MagnetEndpoint {
    /// Lists the peers and DHT nodes of `uri` with libtorrent's own magnet parser (so the list is
    /// exactly what libtorrent would have used).
    static func parse(_ uri: String) throws -> [MagnetEndpoint] {
        var err = ct_error()
        var count = 0
        var buf = [ct_magnet_endpoint](repeating: ct_magnet_endpoint(), count: 8)
        while true {
            for i in buf.indices { buf[i].struct_size = UInt32(MemoryLayout<ct_magnet_endpoint>.size) }
            let rc = buf.withUnsafeMutableBufferPointer { ct_magnet_endpoints(uri, $0.baseAddress, $0.count, &count, &err) }
            if let e = TorrentEngineError.check(rc, err) {
                if case .invalidArgument(let why) = e { throw TorrentEngineError.invalidHashName(why) }
                throw e
            }
            if count <= buf.count { break }
            buf = [ct_magnet_endpoint](repeating: ct_magnet_endpoint(), count: count)
        }
        return buf.prefix(count).compactMap { e in
            let kind: Kind
            switch Int(e.kind) {
            case Int(CT_MAGNET_PEER): kind = .peer
            case Int(CT_MAGNET_DHT_NODE): kind = .dhtNode
            default: return nil
            }
            return MagnetEndpoint(kind: kind, host: cString(e.host), port: e.port)
        }
    }
}
