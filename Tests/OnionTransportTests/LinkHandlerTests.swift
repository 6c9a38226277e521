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

/// `LinkHandler` over `TLSLinkHandler` on real loopback sockets (127.0.0.1 only): our initiator
/// completes the Tor link handshake with our responder, using the real TLS certificate and exporter.
@Suite struct LinkHandlerTests {
    static let relay = Result { try RelayKeys.generate(now: Date()) }
    static let otherRelay = Result { try RelayKeys.generate(now: Date()) }

    @Test func clientOpensLinkAndCircuitCellsFlow() async throws {
        let keys = try Self.relay.get()
        let server = try await LinkTestServer(keys: keys)
        let expected = ExpectedPeerIdentity(rsaIdentity: keys.fingerprint, ed25519Identity: keys.edIdentity)
        let client = try await LinkTestClient.connect(port: server.port, endpoint: .client(expecting: expected))

        let atClient = try await client.opened.futureResult.get(within: 30, "client link open")
        #expect(atClient.identity?.rsaIdentity == keys.fingerprint)
        #expect(atClient.identity?.ed25519Identity == keys.edIdentity)
        #expect(atClient.netinfo.otherAddress == .ipv4(IPv4Address(127, 0, 0, 1)))
        let serverSide = try await server.recorder(0)
        let atServer = try await serverSide.opened.futureResult.get(within: 30, "server link open")
        #expect(atServer.identity == nil)  // a client

        let create = try ChannelCell(circuitID: 0x8000_0001, message: .createFast(CreateFast(keyMaterial: Array(repeating: 9, count: 20))))
        try await client.channel.writeAndFlush(create)
        let received = try await serverSide.firstCell.futureResult.get(within: 10, "CREATE_FAST at the server")
        #expect(received == create)

        let destroy = try ChannelCell(circuitID: 0x8000_0001, message: .destroy(.finished))
        try await serverSide.channel.writeAndFlush(destroy)
        #expect(try await client.recorder.firstCell.futureResult.get(within: 10, "DESTROY at the client") == destroy)

        try await client.channel.close()
        await server.close()
    }

    /// 20 000 RELAY cells (10 MB) over real TLS arrive complete and in order, split however TCP and TLS
    /// records split them.
    @Test func manyCellsArriveCompleteAndInOrder() async throws {
        let keys = try Self.relay.get()
        let server = try await LinkTestServer(keys: keys)
        let client = try await LinkTestClient.connect(port: server.port, endpoint: .client(expecting: .any))
        _ = try await client.opened.futureResult.get(within: 30, "client link open")
        let serverSide = try await server.recorder(0)
        _ = try await serverSide.opened.futureResult.get(within: 30, "server link open")

        let count = 20_000
        final class Tally: @unchecked Sendable { var next = 0; var outOfOrder = 0 }
        let tally = Tally()
        let done = serverSide.channel.eventLoop.makePromise(of: Void.self)
        try await serverSide.channel.eventLoop.submit {
            serverSide.onCell = { cell in
                if cell.payload.getInteger(at: 0, as: UInt32.self) != UInt32(tally.next) { tally.outOfOrder += 1 }
                tally.next += 1
                if tally.next == count { done.succeed(()) }
            }
        }.get()
        let started = ContinuousClock.now
        try await client.channel.eventLoop.submit {
            for i in 0..<count {
                var payload = ByteBuffer(repeating: 0, count: 509)
                payload.setInteger(UInt32(i), at: 0)
                client.channel.write(ChannelCell(circuitID: 0x8000_0001, command: .relay, payload: payload), promise: nil)
                if i % 64 == 63 { client.channel.flush() }
            }
            client.channel.flush()
        }.get()
        try await done.futureResult.get(within: 60, "\(count) cells at the server")
        let elapsed = ContinuousClock.now - started
        #expect(tally.next == count && tally.outOfOrder == 0)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("LinkHandler loopback: \(count) cells in \(elapsed), \(Int(Double(count * 514) / seconds / 1e6)) MB/s (debug build)")
        try await client.channel.close()
        await server.close()
    }

    @Test func relayInitiatorAuthenticatesOverRealTLS() async throws {
        let keys = try Self.relay.get(), mine = try Self.otherRelay.get()
        let server = try await LinkTestServer(keys: keys)
        let expected = ExpectedPeerIdentity(rsaIdentity: keys.fingerprint)
        let client = try await LinkTestClient.connect(port: server.port, endpoint: .relayInitiator(mine, expecting: expected))
        _ = try await client.opened.futureResult.get(within: 30, "relay initiator link open")
        let atServer = try await server.recorder(0).opened.futureResult.get(within: 30, "server link open")
        // The responder verified AUTHENTICATE, including TLSSECRETS from this TLS session's exporter.
        #expect(atServer.identity?.rsaIdentity == mine.fingerprint)
        #expect(atServer.identity?.ed25519Identity == mine.edIdentity)
        try await client.channel.close()
        await server.close()
    }

    /// A TLS server that never speaks the Tor protocol must not hold our link open forever.
    @Test func silentResponderHitsTheLinkHandshakeTimeout() async throws {
        let keys = try Self.relay.get()
        let tls = try TLSContext.server(privateKeyPEM: String(decoding: try keys.linkKey.pem(), as: UTF8.self),
                                        certificatePEM: certificatePEM(keys.linkCert.der))
        let server = try await TLSTestServer(group: MultiThreadedEventLoopGroup.singleton, context: tls) { loop in
            TLSTestPeer(eventLoop: loop, expected: Int.max)
        }
        let client = try await LinkTestClient.connect(port: server.port, endpoint: .client(expecting: .any),
                                                      handshakeTimeout: .milliseconds(300))
        await #expect(throws: LinkHandler.HandshakeTimeout.self) {
            _ = try await client.opened.futureResult.get(within: 10, "the link handshake timeout")
        }
        try await client.channel.closeFuture.get(within: 10, "client channel to close")
        await server.close()
    }

    @Test func wrongIdentityClosesTheLink() async throws {
        let keys = try Self.relay.get(), other = try Self.otherRelay.get()
        let server = try await LinkTestServer(keys: keys)
        let client = try await LinkTestClient.connect(
            port: server.port, endpoint: .client(expecting: ExpectedPeerIdentity(rsaIdentity: other.fingerprint)))
        await #expect(throws: TorChannelError.self) {
            _ = try await client.opened.futureResult.get(within: 30, "client link refusal")
        }
        try await client.channel.closeFuture.get(within: 10, "client channel to close")
        await server.close()
    }
}

/// Records what a `LinkHandler` hands upward: the open event and circuit cells.
final class LinkRecorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ChannelCell
    typealias OutboundOut = ChannelCell

    let opened: EventLoopPromise<ChannelPeer>
    let firstCell: EventLoopPromise<ChannelCell>
    private(set) var channel: Channel!
    private var sawCell = false
    private var sawOpen = false

    init(eventLoop: EventLoop) {
        opened = eventLoop.makePromise()
        firstCell = eventLoop.makePromise()
    }

    func handlerAdded(context: ChannelHandlerContext) { channel = context.channel }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? LinkOpened, !sawOpen { sawOpen = true; opened.succeed(event.peer) }
        context.fireUserInboundEventTriggered(event)
    }

    /// Called with every circuit cell, on the event loop.
    var onCell: (@Sendable (ChannelCell) -> Void)?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let cell = unwrapInboundIn(data)
        onCell?(cell)
        if !sawCell { sawCell = true; firstCell.succeed(cell) }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { finish(error) }

    func channelInactive(context: ChannelHandlerContext) {
        finish(ChannelError.eof)
        context.fireChannelInactive()
    }

    private func finish(_ error: Error) {
        if !sawOpen { sawOpen = true; opened.fail(error) }
        if !sawCell { sawCell = true; firstCell.fail(error) }
    }
}

/// PEM of a DER certificate, for `TLSContext.server`.
func certificatePEM(_ der: [UInt8]) -> String {
    let b64 = Data(der).base64EncodedString()
    var lines: [Substring] = []
    var rest = Substring(b64)
    while !rest.isEmpty { lines.append(rest.prefix(64)); rest = rest.dropFirst(64) }
    return "-----BEGIN CERTIFICATE-----\n" + lines.joined(separator: "\n") + "\n-----END CERTIFICATE-----\n"
}

/// Our relay's ORPort on 127.0.0.1: TLS with the relay's link certificate, then the responder handshake.
final class LinkTestServer: @unchecked Sendable {
    let channel: Channel
    private let recorders: RecorderSlots
    var port: Int { channel.localAddress!.port! }

    /// - Parameter relay: also run an `OnionRelay` on each accepted link, so circuits can end here.
    init(keys: RelayKeys, relay: Bool = false) async throws {
        let tls = try TLSContext.server(privateKeyPEM: String(decoding: try keys.linkKey.pem(), as: UTF8.self),
                                        certificatePEM: certificatePEM(keys.linkCert.der))
        let config = ChannelConfiguration(endpoint: .responder(keys))
        let recorders = RecorderSlots()
        self.recorders = recorders
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let recorder = LinkRecorder(eventLoop: child.eventLoop)
                    try child.pipeline.syncOperations.addHandlers([
                        try TLSLinkHandler(context: tls),
                        LinkHandler(configuration: config, localAddresses: [.ipv4(IPv4Address(127, 0, 0, 1))]),
                        recorder,
                    ])
                    if relay { try child.pipeline.syncOperations.addHandler(RelayDriver(keys: keys)) }
                    recorders.add(recorder)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func recorder(_ index: Int, seconds: Int64 = 10) async throws -> LinkRecorder {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let r = recorders.get(index) { return r }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestTimeout(what: "accepted connection \(index)")
    }

    func close() async { try? await channel.close() }
}

/// Recorders of accepted connections, in order.
final class RecorderSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var recorders: [LinkRecorder] = []
    func add(_ r: LinkRecorder) { lock.withLock { recorders.append(r) } }
    func get(_ index: Int) -> LinkRecorder? { lock.withLock { index < recorders.count ? recorders[index] : nil } }
}

struct LinkTestClient {
    let channel: Channel
    let opened: EventLoopPromise<ChannelPeer>
    let recorder: LinkRecorder

    static func connect(port: Int, endpoint: ChannelEndpoint, handshakeTimeout: TimeAmount = .seconds(30),
                        onCell: (@Sendable (ChannelCell) -> Void)? = nil) async throws -> LinkTestClient {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let opened = loop.makePromise(of: ChannelPeer.self)
        let recorder = LinkRecorder(eventLoop: loop)
        recorder.onCell = onCell
        let tls = try TLSContext.client()
        let config = ChannelConfiguration(endpoint: endpoint)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        try TLSLinkHandler(context: tls),
                        LinkHandler(configuration: config, openPromise: opened, handshakeTimeout: handshakeTimeout),
                        recorder,
                    ])
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return LinkTestClient(channel: channel, opened: opened, recorder: recorder)
    }
}

/// Runs an `OnionRelay` over one link: the open event registers the channel (with the peer's proven
/// identity, or none for a client), circuit cells go in, cells the relay sends go out on the same link.
/// Enough for circuits that end here (CREATE2 answered with CREATED2); no extending or exiting.
final class RelayDriver: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ChannelCell
    typealias OutboundOut = ChannelCell

    private var relay: OnionRelay
    private let id = ChannelID(1)

    init(keys: RelayKeys) {
        relay = OnionRelay(configuration: OnionRelayConfiguration(identity: keys.fingerprint, ntorKeys: [keys.ntorKey]))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let opened = event as? LinkOpened {
            relay.channelOpened(id, role: .responder, peerIdentity: opened.peer.identity?.rsaIdentity)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        for action in relay.receive(unwrapInboundIn(data), on: id) {
            if case .send(let cell, _) = action { context.write(wrapOutboundOut(cell), promise: nil) }
        }
        context.flush()
    }
}
