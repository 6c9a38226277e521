import Foundation
import NetBasics
import Testing
import TestSupport

/// The harness itself, proved with real C tor alone: a private network bootstraps, a real tor
/// client carries 4 MiB byte-exact over a 3-hop circuit to the local HTTP sink, and the keys the
/// harness hands to our tests (network.json) are the ones the authorities actually published.
@Suite("RealTor network harness", .serialized)
struct RealTorNetworkTests {
    @Test("RealTor: 4 MiB through a real tor client and 3 relays, byte-exact; keys match the authorities",
          .privateNetwork, .timeLimit(.minutes(5)))
    func realTorFetchAndPublishedKeys() async throws {
        let scratch = try TemporaryDirectory("realtor")
        let net = try await TorTestNetwork.start(authorities: 3, relays: 2, exits: 1, client: true)
        defer { net.stop() }
        let sink = try await HTTPSink.start(directory: scratch.url)
        defer { sink.stop() }

        #expect(net.authorities.count == 3 && net.middleRelays.count == 2 && net.exits.count == 1)
        let socksPort = try #require(net.client?.socksPort)

        // 4 MiB through tor, compared with the same bytes fetched directly and with the sink's digest.
        let count = 4 << 20
        let viaTor = scratch.url.appendingPathComponent("via-tor.bin")
        let direct = scratch.url.appendingPathComponent("direct.bin")
        let fetched = try await HTTPSink.download(sink.url(bytes: count), socks5Port: socksPort, to: viaTor)
        _ = try await HTTPSink.download(sink.url(bytes: count), to: direct)
        #expect(fetched.bytes == count)
        let torBytes = try Data(contentsOf: viaTor)
        #expect(torBytes == (try Data(contentsOf: direct)))
        #expect(try HTTPSink.sha256Hex(of: viaTor) == (try await sink.expectedSHA256(bytes: count, scratch: scratch.url)))
        // The stream left through our exit on a 3-hop circuit (the sink is deliberately not on a
        // relay's address, which would make tor add a fourth "enclave" hop).
        let exit = net.exits[0]
        let exitLog = try String(contentsOf: exit.dataDirectory.appendingPathComponent("info.log"), encoding: .utf8)
        #expect(exitLog.contains("Exit connection (connecting) to \(sink.host):\(sink.port) established"))
        let clientLog = try String(contentsOf: net.client!.dataDirectory.appendingPathComponent("info.log"), encoding: .utf8)
        #expect(clientLog.contains("circ (length 3"))
        #expect(!clientLog.contains("circ (length 4"))

        // Every relay's identity, Ed25519 id and ntor key, as every authority recorded them.
        for authority in net.authorities {
            let published = try PublishedDirectory(dataDirectory: authority.dataDirectory)
            for relay in net.relays {
                let fp = try #require(relay.rsaIdentity)
                #expect(published.consensusIdentities.contains(fp), "\(relay.nickname) missing from \(authority.nickname)'s consensus")
                let descriptor = published.descriptors[fp]
                #expect(descriptor?.ed25519Identity == relay.ed25519Identity, "\(relay.nickname) ed25519 id vs descriptor")
                #expect(descriptor?.ntorOnionKey == relay.ntorOnionKey, "\(relay.nickname) ntor key vs descriptor")
                let micro = published.microdescriptors.first { $0.ed25519Identity == relay.ed25519Identity }
                #expect(micro?.ntorOnionKey == relay.ntorOnionKey, "\(relay.nickname) ntor key vs microdescriptor")
            }
            #expect(published.consensusIdentities.count == net.relays.count)
        }

        net.stop()
        #expect(!net.anyProcessRunning, "tor processes survived stop()")
    }

    @Test("RealTor: relays without authorities start in seconds and serve descriptors matching network.json",
          .privateNetwork, .timeLimit(.minutes(2)))
    func realTorRelaysWithoutAuthorities() async throws {
        let scratch = try TemporaryDirectory("realtor-noauth")
        let net = try await TorTestNetwork.start(authorities: 0, relays: 1, exits: 1, client: false)
        defer { net.stop() }
        #expect(net.authorities.isEmpty && net.relays.count == 2)
        #expect(net.bootstrapSeconds < 30)
        for relay in net.relays {
            let orPort = try #require(relay.orPort), dirPort = try #require(relay.dirPort)
            try await waitForTCP(port: orPort, timeout: .seconds(5))
            // The relay's own descriptor, as a bridge client would fetch it.
            let file = scratch.url.appendingPathComponent("\(relay.nickname).desc")
            _ = try await HTTPSink.download("http://127.0.0.1:\(dirPort)/tor/server/authority", to: file)
            var published = PublishedDirectory()
            published.addDescriptors(String(decoding: try Data(contentsOf: file), as: UTF8.self))
            let fingerprint = try #require(relay.rsaIdentity)
            let keys = try #require(published.descriptors[fingerprint])
            #expect(keys.ed25519Identity == relay.ed25519Identity)
            #expect(keys.ntorOnionKey == relay.ntorOnionKey)
        }
        let exitTorrc = try String(contentsOf: net.exits[0].torrc, encoding: .utf8)
        #expect(exitTorrc.contains("RefuseUnknownExits 0"))
        net.stop()
        #expect(!net.anyProcessRunning)
    }

    @Test("RealTor: network.json rejects keys of the wrong length")
    func malformedNetworkFileIsAnError() throws {
        let dir = try TemporaryDirectory("realtor-json")
        let bad = """
        {"version": 1, "directory": "\(dir.url.path)", "basePort": 1, "bootstrapSeconds": 1,
         "dirAuthorityLines": [], "nodes": [{"nickname": "r", "role": "relay", "orPort": 1, "dirPort": 2,
         "socksPort": null, "controlPort": 3, "dataDirectory": "/x", "torrc": "/x/torrc", "logFile": "/x/l",
         "pid": 1, "fingerprint": "00", "ed25519Identity": null, "ntorOnionKey": null, "v3Identity": null}]}
        """
        try Data(bad.utf8).write(to: dir.url.appendingPathComponent("network.json"))
        #expect(throws: TorTestNetworkError.self) { try TorTestNetwork.load(directory: dir.url) }
    }
}

/// What an authority stored in its data directory, parsed just enough to compare keys: the
/// consensus's relay identities, server descriptors (by RSA identity) and microdescriptors.
struct PublishedDirectory {
    struct Keys: Equatable {
        var ed25519Identity: [UInt8]?
        var ntorOnionKey: [UInt8]?
    }

    var consensusIdentities: Set<[UInt8]> = []
    var descriptors: [[UInt8]: Keys] = [:]
    var microdescriptors: [Keys] = []

    init() {}

    init(dataDirectory dir: URL) throws {
        func read(_ name: String) -> String? {
            (try? Data(contentsOf: dir.appendingPathComponent(name))).map { String(decoding: $0, as: UTF8.self) }
        }
        let consensus = try #require(read("cached-consensus"), "no consensus in \(dir.path)")
        for line in consensus.split(separator: "\n") where line.hasPrefix("r ") {
            let fields = line.split(separator: " ")
            if fields.count > 2, let id = base64Unpadded(fields[2]) { consensusIdentities.insert(id) }
        }
        for text in [read("cached-descriptors"), read("cached-descriptors.new")].compactMap({ $0 }) {
            addDescriptors(text)
        }
        // Microdescriptors have no RSA id line; each holds one ntor-onion-key and an "id ed25519".
        for text in [read("cached-microdescs"), read("cached-microdescs.new")].compactMap({ $0 }) {
            var current: Keys?
            for line in text.split(separator: "\n") {
                if line.hasPrefix("ntor-onion-key ") {
                    if let current { microdescriptors.append(current) }
                    current = Keys(ed25519Identity: nil, ntorOnionKey: base64Unpadded(line.dropFirst("ntor-onion-key ".count)))
                } else if line.hasPrefix("id ed25519 ") {
                    current?.ed25519Identity = base64Unpadded(line.dropFirst("id ed25519 ".count))
                }
            }
            if let current { microdescriptors.append(current) }
        }
    }

    /// Server descriptors: a new one starts at "router "; later copies (.new is appended) win.
    mutating func addDescriptors(_ text: String) {
        var fingerprint: [UInt8]?
        var keys = Keys()
        func flush() { if let fingerprint { descriptors[fingerprint] = keys } }
        for line in text.split(separator: "\n") {
            if line.hasPrefix("router ") { flush(); fingerprint = nil; keys = Keys() }
            else if line.hasPrefix("fingerprint ") {
                fingerprint = Hex.decode(line.dropFirst("fingerprint ".count).filter { $0 != " " })
            } else if line.hasPrefix("master-key-ed25519 ") {
                keys.ed25519Identity = base64Unpadded(line.dropFirst("master-key-ed25519 ".count))
            } else if line.hasPrefix("ntor-onion-key ") {
                keys.ntorOnionKey = base64Unpadded(line.dropFirst("ntor-onion-key ".count))
            }
        }
        flush()
    }
}

private func base64Unpadded<S: StringProtocol>(_ text: S) -> [UInt8]? {
    let s = String(text).trimmingCharacters(in: .whitespaces)
    return Data(base64Encoded: s + String(repeating: "=", count: (4 - s.count % 4) % 4)).map { [UInt8]($0) }
}

