import Foundation
import NIOCore
import OnionRouting
import TorCells
import TorCrypto

/// Called on the link's event loop.
protocol OnionLinkDelegate: AnyObject {
    /// The link handshake finished; cells may be sent.
    func linkOpened(_ link: OnionLink, peer: LinkPeer)
    /// A cell arrived on the open link.
    func link(_ link: OnionLink, received cell: ChannelCell)
    /// The link is gone (after `linkOpened`, or instead of it with the handshake error).
    func linkClosed(_ link: OnionLink, error: Error?)
}

/// One Tor channel over a TLS connection: the NIO handler that sits above `TLSLinkHandler`, frames
/// cells, runs the link handshake, then hands cells to its delegate. It takes no protocol decisions:
/// the handshake state machine decides the handshake, the circuit state machines the rest.
///
/// Writes are batched: `send` appends framed cells to a buffer that is written and flushed once the
/// current event-loop task is done (or at once past 64 KiB), so a burst of cells becomes a few TLS
/// records instead of one write per cell.
final class OnionLink: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let flushThreshold = 64 * 1024

    let id: ChannelID
    let role: LinkRole
    weak var delegate: OnionLinkDelegate?
    private let handshakeTimeout: TimeAmount
    private let localAddresses: [NetinfoAddress]

    private var context: ChannelHandlerContext?
    private var handshake: LinkHandshake?
    private var decoder = ChannelCellDecoder()
    private var encoder = ChannelCellEncoder(circuitIDWidth: .fourBytes)
    private var pending = ByteBuffer()
    private var flushScheduled = false
    private var timeout: Scheduled<Void>?
    private(set) var peer: LinkPeer?
    private var closed = false
    private var reportedOpen = false

    init(id: ChannelID, role: LinkRole, delegate: OnionLinkDelegate?, localAddresses: [NetinfoAddress] = [],
         handshakeTimeout: TimeAmount = .seconds(30)) {
        self.id = id
        self.role = role
        self.delegate = delegate
        self.localAddresses = localAddresses
        self.handshakeTimeout = handshakeTimeout
    }

    var channel: Channel? { self.context?.channel }
    var isOpen: Bool { self.peer != nil && !self.closed }

    // MARK: sending (event loop only)

    /// Queue a cell for the peer. Dropped (with nothing to report) once the link is closed: the circuit
    /// state machines learn about that from `linkClosed`.
    func send(_ cell: ChannelCell) {
        guard let context, !self.closed, self.peer != nil else { return }
        do { try self.encoder.encode(cell, into: &self.pending) } catch {
            // Only our own oversized cell could fail to encode: a bug, not the peer's doing.
            assertionFailure("unencodable \(cell.command): \(error)")
            return
        }
        if self.pending.readableBytes >= Self.flushThreshold {
            self.flushPending()
        } else if !self.flushScheduled {
            self.flushScheduled = true
            context.eventLoop.execute { self.flushPending() }
        }
    }

    func flushPending() {
        self.flushScheduled = false
        guard let context, !self.closed, self.pending.readableBytes > 0 else { return }
        let out = self.pending
        self.pending = ByteBuffer()
        self.pending.reserveCapacity(Self.flushThreshold + 1024)
        context.writeAndFlush(self.wrapOutboundOut(out), promise: nil)
    }

    func close() {
        guard let context else { return }
        self.flushPending()
        context.close(promise: nil)
    }

    // MARK: ChannelHandler

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.timeout = context.eventLoop.scheduleTask(in: self.handshakeTimeout) { [weak self] in
            guard let self, self.peer == nil else { return }
            self.fail(LinkHandshakeError.timeout)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.finish(error: self.peer == nil ? LinkHandshakeError.closed : nil)
        self.context = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let tls = event as? TLSHandshakeCompleted else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        let facts = LinkFacts(
            peerCertificateDER: tls.peerCertificateDER, localCertificateDER: tls.localCertificateDER,
            exporter: { label, ctx, length in try tls.exporter.export(label: label, context: ctx, length: length) },
            peerAddress: Self.netinfoAddress(context.channel.remoteAddress),
            localAddresses: self.localAddresses, now: Date())
        var handshake = LinkHandshake(role: self.role, facts: facts)
        do {
            let actions = try handshake.start()
            self.handshake = handshake
            self.perform(actions, context: context)
        } catch {
            self.fail(error)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.closed else { return }
        self.decoder.append(self.unwrapInboundIn(data))
        while !self.closed {
            let next: ChannelCellDecoder.Next
            do { next = try self.decoder.next() } catch {
                self.fail(self.peer == nil ? LinkHandshakeError.framing(error) : error)
                return
            }
            guard case .cell(let cell) = next else { return }
            if self.peer != nil {
                self.delegate?.link(self, received: cell)
                continue
            }
            guard var handshake = self.handshake else {
                self.fail(LinkHandshakeError.unexpectedCell(cell.command, state: "TLS handshake"))
                return
            }
            do {
                let actions = try handshake.receive(cell)
                self.decoder.circuitIDWidth = handshake.circuitIDWidth
                self.handshake = handshake
                self.perform(actions, context: context)
            } catch {
                self.fail(error)
                return
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finish(error: self.peer == nil ? LinkHandshakeError.closed : nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.fail(error)
    }

    // MARK: private

    private func perform(_ actions: [LinkHandshake.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .write(let bytes):
                context.writeAndFlush(self.wrapOutboundOut(bytes), promise: nil)
            case .open(let peer):
                self.timeout?.cancel()
                self.timeout = nil
                self.peer = peer
                self.handshake = nil
                self.decoder.circuitIDWidth = .fourBytes
                self.reportedOpen = true
                self.delegate?.linkOpened(self, peer: peer)
            }
        }
    }

    private func fail(_ error: Error) {
        guard !self.closed else { return }
        self.finish(error: error)
        self.context?.close(promise: nil)
    }

    private func finish(error: Error?) {
        guard !self.closed else { return }
        self.closed = true
        self.timeout?.cancel()
        self.timeout = nil
        self.pending.clear()
        self.delegate?.linkClosed(self, error: error)
    }

    static func netinfoAddress(_ address: SocketAddress?) -> NetinfoAddress {
        if case .v4(let v4)? = address {
            let raw = UInt32(bigEndian: v4.address.sin_addr.s_addr)
            return .ipv4(IPv4Address(rawValue: raw))
        }
        return .ipv4(IPv4Address(rawValue: 0))
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
