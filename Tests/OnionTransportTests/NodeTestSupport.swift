import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import TorCells
import TorCrypto
import PeersmProtocol

/// Deterministic pseudo-random bytes (xorshift64*), so both ends can check a transfer byte-exact
/// without holding a copy: `PatternStream(seed)` yields the same sequence everywhere.
struct PatternStream {
    private var state: UInt64
    private var word: UInt64 = 0
    private var left = 0

    init(seed: UInt64) { self.state = seed | 1 }

    private mutating func nextWord() -> UInt64 {
        self.state ^= self.state >> 12
        self.state ^= self.state << 25
        self.state ^= self.state >> 27
        return self.state &* 2_685_821_657_736_338_717
    }

    mutating func nextByte() -> UInt8 {
        if self.left == 0 {
            self.word = self.nextWord()
            self.left = 8
        }
        let byte = UInt8(truncatingIfNeeded: self.word)
        self.word >>= 8
        self.left -= 1
        return byte
    }

    mutating func buffer(_ count: Int) -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(count)
        var count = count
        // Whole words at once (little-endian = the order nextByte hands them out).
        while self.left > 0 && count > 0 { out.writeInteger(self.nextByte()); count -= 1 }
        while count >= 8 { out.writeInteger(self.nextWord(), endianness: .little); count -= 8 }
        while count > 0 { out.writeInteger(self.nextByte()); count -= 1 }
        return out
    }

    /// Compare received bytes with the next bytes of the pattern; returns the offset of a mismatch.
    mutating func check(_ buffer: ByteBuffer) -> Int? {
        for (i, byte) in buffer.readableBytesView.enumerated() where byte != self.nextByte() { return i }
        return nil
    }
}

/// A TCP server on 127.0.0.1 that, per connection, sends `sendCount` pattern bytes (seed `sendSeed`),
/// checks that it receives `receiveCount` bytes of pattern `receiveSeed`, and closes once both are done.
/// `results` gets one outcome per connection: the bytes received, or the first mismatch.
final class PatternServer: @unchecked Sendable {
    struct Outcome: Sendable, Equatable {
        var received: Int
        var mismatchAt: Int?
    }

    let channel: Channel
    var port: Int { self.channel.localAddress!.port! }
    private let outcomes: NIOLockedValueBox<[Outcome]>
    /// Bytes handed to the kernel so far, over all connections (writes are paced by writability, so
    /// this shows whether the reader applies backpressure).
    let sentBytes: NIOLockedValueBox<Int>

    /// - Parameter holdReads: read from no connection until `startReading()` (a slow destination).
    static func start(group: EventLoopGroup, sendCount: Int, sendSeed: UInt64, receiveCount: Int, receiveSeed: UInt64,
                      holdReads: Bool = false) async throws -> PatternServer {
        let outcomes = NIOLockedValueBox<[Outcome]>([])
        let sent = NIOLockedValueBox(0)
        let held = NIOLockedValueBox<(reading: Bool, channels: [Channel])>((!holdReads, []))
        let channel = try await ServerBootstrap(group: group)
            .childChannelOption(ChannelOptions.autoRead, value: !holdReads)
            .childChannelInitializer { channel in
                let startNow = held.withLockedValue { state in
                    if !state.reading { state.channels.append(channel) }
                    return state.reading && holdReads   // accepted after startReading()
                }
                if startNow { Self.startReading(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PatternHandler(
                        sendCount: sendCount, sendSeed: sendSeed, receiveCount: receiveCount, receiveSeed: receiveSeed,
                        report: { outcome in outcomes.withLockedValue { $0.append(outcome) } },
                        sent: { n in sent.withLockedValue { $0 += n } }))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return PatternServer(channel: channel, outcomes: outcomes, sentBytes: sent, held: held)
    }

    private let held: NIOLockedValueBox<(reading: Bool, channels: [Channel])>

    private init(channel: Channel, outcomes: NIOLockedValueBox<[Outcome]>, sentBytes: NIOLockedValueBox<Int>,
                 held: NIOLockedValueBox<(reading: Bool, channels: [Channel])>) {
        self.channel = channel
        self.outcomes = outcomes
        self.sentBytes = sentBytes
        self.held = held
    }

    /// Ends `holdReads`: every connection, and every later one, reads from now on.
    func startReading() {
        let channels = held.withLockedValue { state in
            state.reading = true
            defer { state.channels = [] }
            return state.channels
        }
        channels.forEach(Self.startReading)
    }

    private static func startReading(_ channel: Channel) {
        channel.setOption(ChannelOptions.autoRead, value: true).whenSuccess { channel.read() }
    }

    var results: [Outcome] { self.outcomes.withLockedValue { $0 } }

    func close() async { try? await self.channel.close() }
}

private final class PatternHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let sendCount: Int
    let receiveCount: Int
    var send: PatternStream
    var expect: PatternStream
    var received = 0
    var mismatch: Int?
    var sent = false
    var remaining: Int
    var reported = false
    let report: (PatternServer.Outcome) -> Void
    let didSend: (Int) -> Void

    init(sendCount: Int, sendSeed: UInt64, receiveCount: Int, receiveSeed: UInt64,
         report: @escaping (PatternServer.Outcome) -> Void, sent: @escaping (Int) -> Void) {
        self.sendCount = sendCount
        self.remaining = sendCount
        self.receiveCount = receiveCount
        self.send = PatternStream(seed: sendSeed)
        self.expect = PatternStream(seed: receiveSeed)
        self.report = report
        self.didSend = sent
    }

    func channelActive(context: ChannelHandlerContext) {
        self.pump(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.pump(context: context)
    }

    /// Write 64 KiB chunks while the socket takes them; the rest waits for writability.
    private func pump(context: ChannelHandlerContext) {
        while self.remaining > 0 && context.channel.isWritable {
            let n = min(self.remaining, 64 * 1024)
            self.remaining -= n
            context.writeAndFlush(self.wrapOutboundOut(self.send.buffer(n))).whenSuccess { self.didSend(n) }
        }
        guard self.remaining == 0, !self.sent else { return }
        self.sent = true
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer())).whenComplete { _ in
            self.maybeClose(context: context)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        if self.mismatch == nil, let at = self.expect.check(buffer) { self.mismatch = self.received + at }
        self.received += buffer.readableBytes
        self.maybeClose(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finish()
    }

    private func maybeClose(context: ChannelHandlerContext) {
        if self.sent && self.remaining == 0 && self.received >= self.receiveCount {
            self.finish()
            context.close(promise: nil)
        }
    }

    private func finish() {
        guard !self.reported else { return }
        self.reported = true
        self.report(PatternServer.Outcome(received: self.received, mismatchAt: self.mismatch))
    }
}

/// Three of our relays on loopback: guard → middle → exit (exit policy: 127.0.0.1 only).
struct OurRelays {
    let guardRelay: OnionRelayServer
    let middle: OnionRelayServer
    let exit: OnionRelayServer

    var path: [CircuitHop] { [self.guardRelay.descriptor, self.middle.descriptor, self.exit.descriptor] }
    var all: [OnionRelayServer] { [self.guardRelay, self.middle, self.exit] }

    static let exitPolicy = AddressPolicy(lines: ["accept 127.0.0.1:*", "reject *:*"])!

    /// - Parameter webSocketGuard: the guard also listens for WebSocket bridge links.
    static func start(group: EventLoopGroup, application: OnionRelayApplication? = nil, webSocketGuard: Bool = false) async throws -> OurRelays {
        func relay(exit: Bool, webSocket: Bool = false) async throws -> OnionRelayServer {
            let keys = try RelayKeys.generate(now: Date())
            var config = OnionRelayServerConfiguration(keys: keys, webSocketPort: webSocket ? 0 : nil)
            config.relay.exitPolicy = exit ? Self.exitPolicy : .rejectAll
            config.relay.extendAllowPrivateAddresses = true
            config.relay.applicationCommands = .peersm
            return try await OnionRelayServer.start(config, on: group.next(), application: exit ? application : nil)
        }
        return OurRelays(
            guardRelay: try await relay(exit: false, webSocket: webSocketGuard), middle: try await relay(exit: false),
            exit: try await relay(exit: true))
    }

    func shutdown() async {
        for relay in self.all { await relay.shutdown() }
    }
}

struct NodeTestTimeout: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out: \(what)" }
}

/// Run `body`, failing after `seconds` so a stuck transfer cannot hang the suite.
func withDeadline<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            throw NodeTestTimeout(what: what)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}
