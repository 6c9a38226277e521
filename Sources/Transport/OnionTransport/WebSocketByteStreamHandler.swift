import NIOCore
import NIOWebSocket

/// Errors of the WebSocket link transport.
public enum WebSocketLinkError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The server answered the upgrade request without switching protocols.
    case upgradeRefused(status: UInt)
    /// The connection ended before the upgrade completed.
    case closedBeforeUpgrade
    /// The server did not answer the upgrade request in time.
    case upgradeTimeout
    /// The peer broke RFC 6455 or the bridge convention (binary frames only).
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .upgradeRefused(let status): return "WebSocket upgrade refused (HTTP \(status))"
        case .closedBeforeUpgrade: return "connection closed before the WebSocket upgrade completed"
        case .upgradeTimeout: return "no answer to the WebSocket upgrade request in time"
        case .protocolViolation(let why): return "WebSocket protocol violation: \(why)"
        }
    }
}

/// Turns a WebSocket connection into a byte stream, as node-Tor's bridge mode does: every
/// outbound `ByteBuffer` goes out as binary frames (masked by a client, unmasked by a server,
/// RFC 6455 §5.1); inbound binary and continuation frames are unwrapped and passed on in order.
/// Frame boundaries mean nothing: the stream above (TLS) reassembles its own records.
/// Pings are answered; a close frame is answered and ends the connection.
public final class WebSocketByteStreamHandler: ChannelDuplexHandler {
    public typealias InboundIn = WebSocketFrame
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = WebSocketFrame

    public enum Role: Sendable { case client, server }

    private let role: Role
    private let maxOutboundFrameSize: Int
    private var sentClose = false
    private var failed = false

    /// - Parameter maxOutboundFrameSize: larger writes are split into several frames.
    public init(role: Role, maxOutboundFrameSize: Int = 1 << 16) {
        precondition(maxOutboundFrameSize > 0)
        self.role = role
        self.maxOutboundFrameSize = maxOutboundFrameSize
    }

    private var mask: WebSocketMaskingKey? { role == .client ? .random() : nil }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard !failed else { return }
        // A server must reject unmasked client frames and a client masked server frames (§5.1).
        if (frame.maskKey != nil) != (role == .server) {
            violate(context: context, .protocolError,
                    role == .server ? "unmasked frame from a client" : "masked frame from a server")
            return
        }
        switch frame.opcode {
        case .binary, .continuation:
            let payload = frame.unmaskedData
            if payload.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(payload)) }
        case .ping:
            guard !sentClose else { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: mask,
                                                                 data: frame.unmaskedData)), promise: nil)
        case .pong:
            break
        case .connectionClose:
            // Echo the status code (RFC 6455 §5.5.1), then end the TCP connection. A body too short to
            // hold a code gets an empty close back rather than an equally malformed echo.
            var echo = frame.unmaskedData
            let code = echo.readableBytes >= 2 ? echo.readSlice(length: 2) ?? ByteBuffer() : ByteBuffer()
            sendClose(context: context, data: code).whenComplete { _ in context.close(promise: nil) }
        case .text:
            violate(context: context, .unacceptableData, "text frame on a binary link")
        default:
            violate(context: context, .protocolError, "unknown opcode \(frame.opcode)")
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var bytes = unwrapOutboundIn(data)
        guard !sentClose else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        guard bytes.readableBytes > maxOutboundFrameSize else {
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, maskKey: mask, data: bytes)),
                          promise: promise)
            return
        }
        // One message per chunk keeps every frame self-contained; the receiver concatenates anyway.
        while bytes.readableBytes > 0 {
            let chunk = bytes.readSlice(length: min(maxOutboundFrameSize, bytes.readableBytes))!
            let last = bytes.readableBytes == 0
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .binary, maskKey: mask, data: chunk)),
                          promise: last ? promise : nil)
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, !sentClose, context.channel.isActive else {
            context.close(mode: mode, promise: promise)
            return
        }
        var code = context.channel.allocator.buffer(capacity: 2)
        code.write(webSocketErrorCode: .normalClosure)
        sendClose(context: context, data: code).whenComplete { _ in context.close(mode: mode, promise: promise) }
    }

    private func sendClose(context: ChannelHandlerContext, data: ByteBuffer) -> EventLoopFuture<Void> {
        guard !sentClose else { return context.eventLoop.makeSucceededVoidFuture() }
        sentClose = true
        return context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose,
                                                                    maskKey: mask, data: data)))
    }

    private func violate(context: ChannelHandlerContext, _ code: WebSocketErrorCode, _ why: String) {
        failed = true
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        context.fireErrorCaught(WebSocketLinkError.protocolViolation(why))
        sendClose(context: context, data: data).whenComplete { _ in context.close(promise: nil) }
    }
}
