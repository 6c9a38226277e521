import Foundation
import NIOCore
import OnionRouting
import TorCells
import TorCrypto

/// Called on the link's event loop.
protocol OnionLinkDelegate: AnyObject {
    /// The link handshake finished; cells may be sent.
    func linkOpened(_ link: OnionLink, peer: ChannelPeer)
    /// A circuit cell arrived on the open link.
    func link(_ link: OnionLink, received cell: ChannelCell)
    /// The link is gone (after `linkOpened`, or instead of it with what ended the handshake).
    func linkClosed(_ link: OnionLink, error: Error?)
    /// The link's outbound buffer went over (false) or back under (true) NIO's high/low water marks.
    func link(_ link: OnionLink, writable: Bool)
}

extension OnionLinkDelegate {
    func link(_ link: OnionLink, writable: Bool) {}
}

/// Why a link closed before it opened, when the pipeline reported nothing more specific.
public enum OnionLinkError: Error, Hashable, Sendable {
    case closedDuringHandshake
}

/// One Tor channel as the circuit layer sees it: the top of the pipeline
/// `TLSLinkHandler → LinkHandler → OnionLink`. `LinkHandler` (with the sans-I/O `ChannelStateMachine`)
/// runs the link handshake and frames cells; this handler only routes circuit cells to its delegate
/// (the relay server or the client) under a `ChannelID`, and batches writes: `send` writes at once and
/// flushes when the current event-loop task is done, so a burst of cells leaves in one flush.
///
/// Reading is paused while a link that this one's cells produce output for cannot take more: the link
/// itself (replies no window limits, such as an application's refusals or END, go back to the peer that is not
/// reading them) or, at a relay, the link its circuits forward to (`setReadBlocked`). Otherwise such
/// cells pile up in NIO's outbound buffer without bound.
final class OnionLink: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ChannelCell
    typealias OutboundIn = ChannelCell
    typealias OutboundOut = ChannelCell

    let id: ChannelID
    let endpoint: ChannelEndpoint
    weak var delegate: OnionLinkDelegate?

    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    private(set) var peer: ChannelPeer?
    private var closed = false
    private var firstError: Error?
    /// Links (this one included) whose unwritability pauses our reads; read while empty.
    private var readBlockers: Set<ChannelID> = []
    /// A read was asked for while blocked: issued once unblocked.
    private var pendingRead = false

    init(id: ChannelID, endpoint: ChannelEndpoint, delegate: OnionLinkDelegate?) {
        self.id = id
        self.endpoint = endpoint
        self.delegate = delegate
    }

    var isOpen: Bool { self.peer != nil && !self.closed }
    /// Whether we opened the link (decides our circuit-ID half).
    var role: ChannelRole {
        if case .responder = self.endpoint { return .responder }
        return .initiator
    }
    var peerIdentity: RSAIdentity? { self.peer?.identity?.rsaIdentity }
    var peerEd25519Identity: Ed25519Identity? { self.peer?.identity?.ed25519Identity }

    /// The handlers below this one for a link with `endpoint`.
    static func pipeline(tls: TLSContext, endpoint: ChannelEndpoint, localAddresses: [NetinfoAddress],
                         handshakeTimeout: TimeAmount) throws -> [ChannelHandler] {
        [try TLSLinkHandler(context: tls), WriteCoalescingHandler(),
         LinkHandler(configuration: ChannelConfiguration(endpoint: endpoint), localAddresses: localAddresses,
                     handshakeTimeout: handshakeTimeout)]
    }

    // MARK: sending (event loop only)

    /// Queue a cell for the peer. Dropped once the link is closed: the circuit state machines learn
    /// about that from `linkClosed`.
    func send(_ cell: ChannelCell) {
        guard let context, !self.closed, self.peer != nil else { return }
        context.write(self.wrapOutboundOut(cell), promise: nil)
        if !self.flushScheduled {
            self.flushScheduled = true
            context.eventLoop.execute {
                self.flushScheduled = false
                self.context?.flush()
            }
        }
    }

    /// Pause (true) or resume reading because the link `blocker` is (no longer) unwritable.
    func setReadBlocked(by blocker: ChannelID, _ blocked: Bool) {
        if blocked {
            self.readBlockers.insert(blocker)
        } else if self.readBlockers.remove(blocker) != nil, self.readBlockers.isEmpty, self.pendingRead {
            self.pendingRead = false
            self.context?.read()
        }
    }

    var isReadBlocked: Bool { !self.readBlockers.isEmpty }

    func close() {
        guard let context else { return }
        context.flush()
        context.close(promise: nil)
    }

    // MARK: ChannelHandler

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.finish()
        self.context = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let opened = event as? LinkOpened, self.peer == nil, !self.closed {
            self.peer = opened.peer
            self.delegate?.linkOpened(self, peer: opened.peer)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.closed else { return }
        self.delegate?.link(self, received: self.unwrapInboundIn(data))
    }

    func read(context: ChannelHandlerContext) {
        if self.readBlockers.isEmpty {
            context.read()
        } else {
            self.pendingRead = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        self.setReadBlocked(by: self.id, !writable)
        self.delegate?.link(self, writable: writable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // LinkHandler and TLSLinkHandler close the connection themselves after a fatal error.
        if self.firstError == nil { self.firstError = error }
        context.close(promise: nil)
    }

    private func finish() {
        guard !self.closed else { return }
        self.closed = true
        let error = self.peer == nil ? (self.firstError ?? OnionLinkError.closedDuringHandshake) : self.firstError
        self.delegate?.linkClosed(self, error: error)
    }
}

/// Joins the framed cells written between two flushes into one buffer before TLS, so a burst of cells
/// becomes a few full TLS records instead of one 514-byte record (and one AEAD call) per cell.
final class WriteCoalescingHandler: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Past this many pending bytes the batch is passed on and flushed without waiting for the end of
    /// the event-loop task. A relay forwarding a burst (500 bulk application cells, a 256 KB socket
    /// read) then hands the next hop its first cells while it still works on the rest: hops overlap
    /// instead of each one storing the whole burst before forwarding any of it.
    static let batchLimit = 32 * 1024

    private var pending: ByteBuffer?
    private var promise: EventLoopPromise<Void>?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var bytes = self.unwrapOutboundIn(data)
        if self.pending == nil {
            self.pending = bytes
        } else {
            self.pending!.writeBuffer(&bytes)
        }
        if let promise {
            if let existing = self.promise { existing.futureResult.cascade(to: promise) } else { self.promise = promise }
        }
        if self.pending!.readableBytes >= Self.batchLimit {
            self.passOn(context: context)
            context.flush()
        }
    }

    func flush(context: ChannelHandlerContext) {
        self.passOn(context: context)
        context.flush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        self.passOn(context: context)
        context.close(mode: mode, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.pending = nil
        self.promise?.fail(ChannelError.ioOnClosedChannel)
        self.promise = nil
    }

    private func passOn(context: ChannelHandlerContext) {
        guard let pending = self.pending else { return }
        self.pending = nil
        let promise = self.promise
        self.promise = nil
        context.write(self.wrapOutboundOut(pending), promise: promise)
    }
}

extension TLSContext {
    /// The responder TLS context of a relay: its RSA link key and link certificate (which its CERTS
    /// type-5 cert certifies).
    static func relay(_ keys: RelayKeys) throws -> TLSContext {
        let keyPEM = String(decoding: try keys.linkKey.pem(), as: UTF8.self)
        let base64 = Data(keys.linkCert.der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        let certPEM = "-----BEGIN CERTIFICATE-----\n\(base64)\n-----END CERTIFICATE-----\n"
        return try TLSContext.server(privateKeyPEM: keyPEM, certificatePEM: certPEM)
    }
}
