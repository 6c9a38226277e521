import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Pipeline setup for node-Tor's WebSocket bridge transport: an HTTP/1.1 upgrade to RFC 6455, then
/// a byte stream (`WebSocketByteStreamHandler`) that carries the link's TLS. After the upgrade,
/// `addStreamHandlers` puts the stream's consumers (a `TLSLinkHandler` and what sits above it) at
/// the end of the pipeline; they see plain `ByteBuffer`s, as on a TCP link.
public enum WebSocketLink {
    /// Largest inbound frame accepted. node-Tor frames carry whatever one socket write held, so
    /// this is generous; it bounds what one frame can make us buffer.
    public static let defaultMaxFrameSize = 1 << 20

    /// Configures an accepted connection as a bridge: any request path is upgraded (node-Tor
    /// upgrades whatever says "WebSocket"), the request's Origin is echoed in
    /// Access-Control-Allow-Origin, and a request without an upgrade gets 426 and a close. A
    /// connection not upgraded within `upgradeTimeout` is closed.
    public static func configureServer(
        channel: Channel,
        maxFrameSize: Int = defaultMaxFrameSize,
        maxOutboundFrameSize: Int = 1 << 16,
        upgradeTimeout: TimeAmount = .seconds(30),
        addStreamHandlers: @escaping @Sendable (Channel) throws -> Void
    ) -> EventLoopFuture<Void> {
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: maxFrameSize,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                var headers = HTTPHeaders()
                if let origin = head.headers.first(name: "Origin") {
                    headers.add(name: "Access-Control-Allow-Origin", value: origin)
                }
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    // No HTTP may reach handlers past this point: frames flow from here on.
                    let sync = channel.pipeline.syncOperations
                    _ = sync.removeHandler(try sync.handler(type: WebSocketUpgradeRequiredHandler.self))
                    try sync.addHandler(WebSocketByteStreamHandler(role: .server, maxOutboundFrameSize: maxOutboundFrameSize))
                    try addStreamHandlers(channel)
                }
            })
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
            try channel.pipeline.syncOperations.addHandler(WebSocketUpgradeRequiredHandler(timeout: upgradeTimeout))
        }
    }

    /// Configures an outgoing connection: sends `GET path` with the upgrade headers (and `Origin`
    /// if given, as node-Tor's facilitator sends "http://peersm.com"), verifies the server's
    /// Sec-WebSocket-Accept, then switches to the byte stream. `upgraded` completes when the
    /// stream handlers are in place, or fails (and the channel closes) if the server refuses or
    /// does not answer within `upgradeTimeout`.
    public static func configureClient(
        channel: Channel,
        host: String,
        path: String = "/",
        origin: String? = nil,
        maxFrameSize: Int = defaultMaxFrameSize,
        maxOutboundFrameSize: Int = 1 << 16,
        upgradeTimeout: TimeAmount = .seconds(30),
        upgraded: EventLoopPromise<Void>? = nil,
        addStreamHandlers: @escaping @Sendable (Channel) throws -> Void
    ) -> EventLoopFuture<Void> {
        let done = upgraded ?? channel.eventLoop.makePromise()
        let upgrader = NIOWebSocketClientUpgrader(
            maxFrameSize: maxFrameSize,
            automaticErrorHandling: true,
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let request = try sync.handler(type: WebSocketUpgradeRequestHandler.self)
                    request.upgradeSucceeded()
                    _ = sync.removeHandler(request)
                    try sync.addHandler(WebSocketByteStreamHandler(role: .client, maxOutboundFrameSize: maxOutboundFrameSize))
                    try addStreamHandlers(channel)
                    done.succeed(())
                }
            })
        return channel.eventLoop.makeCompletedFuture {
            let sync = channel.pipeline.syncOperations
            try sync.addHTTPClientHandlers(
                withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in }))
            try sync.addHandler(WebSocketUpgradeRequestHandler(host: host, path: path, origin: origin, timeout: upgradeTimeout, done: done))
        }
    }
}

/// Server side, before the upgrade: answers a plain HTTP request with 426 Upgrade Required, and
/// closes a connection that has not upgraded in time (it is removed by the upgrade).
final class WebSocketUpgradeRequiredHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        deadline = context.eventLoop.scheduleTask(in: timeout) { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Upgrade", value: "websocket")
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Content-Length", value: "0")
        let head = HTTPResponseHead(version: request.version, status: .upgradeRequired, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}

/// Client side, before the upgrade: sends the request and turns a refusal into an error.
final class WebSocketUpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let host: String
    private let path: String
    private let origin: String?
    private let timeout: TimeAmount
    private let done: EventLoopPromise<Void>
    private var deadline: Scheduled<Void>?
    private var sent = false
    private var finished = false

    init(host: String, path: String, origin: String?, timeout: TimeAmount, done: EventLoopPromise<Void>) {
        self.host = host
        self.path = path
        self.origin = origin
        self.timeout = timeout
        self.done = done
    }

    func upgradeSucceeded() { finished = true }

    func handlerAdded(context: ChannelHandlerContext) {
        deadline = context.eventLoop.scheduleTask(in: timeout) { [weak self] in
            self?.fail(context: context, WebSocketLinkError.upgradeTimeout)
        }
        if context.channel.isActive { sendRequest(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendRequest(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Any HTTP response reaching us means the upgrade did not happen.
        if case .head(let head) = unwrapInboundIn(data) {
            fail(context: context, WebSocketLinkError.upgradeRefused(status: head.status.code))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(context: context, error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(context: context, WebSocketLinkError.closedBeforeUpgrade)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        if !finished {
            finished = true
            done.fail(WebSocketLinkError.closedBeforeUpgrade)
        }
    }

    private func sendRequest(context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: host)
        headers.add(name: "Content-Length", value: "0")
        if let origin { headers.add(name: "Origin", value: origin) }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func fail(context: ChannelHandlerContext, _ error: Error) {
        guard !finished else { return }
        finished = true
        done.fail(error)
        context.close(promise: nil)
    }
}
