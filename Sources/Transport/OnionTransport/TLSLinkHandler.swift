import NIOCore

/// Fired inbound (as a user event) by `TLSLinkHandler` once the handshake completes, before any
/// application bytes.
public struct TLSHandshakeCompleted: @unchecked Sendable {
    /// The peer's leaf certificate (Tor hashes it for the CERTS type-5 check and AUTHENTICATE's
    /// SCERT); nil when the peer sent none, as a Tor initiator does.
    public let peerCertificateDER: [UInt8]?
    /// Our own certificate (nil on the client side).
    public let localCertificateDER: [UInt8]?
    public let protocolVersion: String
    public let cipherSuite: String
    /// RFC 5705 exporter of this connection (AUTHENTICATE type 3's TLSSECRETS).
    public let exporter: TLSKeyingMaterialExporter
}

/// The keying-material exporter of one link. Usable only on the channel's event loop (it reads the
/// connection's `TLSEngine`, which that loop owns).
public struct TLSKeyingMaterialExporter: @unchecked Sendable {
    private let engine: TLSEngine
    private let eventLoop: EventLoop

    init(engine: TLSEngine, eventLoop: EventLoop) {
        self.engine = engine
        self.eventLoop = eventLoop
    }

    public func export(label: String, context: [UInt8]?, length: Int) throws -> [UInt8] {
        eventLoop.preconditionInEventLoop()
        return try engine.exportKeyingMaterial(label: label, context: context, length: length)
    }
}

/// Thin NIO handler that moves bytes between the channel and a `TLSEngine`: ciphertext below,
/// plaintext `ByteBuffer`s above. It holds no protocol logic of its own.
///
/// - The client starts the handshake when the channel becomes active. Writes made before the
///   handshake completes are held and sent, in order, right after it.
/// - A handshake that has not completed within `handshakeTimeout` fails with `.handshakeTimeout`
///   (a peer that connects and stays silent must not hold a connection forever).
/// - On completion it fires `TLSHandshakeCompleted` inbound (and completes `handshakePromise`).
/// - A TLS failure, or the transport closing mid-handshake, is fired as a `TLSError` through
///   `errorCaught`, any pending alert is sent, and the channel is closed.
/// - `close()` sends close_notify, waits (at most `closeNotifyTimeout`) for it to be written, then
///   closes; a close_notify from the peer is answered in kind and the channel closed.
public final class TLSLinkHandler: ChannelDuplexHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State { case idle, handshaking, active, closing, closed }

    private let engine: TLSEngine
    private var state = State.idle
    private var heldWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var handshakePromise: EventLoopPromise<TLSHandshakeCompleted>?
    private let closeNotifyTimeout: TimeAmount
    private let handshakeTimeout: TimeAmount?
    private var handshakeDeadline: Scheduled<Void>?
    private var deliveredSinceReadComplete = false
    private var readRequested = false

    /// - Parameters:
    ///   - context: client or server configuration; decides the role.
    ///   - serverName: SNI for a client (optional; Tor does not need it).
    ///   - handshakePromise: completed with the handshake result, or failed with the error that ended it.
    public init(context: TLSContext, serverName: String? = nil,
                handshakePromise: EventLoopPromise<TLSHandshakeCompleted>? = nil,
                handshakeTimeout: TimeAmount? = .seconds(30),
                closeNotifyTimeout: TimeAmount = .seconds(3)) throws {
        engine = try TLSEngine(context: context, serverName: serverName)
        self.handshakePromise = handshakePromise
        self.handshakeTimeout = handshakeTimeout
        self.closeNotifyTimeout = closeNotifyTimeout
    }

    // MARK: lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startHandshake(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        failHeldWrites(ChannelError.ioOnClosedChannel)
        handshakePromise?.fail(ChannelError.ioOnClosedChannel)
        handshakePromise = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let midHandshake = state == .idle || state == .handshaking
        state = .closed
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        failHeldWrites(ChannelError.ioOnClosedChannel)
        if midHandshake {
            let error = TLSError(.closedDuringHandshake, "the connection closed before the TLS handshake completed")
            handshakePromise?.fail(error)
            handshakePromise = nil
            context.fireErrorCaught(error)
        }
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        if state == .idle || state == .handshaking {
            handshakePromise?.fail(error)
            handshakePromise = nil
        }
        context.fireErrorCaught(error)
    }

    // MARK: inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .closed:
            return
        case .idle:
            startHandshake(context: context)
            guard state == .handshaking else { return }
        case .handshaking, .active, .closing:
            break
        }
        let result: TLSEngine.FeedResult
        do {
            result = try engine.feed(ciphertext: unwrapInboundIn(data))
        } catch {
            fail(context: context, error: error)
            return
        }
        sendPending(context: context)
        if result.handshakeCompleted { handshakeDidComplete(context: context) }
        if let plaintext = result.plaintext, plaintext.readableBytes > 0 {
            deliveredSinceReadComplete = true
            context.fireChannelRead(wrapInboundOut(plaintext))
        }
        if result.receivedCloseNotify && state == .active {
            closeWithNotify(context: context, promise: nil)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if deliveredSinceReadComplete {
            deliveredSinceReadComplete = false
            readRequested = false
            context.fireChannelReadComplete()
        } else if readRequested {
            // Only handshake or partial records arrived: the reader above still waits, so ask again
            // (matters when autoRead is off).
            context.read()
        }
    }

    // MARK: outbound

    public func read(context: ChannelHandlerContext) {
        readRequested = true
        context.read()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            heldWrites.append((plaintext, promise))
        case .active:
            encryptAndWrite(context: context, plaintext, promise: promise)
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        // Before the handshake the held writes are flushed when it completes.
        if state == .active || state == .closing { context.flush() }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch state {
        case .active:
            closeWithNotify(context: context, promise: promise)
        case .closing:
            promise?.completeWith(context.channel.closeFuture)
        case .idle, .handshaking:
            state = .closed
            failHeldWrites(ChannelError.ioOnClosedChannel)
            handshakePromise?.fail(ChannelError.ioOnClosedChannel)
            handshakePromise = nil
            context.close(mode: mode, promise: promise)
        case .closed:
            context.close(mode: mode, promise: promise)
        }
    }

    // MARK: private

    private func startHandshake(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .handshaking
        if let handshakeTimeout {
            handshakeDeadline = context.eventLoop.scheduleTask(in: handshakeTimeout) { [weak self] in
                guard let self, self.state == .handshaking else { return }
                self.fail(context: context, error: TLSError(.handshakeTimeout,
                                                            "no TLS handshake within \(handshakeTimeout.nanoseconds / 1_000_000) ms"))
            }
        }
        do {
            try engine.startHandshake()
        } catch {
            fail(context: context, error: error)
            return
        }
        sendPending(context: context)
    }

    private func handshakeDidComplete(context: ChannelHandlerContext) {
        state = .active
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        let event = TLSHandshakeCompleted(
            peerCertificateDER: engine.peerCertificateDER,
            localCertificateDER: engine.localCertificateDER,
            protocolVersion: engine.protocolVersion,
            cipherSuite: engine.cipherSuite,
            exporter: TLSKeyingMaterialExporter(engine: engine, eventLoop: context.eventLoop))
        handshakePromise?.succeed(event)
        handshakePromise = nil
        context.fireUserInboundEventTriggered(event)
        let held = heldWrites
        heldWrites = []
        for (plaintext, promise) in held {
            guard state == .active else {
                promise?.fail(ChannelError.ioOnClosedChannel)
                continue
            }
            encryptAndWrite(context: context, plaintext, promise: promise)
        }
        if !held.isEmpty && state == .active { context.flush() }
    }

    private func encryptAndWrite(context: ChannelHandlerContext, _ plaintext: ByteBuffer, promise: EventLoopPromise<Void>?) {
        do {
            try engine.write(plaintext: plaintext)
        } catch {
            promise?.fail(error)
            fail(context: context, error: error)
            return
        }
        if let ciphertext = engine.drainOutbound() {
            context.write(wrapOutboundOut(ciphertext), promise: promise)
        } else {
            promise?.succeed(())
        }
    }

    /// Writes and flushes whatever the engine has queued (handshake messages, alerts).
    private func sendPending(context: ChannelHandlerContext) {
        if let ciphertext = engine.drainOutbound() {
            context.writeAndFlush(wrapOutboundOut(ciphertext), promise: nil)
        }
    }

    private func closeWithNotify(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        state = .closing
        engine.close()
        guard let notify = engine.drainOutbound() else {
            context.close(promise: promise)
            return
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(notify), promise: written)
        // A peer that stops reading must not keep the channel open forever.
        let deadline = context.eventLoop.scheduleTask(in: closeNotifyTimeout) {
            context.close(promise: nil)
        }
        written.futureResult.whenComplete { _ in
            deadline.cancel()
            context.close(promise: promise)
        }
    }

    private func fail(context: ChannelHandlerContext, error: Error) {
        guard state != .closed else { return }
        state = .closed
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        sendPending(context: context) // a fatal alert tells the peer why
        failHeldWrites(error)
        handshakePromise?.fail(error)
        handshakePromise = nil
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failHeldWrites(_ error: Error) {
        let held = heldWrites
        heldWrites = []
        for (_, promise) in held { promise?.fail(error) }
    }
}
