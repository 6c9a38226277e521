import NetBasics
import NIOCore
import Testing
import TorCells
import TorrentEngine

@testable import OnionRouting

/// The relay (EXTEND2 targets) and the torrent engine (peers and DHT nodes named inside a magnet)
/// refuse the same addresses: both ask NetBasics' one `AddressClass` table.
@Suite struct AddressPolicyAgreementTests {
    /// Every IPv4 row of the table at its edges, and public neighbours just outside them.
    static let addresses: [(address: String, isPublic: Bool)] = [
        ("0.0.0.0", false), ("0.255.255.255", false), ("1.0.0.0", true),
        ("9.255.255.255", true), ("10.0.0.1", false), ("10.255.255.255", false), ("11.0.0.0", true),
        ("100.63.255.255", true), ("100.64.0.0", false), ("100.127.255.255", false), ("100.128.0.0", true),
        ("127.0.0.1", false), ("127.255.255.255", false), ("128.0.0.1", true),
        ("169.253.255.255", true), ("169.254.0.1", false), ("169.254.255.255", false), ("169.255.0.0", true),
        ("172.15.255.255", true), ("172.16.0.0", false), ("172.31.255.255", false), ("172.32.0.0", true),
        ("191.255.255.255", true), ("192.0.0.0", false), ("192.0.0.255", false), ("192.0.1.0", true),
        ("192.0.2.0", false), ("192.0.2.255", false), ("192.0.3.0", true),                  // TEST-NET-1
        ("192.88.98.255", true), ("192.88.99.1", false), ("192.88.100.0", true),
        ("192.167.255.255", true), ("192.168.0.0", false), ("192.168.255.255", false), ("192.169.0.0", true),
        ("198.17.255.255", true), ("198.18.0.0", false), ("198.19.255.255", false), ("198.20.0.0", true),  // benchmarking
        ("198.51.99.255", true), ("198.51.100.0", false), ("198.51.100.255", false), ("198.51.101.0", true),  // TEST-NET-2
        ("203.0.112.255", true), ("203.0.113.0", false), ("203.0.113.255", false), ("203.0.114.0", true),    // TEST-NET-3
        ("223.255.255.255", true), ("224.0.0.1", false), ("239.255.255.255", false),
        ("240.0.0.1", false), ("255.255.255.254", false), ("255.255.255.255", false),
        ("8.8.8.8", true), ("93.184.216.34", true),
    ]

    static func extend2(to address: IPv4Address) -> RelayMessage {
        .extend2(Extend2(
            linkSpecifiers: [.ipv4(address, port: 9001), .rsaIdentity([UInt8](repeating: 0x11, count: 20))], handshakeType: 2,
            handshakeData: ByteBuffer(bytes: [UInt8](repeating: 0, count: 84))))
    }

    /// Whether a relay with the default configuration extends to `address`.
    static func relayExtends(to address: IPv4Address) throws -> Bool {
        var hop = try RawHop()
        let actions = try hop.send(extend2(to: address), early: true)
        if case .openChannel(let target, _)? = actions.first, target.address == address { return true }
        guard closedFailure(actions) == .extendRefused("private address \(address)") else {
            throw TestError("EXTEND2 to \(address): neither opened nor refused as private: \(actions)")
        }
        return false
    }

    @Test func relayAndEngineRefuseTheSameAddresses() throws {
        for (text, isPublic) in Self.addresses {
            let address = try #require(IPv4Address(text))
            let relay = try Self.relayExtends(to: address)
            let engine = MagnetPeerPolicy.publicOnly.allows(host: text)
            #expect(relay == engine, "\(text): EXTEND2 \(relay ? "extends" : "refuses"), the engine \(engine ? "dials" : "refuses")")
            #expect(relay == isPublic, "\(text) is \(isPublic ? "" : "not ")public")
            // IPv4-mapped text reaches the same host: the engine judges it as the IPv4 address.
            #expect(MagnetPeerPolicy.publicOnly.allows(host: "::ffff:\(text)") == isPublic, "::ffff:\(text)")
        }
    }
}
