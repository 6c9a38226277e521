import Foundation
import NIOCore
import NIOPosix
import OnionTransport
import TestSupport

/// A throwaway RSA-2048 key and self-signed certificate made by the `openssl` CLI (an independent
/// source: the project's own cert factory is not under test here), with the certificate's DER.
struct TestCertificate: Sendable {
    let keyPEM: String
    let certificatePEM: String
    let certificateDER: [UInt8]

    /// Made once per test process; RSA key generation is the slow part.
    static func shared() throws -> TestCertificate { try sharedCertificate.get() }

    static func make(commonName: String = "www.example.net") throws -> TestCertificate {
        let dir = try TemporaryDirectory("tls-cert")
        try runTool("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=\(commonName)",
                                "-days", "2", "-keyout", "key.pem", "-out", "cert.pem"], in: dir.url)
        try runTool("openssl", ["x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der"], in: dir.url)
        return TestCertificate(
            keyPEM: try String(contentsOf: dir.url.appendingPathComponent("key.pem"), encoding: .utf8),
            certificatePEM: try String(contentsOf: dir.url.appendingPathComponent("cert.pem"), encoding: .utf8),
            certificateDER: Array(try Data(contentsOf: dir.url.appendingPathComponent("cert.der"))))
    }

    /// Writes key.pem and cert.pem into `dir` (for openssl s_server).
    func write(to dir: URL) throws {
        try keyPEM.write(to: dir.appendingPathComponent("key.pem"), atomically: true, encoding: .utf8)
        try certificatePEM.write(to: dir.appendingPathComponent("cert.pem"), atomically: true, encoding: .utf8)
    }

    func serverContext() throws -> TLSContext {
        try TLSContext.server(privateKeyPEM: keyPEM, certificatePEM: certificatePEM)
    }
}

private let sharedCertificate = Result { try TestCertificate.make() }

struct TestTimeout: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

extension EventLoopFuture {
    /// Waits for the future, failing after `seconds` so that a broken link cannot hang the suite.
    func get(within seconds: Int64, _ what: String) async throws -> Value {
        let promise = eventLoop.makePromise(of: Value.self)
        let timer = eventLoop.scheduleTask(in: .seconds(seconds)) { promise.fail(TestTimeout(what: what)) }
        cascade(to: promise)
        defer { timer.cancel() }
        return try await promise.futureResult.get()
    }
}

/// The application above a `TLSLinkHandler` in tests: records the handshake event and errors,
/// accumulates plaintext, and completes `received` once `expected` bytes have arrived (failing it
/// if the channel closes or errs first). Optionally answers the first bytes it sees.
class TLSTestPeer: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let expected: Int
    let received: EventLoopPromise<ByteBuffer>
    let handshake: EventLoopPromise<TLSHandshakeCompleted>
    let firstError: EventLoopPromise<Error>
    private(set) var buffer = ByteBuffer()
    private var done = false
    private var sawError = false
    private var sawHandshake = false
    /// Sent (then the channel is closed, if `closeAfterReply`) once `expected` bytes arrived.
    var reply: ByteBuffer?
    var closeAfterReply = false
    /// The channel this peer sits on (set when added to the pipeline).
    private(set) var channel: Channel!

    init(eventLoop: EventLoop, expected: Int) {
        self.expected = expected
        received = eventLoop.makePromise()
        handshake = eventLoop.makePromise()
        firstError = eventLoop.makePromise()
    }

    func handlerAdded(context: ChannelHandlerContext) { channel = context.channel }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSHandshakeCompleted, !sawHandshake {
            sawHandshake = true
            handshake.succeed(event)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        buffer.writeBuffer(&chunk)
        if !done && buffer.readableBytes >= expected {
            complete()
            if let reply {
                let close = closeAfterReply
                context.writeAndFlush(wrapOutboundOut(reply)).whenComplete { _ in
                    if close { context.close(promise: nil) }
                }
            }
        }
    }

    /// Marks the expected bytes as received (subclasses that do not keep bytes call it).
    func complete() {
        guard !done else { return }
        done = true
        received.succeed(buffer)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !sawError {
            sawError = true
            firstError.succeed(error)
        }
        finish(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(ChannelError.eof)
        if !sawError {
            sawError = true
            firstError.fail(ChannelError.eof) // closed without an error
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(ChannelError.ioOnClosedChannel)
        if !sawError { sawError = true; firstError.fail(ChannelError.ioOnClosedChannel) }
    }

    private func finish(_ error: Error) {
        if !sawHandshake { sawHandshake = true; handshake.fail(error) }
        if !done { done = true; received.fail(error) }
    }
}

func randomBytes(_ count: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        var word = g.next()
        for _ in 0..<8 where i < count {
            out[i] = UInt8(truncatingIfNeeded: word)
            word >>= 8
            i += 1
        }
    }
    return out
}

/// A TLS server on 127.0.0.1 whose child channels run `TLSLinkHandler` + a `TLSTestPeer` made by `makePeer`.
final class TLSTestServer: @unchecked Sendable {
    let channel: Channel
    private let slots: PeerSlots

    var port: Int { channel.localAddress!.port! }

    init(group: EventLoopGroup, context: TLSContext, makePeer: @escaping @Sendable (EventLoop) -> TLSTestPeer) async throws {
        let slots = PeerSlots()
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let peer = makePeer(child.eventLoop)
                    try child.pipeline.syncOperations.addHandlers([try TLSLinkHandler(context: context), peer])
                    slots.add(peer)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        self.slots = slots
    }

    /// The peer of the `index`-th accepted connection.
    func peer(_ index: Int, within seconds: Int64 = 10) async throws -> TLSTestPeer {
        try await slots.wait(index, seconds: seconds)
    }

    func close() async { try? await channel.close() }
}

/// Accepted peers in order, waitable by index.
final class PeerSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var peers: [TLSTestPeer] = []

    func add(_ peer: TLSTestPeer) { lock.withLock { peers.append(peer) } }

    func wait(_ index: Int, seconds: Int64) async throws -> TLSTestPeer {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let peer = lock.withLock({ index < peers.count ? peers[index] : nil }) { return peer }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestTimeout(what: "accepted connection #\(index)")
    }
}

/// Connects a `TLSLinkHandler` client + `peer` to 127.0.0.1:`port`.
func connectTLSClient(group: EventLoopGroup, port: Int, context: TLSContext,
                      makePeer: @escaping @Sendable (EventLoop) -> TLSTestPeer) async throws -> (Channel, TLSTestPeer) {
    let slots = PeerSlots()
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let peer = makePeer(channel.eventLoop)
                try channel.pipeline.syncOperations.addHandlers([try TLSLinkHandler(context: context), peer])
                slots.add(peer)
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    return (channel, try await slots.wait(0, seconds: 5))
}
