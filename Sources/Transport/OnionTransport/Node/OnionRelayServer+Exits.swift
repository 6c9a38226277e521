import NetBasics
import Foundation
import Logging
import NIOCore
import NIOPosix
import OnionRouting
import TorCells
import TorCrypto

// Exit streams: a TCP connection per BEGIN, read only while the circuit has room.
extension OnionRelayServer {
    func connectExit(_ circuit: RelayCircuitID, stream: UInt16, host: String, port: UInt16) {
        let key = ExitKey(circuit: circuit, stream: stream)
        let exit = ExitStream(key: key, server: self)
        self.exits[key] = exit
        ClientBootstrap(group: self.eventLoop)
            .connectTimeout(self.configuration.exitConnectTimeout)
            .channelOption(ChannelOptions.autoRead, value: false)
            // One read() brings at most one 64 KiB buffer, so the queue overshoots the pause by that much.
            .channelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            .channelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(
                minimum: 64, initial: 16 * 1024, maximum: Self.exitReadBytes))
            // Set before connect, so the window scale matches.
            .channelOption(ChannelOptions.socketOption(.so_rcvbuf),
                           value: SocketOptionValue(clamping: self.configuration.exitReceiveBufferBytes))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(exit) }
            }
            .connect(host: host, port: Int(port))
            .whenComplete { result in
                self.eventLoop.assertInEventLoop()
                switch result {
                case .success(let channel):
                    self.exitConnected(key, channel: channel)
                case .failure(let error):
                    guard self.exits.removeValue(forKey: key) != nil else { return }
                    let reason: EndReason = error is ChannelError ? .timeout : .connectRefused
                    self.perform((try? self.relay.streamConnectFailed(circuit, streamID: stream, reason: reason)) ?? [])
                }
            }
    }

    /// Largest buffer one exit read() fills.
    static let exitReadBytes = 64 * 1024

    func exitConnected(_ key: ExitKey, channel: Channel) {
        guard self.exits[key] != nil else {
            channel.close(promise: nil)  // the stream ended while we connected
            return
        }
        let remote = channel.remoteAddress.flatMap(IPAddress.init(socketAddress:))
        // A hostname resolved to something the policy rejects (e.g. a name pointing at loopback).
        if let remote, !self.configuration.relay.exitPolicy.allows(remote, port: UInt16(channel.remoteAddress?.port ?? 0)) {
            self.exits[key] = nil
            channel.close(promise: nil)
            self.perform((try? self.relay.streamConnectFailed(key.circuit, streamID: key.stream, reason: .exitPolicy)) ?? [])
            return
        }
        do {
            self.perform(try self.relay.streamConnected(key.circuit, streamID: key.stream, address: remote))
            channel.read()
        } catch {
            self.exits[key] = nil
            channel.close(promise: nil)
        }
    }

    func exitRead(_ key: ExitKey, _ data: ByteBuffer) {
        guard self.exits[key] != nil else { return }
        do { self.perform(try self.relay.streamReceived(key.circuit, streamID: key.stream, data: data)) } catch {
            self.exits.removeValue(forKey: key)?.channel?.close(promise: nil)
        }
    }

    /// Whether the exit may read more from its socket now: not after the relay said `pauseProducer`
    /// (its `resumeProducer` reads again).
    func exitMayRead(_ key: ExitKey) -> Bool {
        guard let exit = self.exits[key] else { return false }
        return !exit.readPaused
    }

    func exitWritabilityChanged(_ key: ExitKey, writable: Bool) {
        guard self.exits[key] != nil else { return }
        self.perform((try? self.relay.setStreamPaused(key.circuit, streamID: key.stream, !writable)) ?? [])
    }

    func exitClosed(_ key: ExitKey) {
        guard self.exits.removeValue(forKey: key) != nil else { return }
        self.perform((try? self.relay.closeStream(key.circuit, streamID: key.stream, reason: .done)) ?? [])
    }
}


/// One exit TCP connection: bytes in and out, nothing else. Reads are pulled (autoRead off) only
/// while the relay has not paused them (`RelayAction.pauseProducer`).
final class ExitStream: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let key: OnionRelayServer.ExitKey
    /// Weak: a connection may outlive a shut-down server by a few events.
    weak var server: OnionRelayServer?
    private(set) var channel: Channel?
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    private var closing = false
    /// The relay said `pauseProducer`: read no more until `resumeReading`.
    var readPaused = false

    init(key: OnionRelayServer.ExitKey, server: OnionRelayServer) {
        self.key = key
        self.server = server
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
    }

    func write(_ data: ByteBuffer) {
        guard let context, !self.closing else { return }
        context.write(self.wrapOutboundOut(data), promise: nil)
        if !self.flushScheduled {
            self.flushScheduled = true
            context.eventLoop.execute {
                self.flushScheduled = false
                self.context?.flush()
            }
        }
    }

    func resumeReading() {
        guard self.readPaused else { return }
        self.readPaused = false
        self.channel?.read()
    }

    /// END from the client: deliver what was written, then close.
    func closeAfterWrites() {
        guard let context, !self.closing else { return }
        self.closing = true
        // Writes complete in order: once this empty one is done, everything before it is out.
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer()), promise: written)
        let deadline = context.eventLoop.scheduleTask(in: .seconds(30)) { context.close(promise: nil) }
        written.futureResult.whenComplete { _ in
            deadline.cancel()
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.server?.exitRead(self.key, self.unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.server?.exitMayRead(self.key) == true { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.server?.exitWritabilityChanged(self.key, writable: context.channel.isWritable)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.server?.exitClosed(self.key)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

extension IPAddress {
    init?(socketAddress: SocketAddress) {
        guard let ip = socketAddress.ipAddress, let parsed = IPAddress(ip) else { return nil }
        self = parsed
    }
}
