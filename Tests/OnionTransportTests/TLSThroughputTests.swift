import Foundation
import NIOCore
import NIOPosix
import OnionTransport
import TestSupport
import Testing

/// Throughput of a loopback TLS pair through `TLSLinkHandler` (one run, one direction). Opt-in,
/// since it is a measurement: `PEERSM_TLS_BENCH_MIB=256 swift test --filter TLSThroughputTests`.
@Suite struct TLSThroughputTests {
    static let mebibytes = ProcessInfo.processInfo.environment["PEERSM_TLS_BENCH_MIB"].flatMap(Int.init)

    @Test(.enabled(if: mebibytes != nil, "set PEERSM_TLS_BENCH_MIB to measure"))
    func loopbackThroughput() async throws {
        let total = (Self.mebibytes ?? 0) << 20
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await TLSTestServer(group: group, context: try TestCertificate.shared().serverContext()) { loop in
            CountingPeer(eventLoop: loop, expected: total)
        }
        let sender = BulkSender(total: total, chunk: 64 << 10)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([try TLSLinkHandler(context: try TLSContext.client()), sender])
                }
            }
            .connect(host: "127.0.0.1", port: server.port).get()
        let peer = try await server.peer(0) as! CountingPeer
        _ = try await peer.received.futureResult.get(within: 600, "\(total) bytes")
        let finished = ContinuousClock.now
        let started = try #require(try await channel.eventLoop.submit { sender.started }.get())
        let elapsed = (finished - started).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        let mbps = Double(total) / 1e6 / seconds
        print("TLS loopback throughput: \(total >> 20) MiB in \(String(format: "%.2f", seconds)) s = \(String(format: "%.1f", mbps)) MB/s")
        #expect(peer.count == total)
        try await channel.close()
        await server.close()
    }
}

/// Counts plaintext instead of keeping it.
final class CountingPeer: TLSTestPeer, @unchecked Sendable {
    private(set) var count = 0
    override func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        count += unwrapInboundIn(data).readableBytes
        if count >= expected { complete() }
    }
}

/// Writes `total` bytes in `chunk`-sized writes as fast as the channel stays writable, starting at
/// the handshake.
final class BulkSender: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let total: Int
    private let payload: ByteBuffer
    private var sent = 0
    private var running = false
    private(set) var started: ContinuousClock.Instant?

    init(total: Int, chunk: Int) {
        self.total = total
        payload = ByteBuffer(bytes: randomBytes(chunk))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted {
            started = .now
            running = true
            pump(context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if running { pump(context) }
        context.fireChannelWritabilityChanged()
    }

    private func pump(_ context: ChannelHandlerContext) {
        while sent < total && context.channel.isWritable {
            let n = min(payload.readableBytes, total - sent)
            context.write(wrapOutboundOut(payload.getSlice(at: 0, length: n)!), promise: nil)
            sent += n
        }
        context.flush()
    }
}
