import Foundation
import NetBasics
import Testing
import TestSupport
@testable import TorrentEngine

/// Peers written inside a magnet link (x.pe) come from whoever wrote the link — on a facilitator an
/// anonymous requester — so by default only public addresses are dialled.
struct PublicAddressTests {
    @Test func publicAddressVectors() {
        let notPublic = [
            "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "172.16.0.1",
            "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.127.255.255", "192.0.0.8",
            "192.0.2.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.1",
            "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.88.99.1",
            "::", "::1", "fe80::1", "[fe80::1]", "fe80::1%lo", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1",
            "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:7f00:1", "64:ff9b::7f00:1", "::127.0.0.1",
            "2001::1", "2001:0:4136:e378::1", "2001:db8::1", "2001:2::1", "2002:7f00:1::1", "3fff::1",
            "localhost", "example.com", "", "1.2.3", "1.2.3.4.5", "256.1.1.1",
        ]
        for host in notPublic { #expect(!MagnetPeerPolicy.publicOnly.allows(host: host), "\(host) must not be public") }
        let publicHosts = [
            "1.1.1.1", "8.8.8.8", "93.184.216.34", "172.15.255.255", "172.32.0.1", "100.63.255.255",
            "100.128.0.1", "169.253.0.1", "192.167.255.255", "223.255.255.255", "11.0.0.1",
            "2606:4700:4700::1111", "[2a00:1450:4001::200e]", "2001:4860:4860::8888", "::ffff:8.8.8.8",
        ]
        for host in publicHosts { #expect(MagnetPeerPolicy.publicOnly.allows(host: host), "\(host) is public") }
    }

    @Test func magnetPeerPolicyNames() {
        #expect(MagnetPeerPolicy(rawValue: "public") == .publicOnly)
        #expect(MagnetPeerPolicy(rawValue: "any") == .any)
        #expect(MagnetPeerPolicy(rawValue: "none") == .ignored)
        #expect(TorrentEngineSettings().magnetPeers == .publicOnly, "the safe policy is the default")
        #expect(TorrentEngineSettings.loopbackTest(dataDirectory: "/tmp/x").magnetPeers == .any)
        #expect(MagnetPeerPolicy.ignored.allows(host: "8.8.8.8") == false)
        #expect(MagnetPeerPolicy.any.allows(host: "127.0.0.1"))
    }

    /// libtorrent's parser (through the shim) lists what a magnet names; ours only judges it.
    @Test func magnetEndpointsAreListedAsLibtorrentParsesThem() throws {
        let magnet = "magnet:?xt=urn:btih:\(String(repeating: "ab", count: 20))&x.pe=127.0.0.1:6881"
            + "&x.pe=[::1]:6882&x.pe=8.8.8.8:51413&x.pe=notanaddress:1&dht=router.example:6881&dht=10.0.0.1:6881"
        let endpoints = try MagnetEndpoint.parse(magnet)
        #expect(endpoints == [
            MagnetEndpoint(kind: .peer, host: "127.0.0.1", port: 6881),
            MagnetEndpoint(kind: .peer, host: "::1", port: 6882),
            MagnetEndpoint(kind: .peer, host: "8.8.8.8", port: 51413),
            MagnetEndpoint(kind: .dhtNode, host: "router.example", port: 6881),
            MagnetEndpoint(kind: .dhtNode, host: "10.0.0.1", port: 6881),
        ])
        #expect(throws: TorrentEngineError.self) { try MagnetEndpoint.parse("magnet:?dn=nohash&x.pe=127.0.0.1:1") }
    }
}

@Suite(.serialized)
struct MagnetPeerPolicyTests {
    /// With the default policy, a magnet whose only peer is a loopback seeder never dials it: the
    /// metadata times out and the engine records no connection (nor an attempt) to 127.0.0.1.
    /// With `.any` the same magnet fetches from the seeder; with `.ignored`, a peer passed through
    /// the API is still used.
    @Test(.privateNetwork)
    func magnetPeersOnLoopbackAreNotDialledByDefault() async throws {
        let scratch = try TemporaryDirectory("torrent-magnet-peers")
        let fixture = try TorrentFixture(in: scratch.url, name: "policy.bin", size: 300_000, pieceKiB: 32, seed: 77)
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let magnet = "\(fixture.magnet)&x.pe=\(seeder.host):\(seeder.port)"
        let want = try fixture.contents(ofFile: 0)

        let guarded = try makeEngine(scratch.url.appendingPathComponent("public")) {
            $0.magnetPeers = .publicOnly
            $0.metadataTimeout = .seconds(4)
        }
        do {
            _ = try await collect(try await guarded.stream(magnet))
            Issue.record("the loopback x.pe peer was used under .publicOnly")
        } catch let e as TorrentEngineError {
            guard case .metadataTimeout = e else { Issue.record("wrong error \(e)"); return }
        }
        let counters = await guarded.peerCounters(seeder.host)
        #expect(counters.connected == 0 && counters.connectFailed == 0, "no connection to \(seeder.host): \(counters)")
        await guarded.shutdown()

        let open = try makeEngine(scratch.url.appendingPathComponent("any")) { $0.magnetPeers = .any }
        let got = try await collect(try await open.stream(magnet))
        #expect(got.data == want)
        #expect(await open.peerCounters(seeder.host).connected >= 1)
        await open.shutdown()

        let none = try makeEngine(scratch.url.appendingPathComponent("none")) { $0.magnetPeers = .ignored }
        let explicit = try await collect(try await none.stream(magnet, peers: [seeder.endpoint]))
        #expect(explicit.data == want, "peers given through the API are trusted")
        await none.shutdown()
    }

    /// Under `.publicOnly` no source can aim the engine at a non-public address: a loopback peer
    /// passed through the API (as a DHT answer or the spy hunt would) is refused by the ip_filter,
    /// also after the blocklists replace the filter.
    @Test(.privateNetwork)
    func publicOnlyBlocksNonPublicPeersFromEverySource() async throws {
        let scratch = try TemporaryDirectory("torrent-public-floor")
        let fixture = try TorrentFixture(in: scratch.url, name: "floor.bin", size: 200_000, pieceKiB: 32, seed: 78)
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let engine = try makeEngine(scratch.url.appendingPathComponent("public")) {
            $0.magnetPeers = .publicOnly
            $0.metadataTimeout = .seconds(3)
        }
        try await engine.replaceIPFilter([IPRange(IPAddress("198.51.100.7")!)])   // a blocklist update keeps the floor
        do {
            _ = try await collect(try await engine.stream(fixture.magnet, peers: [seeder.endpoint]))
            Issue.record("a loopback peer was connected under .publicOnly")
        } catch let e as TorrentEngineError {
            guard case .metadataTimeout = e else { Issue.record("wrong error \(e)"); return }
        }
        let counters = await engine.peerCounters(seeder.host)
        #expect(counters.connected == 0 && counters.blocked >= 1, "\(counters)")
        await engine.shutdown()
    }

    /// The ip_filter floor under `.publicOnly` blocks exactly what the policy refuses.
    @Test func nonPublicRangesCoverWhatPublicAddressRefuses() throws {
        let floor = AddressClass.nonPublicRanges
        // Per family, as libtorrent's ip_filter judges (the IPv6 range ::/3 holds the IPv4-mapped block).
        func blocked(_ text: String) -> Bool { floor.contains { $0.isIPv4 == IPAddress(text)!.isIPv4 && $0.contains(IPAddress(text)!) } }
        for cidr in ["127.0.0.0/8", "100.64.0.0/10", "192.168.0.0/16", "240.0.0.0/4", "198.18.0.0/15", "::/3", "fc00::/7"] {
            let range = try IPRange(parsing: cidr)
            #expect(floor.contains { $0.first <= range.first && range.last <= $0.last }, "\(cidr) is blocked whole")
        }
        for host in ["127.0.0.1", "10.1.2.3", "192.0.2.1", "198.51.100.7", "203.0.113.9", "255.255.255.255", "::1",
                     "fe80::1", "2001:db8::1", "2002:7f00:1::1", "64:ff9b::7f00:1"] {
            #expect(blocked(host) && !MagnetPeerPolicy.publicOnly.allows(host: host), "\(host)")
        }
        for host in ["8.8.8.8", "100.128.0.1", "198.20.0.1", "2606:4700:4700::1111"] {
            #expect(!blocked(host) && MagnetPeerPolicy.publicOnly.allows(host: host), "\(host)")
        }
        #expect(floor.allSatisfy { $0.first <= $0.last && $0.first.isIPv4 == $0.last.isIPv4 })
    }
}
