import Foundation
import NetBasics
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import TestSupport
import Testing
import TorCells
import TorCrypto

/// The link handshake against Debian's C tor (0.4.9), inside a private network namespace (run with
/// `scripts/in-private-net swift test --filter LinkTorInteropTests`): our client and our authenticating
/// relay initiator against a tor relay, and a tor client against our responder (as its bridge).
@Suite(.serialized) struct LinkTorInteropTests {
    /// A dummy directory authority on loopback: the rules require one, and nothing needs it to answer.
    static let dirAuthority =
        "DirAuthority dummy orport=1 no-v2 v3ident=0000000000000000000000000000000000000001 127.0.0.1:2 0000000000000000000000000000000000000002"

    /// Starts a C tor relay on 127.0.0.1 and returns it with its RSA and Ed25519 identities.
    static func startTorRelay(in dir: TemporaryDirectory) async throws -> (ChildProcess, port: Int, ExpectedPeerIdentity) {
        let port = Int(freePort())
        let torrc = """
            DataDirectory \(dir.url.path)/data
            Nickname swiftlinkpeer
            ContactInfo none
            ORPort 127.0.0.1:\(port)
            Address 127.0.0.1
            SocksPort 0
            TestingTorNetwork 1
            AssumeReachable 1
            PublishServerDescriptor 0
            ExitRelay 0
            UseDefaultFallbackDirs 0
            \(dirAuthority)
            SafeLogging 0
            Log notice stdout
            Log info file \(dir.url.path)/info.log
            """
        try torrc.write(to: dir.url.appendingPathComponent("torrc"), atomically: true, encoding: .utf8)
        let tor = try ChildProcess("tor", ["-f", dir.url.appendingPathComponent("torrc").path], directory: dir.url)
        try await tor.waitForLog(containing: "Opened OR listener", timeout: .seconds(60))
        let data = dir.url.appendingPathComponent("data")
        // tor writes its fingerprint files a moment after the listeners open.
        try await waitFor("tor's fingerprint files") {
            ["fingerprint", "fingerprint-ed25519"].allSatisfy {
                FileManager.default.fileExists(atPath: data.appendingPathComponent($0).path)
            }
        }
        let rsaLine = try String(contentsOf: data.appendingPathComponent("fingerprint"), encoding: .utf8)
        let rsaHex = try #require(rsaLine.split(separator: " ").last).trimmingCharacters(in: .whitespacesAndNewlines)
        let rsa = try RSAIdentity(bytes: try #require([UInt8](hexString: rsaHex)))
        let edLine = try String(contentsOf: data.appendingPathComponent("fingerprint-ed25519"), encoding: .utf8)
        let edBase64 = try #require(edLine.split(separator: " ").last).trimmingCharacters(in: .whitespacesAndNewlines)
        let edBytes = try #require(Data(base64Encoded: edBase64 + "="))
        return (tor, port, ExpectedPeerIdentity(rsaIdentity: rsa, ed25519Identity: try Ed25519Identity(bytes: Array(edBytes))))
    }

    /// The relay as a circuit hop, with the ntor onion key from its key file (a 32-byte tag, the secret
    /// key, then the public key).
    static func circuitHop(dir: TemporaryDirectory, port: Int, identity: ExpectedPeerIdentity) throws -> CircuitHop {
        let file = Array(try Data(contentsOf: dir.url.appendingPathComponent("data/keys/secret_onion_key_ntor")))
        try #require(file.count == 96)
        return CircuitHop(address: IPv4Address(127, 0, 0, 1), port: UInt16(port),
                          ntorKey: try NtorPublicKey(identity: try #require(identity.rsaIdentity), onionKey: Array(file[64..<96])),
                          ed25519Identity: identity.ed25519Identity)
    }

    static func infoLog(_ dir: TemporaryDirectory) -> String {
        (try? String(contentsOf: dir.url.appendingPathComponent("info.log"), encoding: .utf8)) ?? ""
    }

    /// Our client verifies a real relay's CERTS (RSA + Ed25519 identities from its key files).
    @Test(.privateNetwork)
    func ourClientToTorRelay() async throws {
        let dir = try TemporaryDirectory("link-tor-relay")
        let (tor, port, identity) = try await Self.startTorRelay(in: dir)
        defer { tor.stop() }
        let client = try await LinkTestClient.connect(port: port, endpoint: .client(expecting: identity))
        let peer = try await client.opened.futureResult.get(within: 30, "link open with C tor")
        #expect(peer.identity?.rsaIdentity == identity.rsaIdentity)
        #expect(peer.identity?.ed25519Identity == identity.ed25519Identity)
        #expect(peer.linkProtocol == 5)
        #expect(abs(peer.clockSkew ?? .infinity) < 60)
        // tor opened the connection and saw a client (an all-zero identity digest).
        try await waitFor("tor to log the open client connection") {
            Self.infoLog(dir).contains("Its ID digest is 0000000000000000000000000000000000000000")
        }
        try await client.channel.close()
    }

    /// Our relay initiator authenticates (CERTS 2/7/4/6, AUTHENTICATE type 3 over the real TLS exporter)
    /// and C tor records our RSA identity for the connection.
    @Test(.privateNetwork)
    func ourRelayInitiatorAuthenticatesToTorRelay() async throws {
        let dir = try TemporaryDirectory("link-tor-relay")
        let (tor, port, identity) = try await Self.startTorRelay(in: dir)
        defer { tor.stop() }
        let keys = try LinkHandlerTests.otherRelay.get()
        let client = try await LinkTestClient.connect(port: port, endpoint: .relayInitiator(keys, expecting: identity))
        let peer = try await client.opened.futureResult.get(within: 30, "authenticated link open with C tor")
        #expect(peer.identity?.rsaIdentity == identity.rsaIdentity)
        do {
            try await waitFor("tor to accept our AUTHENTICATE") {
                Self.infoLog(dir).contains("Its ID digest is \(keys.fingerprint.hex)")
            }
        } catch {
            let lines = Self.infoLog(dir).split(separator: "\n").filter { $0.contains("channel") || $0.contains("connection_or") || $0.contains("AUTH") }
            Issue.record("\(error); tor's log:\n\(lines.joined(separator: "\n"))")
        }
        #expect(Self.infoLog(dir).contains("ID=\(keys.edIdentity) RSA_ID=\(keys.fingerprint.hex)"))
        #expect(!Self.infoLog(dir).contains("bad AUTHENTICATE"))
        #expect(client.channel.isActive)
        try await client.channel.close()
    }

    /// A C tor client uses our responder as its bridge: it checks our CERTS against the bridge
    /// fingerprint, completes the handshake, and starts a circuit (the first cell we receive).
    @Test(.privateNetwork)
    func torClientToOurResponder() async throws {
        let keys = try LinkHandlerTests.relay.get()
        let server = try await LinkTestServer(keys: keys)
        defer { Task { await server.close() } }
        let dir = try TemporaryDirectory("link-tor-client")
        let torrc = """
            DataDirectory \(dir.url.path)/data
            SocksPort 127.0.0.1:\(freePort())
            TestingTorNetwork 1
            UseDefaultFallbackDirs 0
            \(Self.dirAuthority)
            UseBridges 1
            Bridge 127.0.0.1:\(server.port) \(keys.fingerprint.hex)
            SafeLogging 0
            Log notice stdout
            Log info file \(dir.url.path)/info.log
            """
        try torrc.write(to: dir.url.appendingPathComponent("torrc"), atomically: true, encoding: .utf8)
        let tor = try ChildProcess("tor", ["-f", dir.url.appendingPathComponent("torrc").path], directory: dir.url)
        defer { tor.stop() }
        let recorder = try await server.recorder(0, seconds: 60)
        let peer = try await recorder.opened.futureResult.get(within: 60, "tor client's link to open")
        #expect(peer.identity == nil)  // tor clients do not authenticate
        let first = try await recorder.firstCell.futureResult.get(within: 60, "tor client's first circuit cell")
        #expect([ChannelCommand.createFast, .create2].contains(first.command))
        #expect(Self.infoLog(dir).contains("Got some good certificates"), "tor log:\n\(Self.infoLog(dir))")
    }
}

extension LinkTorInteropTests {
    /// A real circuit over our link: a one-hop ntor circuit (CREATE2) to a C tor relay, then a BEGIN.
    /// C tor answers through the circuit's relay crypto, and how it answers shows what it made of our
    /// channel: a client may not open a stream at the first hop (END TORPROTOCOL, "Attempt by ... to open
    /// a stream on first hop of circuit"); an authenticated relay is known by its identities and refused
    /// because it is not in the consensus (END MISC, "... RSA_ID=<ours> to open a stream from unknown relay").
    @Test(.privateNetwork, arguments: [false, true])
    func ntorCircuitAndBeginThroughOurLink(asRelay: Bool) async throws {
        let dir = try TemporaryDirectory("link-tor-circuit")
        let (tor, port, identity) = try await Self.startTorRelay(in: dir)
        defer { tor.stop() }
        let hop = try Self.circuitHop(dir: dir, port: port, identity: identity)

        let endpoint: ChannelEndpoint = asRelay
            ? .relayInitiator(try LinkHandlerTests.otherRelay.get(), expecting: identity) : .client(expecting: identity)
        let driver = try await CircuitDriver(port: port, endpoint: endpoint)
        let circuitID = try await driver.build(path: [hop])
        let (stream, begin) = try #require(try driver.mux.withCircuit(circuitID) { try $0.openStream(host: "127.0.0.1", port: 80) })
        try await driver.perform(begin)
        try await driver.pump { $0.contains { if case .streamEnded(stream, _) = $0 { true } else { false } } }
        let events = driver.events
        let ended = events.compactMap { event -> End? in
            if case .streamEnded(stream, let end) = event { return end } else { return nil }
        }
        #expect(ended.first?.reason == (asRelay ? .misc : .torProtocol), "events: \(events)")
        #expect(!events.contains { if case .closed = $0 { true } else { false } })
        let refusal = asRelay
            ? "RSA_ID=\(try LinkHandlerTests.otherRelay.get().fingerprint.hex) to open a stream from unknown relay"
            : "to open a stream on first hop of circuit"
        #expect(Self.infoLog(dir).contains(refusal), "tor's log lacks \"\(refusal)\"")
        try await driver.close()
    }
}

extension LinkTorInteropTests {
    /// C tor as the middle: our client builds a two-hop ntor circuit through a C tor relay to our relay.
    /// The C tor relay opens a channel to our responder as an authenticating relay (CERTS 2/7/4/6 and
    /// AUTHENTICATE, verified here), sends CREATE2, and our `OnionRelay` answers; the circuit opens.
    @Test(.privateNetwork)
    func torRelayExtendsToOurResponder() async throws {
        let ours = try LinkHandlerTests.relay.get()
        let server = try await LinkTestServer(keys: ours, relay: true)
        defer { Task { await server.close() } }
        let dir = try TemporaryDirectory("link-tor-extend")
        let (tor, port, identity) = try await Self.startTorRelay(in: dir)
        defer { tor.stop() }
        let torRSA = try #require(identity.rsaIdentity)
        let path = [
            try Self.circuitHop(dir: dir, port: port, identity: identity),
            CircuitHop(address: IPv4Address(127, 0, 0, 1), port: UInt16(server.port),
                       ntorKey: ours.ntorKey.publicKey, ed25519Identity: ours.edIdentity),
        ]

        let driver = try await CircuitDriver(port: port, endpoint: .client(expecting: identity), seconds: 30)
        do { _ = try await driver.build(path: path) } catch {
            let lines = Self.infoLog(dir).split(separator: "\n").filter { $0.contains("xtend") || $0.contains("channel") }
            Issue.record("\(error)\n\(lines.suffix(25).joined(separator: "\n"))")
            return
        }
        let atOurRelay = try await server.recorder(0).opened.futureResult.get(within: 5, "C tor's link to our relay")
        #expect(atOurRelay.isAuthenticatedRelay)
        #expect(atOurRelay.identity?.rsaIdentity == torRSA)
        #expect(atOurRelay.identity?.ed25519Identity == identity.ed25519Identity)
        try await driver.close()
    }
}

/// Our client side of circuits over one `LinkHandler` link: a `ClientCircuitMultiplexer` fed with the
/// link's circuit cells, its cells written back to the link, its events collected.
final class CircuitDriver {
    let client: LinkTestClient
    var mux = ClientCircuitMultiplexer()
    private(set) var events: [ClientCircuitEvent] = []
    private var iterator: AsyncStream<ChannelCell>.AsyncIterator
    private let continuation: AsyncStream<ChannelCell>.Continuation
    private let watchdog: Task<Void, Error>

    /// Connects and waits for the link to open. After `seconds` the cell stream ends, so a silent peer
    /// fails the test instead of hanging it.
    init(port: Int, endpoint: ChannelEndpoint, seconds: Int = 20) async throws {
        let (cells, continuation) = AsyncStream.makeStream(of: ChannelCell.self)
        self.continuation = continuation
        iterator = cells.makeAsyncIterator()
        client = try await LinkTestClient.connect(port: port, endpoint: endpoint, onCell: { continuation.yield($0) })
        watchdog = Task { try await Task.sleep(for: .seconds(seconds)); continuation.finish() }
        _ = try await client.opened.futureResult.get(within: 30, "link open")
    }

    deinit { watchdog.cancel(); continuation.finish() }

    func perform(_ actions: [ClientCircuitAction]) async throws {
        for action in actions {
            switch action {
            case .send(let cell): try await client.channel.writeAndFlush(cell)
            case .event(let event): events.append(event)
            }
        }
    }

    /// Feeds incoming cells to the circuits until `done(events)` holds.
    func pump(until done: ([ClientCircuitEvent]) -> Bool) async throws {
        while !done(events) {
            guard let cell = await iterator.next() else { throw TestTimeout(what: "the circuit; events so far: \(events)") }
            if case .circuit(_, let actions) = mux.receive(cell) { try await perform(actions) }
        }
    }

    /// Builds a circuit with ntor at every hop and waits for it to open.
    func build(path: [CircuitHop]) async throws -> UInt32 {
        let (id, start) = try mux.buildCircuit(path: path, firstHop: .ntor)
        try await perform(start)
        try await pump { $0.contains(.opened) }
        return id
    }

    func close() async throws {
        continuation.finish()
        try await client.channel.close()
    }
}

func waitFor(_ what: String, timeout: Duration = .seconds(20), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestTimeout(what: what)
}
