import Foundation
import NetBasics
import NIOCore
import TorCells
import TorCrypto

@testable import OnionRouting

/// Relay key bundles for the channel tests: generating RSA keys is slow, so each exists once per process.
enum ChannelTestKeys {
    static let now = Date(timeIntervalSince1970: 1_790_000_000)
    // Test fixtures only: if key generation fails, every channel test fails at this point with the error.
    static let responder = try! RelayKeys.generate(now: now)
    static let initiator = try! RelayKeys.generate(now: now)
    static let stranger = try! RelayKeys.generate(now: now)
}

/// Stand-in for the TLS session's RFC 5705 exporter: both ends of one test link derive the same value
/// from a shared secret, label and context, as two ends of one TLS session would.
func testExporter(secret: [UInt8]) -> LinkKeyingMaterialExporter {
    { label, context, length in
        Array(TorDigest.sha256(secret + Array(label.utf8) + [0] + context).prefix(length))
    }
}

func channelHex(_ text: String) -> [UInt8] {
    guard let bytes = [UInt8](hexString: text) else { fatalError("bad hex literal in a test: \(text)") }
    return bytes
}

let initiatorAddress = NetinfoAddress.ipv4(IPv4Address(127, 0, 0, 2))
let responderAddress = NetinfoAddress.ipv4(IPv4Address(127, 0, 0, 1))

/// The link as each side's TLS layer would describe it: the responder presents `keys.linkCert`.
func initiatorLink(responder: RelayKeys = ChannelTestKeys.responder, secret: [UInt8] = [1, 2, 3]) -> LinkContext {
    LinkContext(peerCertificateDER: responder.linkCert.der, localCertificateDER: nil,
                exporter: testExporter(secret: secret), peerAddress: responderAddress)
}

func responderLink(_ keys: RelayKeys = ChannelTestKeys.responder, secret: [UInt8] = [1, 2, 3]) -> LinkContext {
    LinkContext(peerCertificateDER: nil, localCertificateDER: keys.linkCert.der,
                exporter: testExporter(secret: secret), peerAddress: initiatorAddress, localAddresses: [responderAddress])
}

func clientMachine(expecting expected: ExpectedPeerIdentity = .any, link: LinkContext = initiatorLink()) -> ChannelStateMachine {
    ChannelStateMachine(configuration: ChannelConfiguration(endpoint: .client(expecting: expected)), link: link)
}

func relayInitiatorMachine(_ keys: RelayKeys = ChannelTestKeys.initiator, expecting expected: ExpectedPeerIdentity = .any,
                           link: LinkContext = initiatorLink()) -> ChannelStateMachine {
    ChannelStateMachine(configuration: ChannelConfiguration(endpoint: .relayInitiator(keys, expecting: expected)), link: link)
}

func responderMachine(_ keys: RelayKeys = ChannelTestKeys.responder, link: LinkContext? = nil) -> ChannelStateMachine {
    ChannelStateMachine(configuration: ChannelConfiguration(endpoint: .responder(keys)), link: link ?? responderLink(keys))
}

extension ChannelAction {
    var written: ByteBuffer? { if case .write(let b) = self { return b } else { return nil } }
    var closeReason: TorChannelError? { if case .close(let e) = self { return e } else { return nil } }
    var openedPeer: ChannelPeer? { if case .opened(let p) = self { return p } else { return nil } }
    var circuitCell: ChannelCell? { if case .circuitCell(let c) = self { return c } else { return nil } }
}

extension Array where Element == ChannelAction {
    var written: ByteBuffer {
        var out = ByteBuffer()
        for action in self { if var b = action.written { out.writeBuffer(&b) } }
        return out
    }
    var closeReason: TorChannelError? { lazy.compactMap(\.closeReason).first }
    var openedPeer: ChannelPeer? { lazy.compactMap(\.openedPeer).first }
}

/// Two state machines wired back to back in memory. Bytes go across in chunks of `chunkSize` (nil: whole
/// writes) so the framing is exercised across arbitrary splits.
struct ChannelPair {
    var initiator: ChannelStateMachine
    var responder: ChannelStateMachine
    var now = ChannelTestKeys.now
    var chunkSize: Int?
    var initiatorActions: [ChannelAction] = []
    var responderActions: [ChannelAction] = []

    init(initiator: ChannelStateMachine, responder: ChannelStateMachine, chunkSize: Int? = nil) {
        self.initiator = initiator
        self.responder = responder
        self.chunkSize = chunkSize
    }

    /// Starts both ends and moves bytes until neither has anything more to say.
    mutating func run() {
        var toResponder = ByteBuffer()
        var toInitiator = ByteBuffer()
        record(initiator: initiator.start(now: now), &toResponder)
        record(responder: responder.start(now: now), &toInitiator)
        deliver(&toResponder, &toInitiator)
    }

    mutating func deliver(_ toResponder: inout ByteBuffer, _ toInitiator: inout ByteBuffer) {
        while toResponder.readableBytes > 0 || toInitiator.readableBytes > 0 {
            while let chunk = take(&toResponder) { record(responder: responder.receive(chunk, now: now), &toInitiator) }
            while let chunk = take(&toInitiator) { record(initiator: initiator.receive(chunk, now: now), &toResponder) }
        }
    }

    private func take(_ buffer: inout ByteBuffer) -> ByteBuffer? {
        guard buffer.readableBytes > 0 else { return nil }
        return buffer.readSlice(length: min(chunkSize ?? buffer.readableBytes, buffer.readableBytes))
    }

    private mutating func record(initiator actions: [ChannelAction], _ out: inout ByteBuffer) {
        initiatorActions += actions
        var bytes = actions.written
        out.writeBuffer(&bytes)
    }

    private mutating func record(responder actions: [ChannelAction], _ out: inout ByteBuffer) {
        responderActions += actions
        var bytes = actions.written
        out.writeBuffer(&bytes)
    }
}

/// Splits a byte stream the way a fresh link does: the first cell with 2-byte circuit IDs, the rest with 4.
func decodeLinkCells(_ bytes: ByteBuffer) throws -> [ChannelCell] {
    var decoder = ChannelCellDecoder(circuitIDWidth: .twoBytes)
    decoder.append(bytes)
    var cells: [ChannelCell] = []
    if case .cell(let first) = try decoder.next() { cells.append(first) }
    decoder.circuitIDWidth = .fourBytes
    cells += try decoder.decodeAvailable()
    return cells
}

/// Frames cells as a fresh link does (VERSIONS first with 2-byte IDs).
func encodeLinkCells(_ cells: [ChannelCell]) throws -> ByteBuffer {
    var out = ByteBuffer()
    for (index, cell) in cells.enumerated() {
        try ChannelCellEncoder(circuitIDWidth: index == 0 && cell.command == .versions ? .twoBytes : .fourBytes)
            .encode(cell, into: &out)
    }
    return out
}

/// Frames cells with 4-byte circuit IDs (everything after VERSIONS).
func encodeCells(_ cells: [ChannelCell]) throws -> ByteBuffer {
    var out = ByteBuffer()
    for cell in cells { try ChannelCellEncoder(circuitIDWidth: .fourBytes).encode(cell, into: &out) }
    return out
}

func linkCell(_ message: ChannelMessage, circuitID: UInt32 = 0) throws -> ChannelCell {
    try ChannelCell(circuitID: circuitID, message: message)
}

/// The responder's first flight (VERSIONS, CERTS, AUTH_CHALLENGE, NETINFO) to an initiator's VERSIONS.
func responderFlight(_ keys: RelayKeys = ChannelTestKeys.responder, versions: [UInt16] = [4, 5]) throws -> [ChannelCell] {
    var responder = responderMachine(keys)
    _ = responder.start(now: ChannelTestKeys.now)
    let actions = responder.receive(try encodeLinkCells([linkCell(.versions(versions))]), now: ChannelTestKeys.now)
    return try decodeLinkCells(actions.written)
}

/// Replaces (or with nil, removes) the certificate of `type` in a CERTS cell.
func replacingCert(in cell: ChannelCell, type: UInt8, with body: [UInt8]?) throws -> ChannelCell {
    guard case .certs(let certs) = try cell.message() else { throw TorChannelError.notOpen }
    var entries = certs.entries.filter { $0.type.rawValue != type }
    if let body {
        if let index = certs.entries.firstIndex(where: { $0.type.rawValue == type }) {
            entries.insert(Certs.Entry(type: CertType(type), body: ByteBuffer(bytes: body)), at: index)
        } else {
            entries.append(Certs.Entry(type: CertType(type), body: ByteBuffer(bytes: body)))
        }
    }
    return try linkCell(.certs(Certs(entries)))
}

func certBody(in cell: ChannelCell, type: UInt8) throws -> [UInt8] {
    guard case .certs(let certs) = try cell.message(), let body = certs[CertType(type)] else { throw TorChannelError.notOpen }
    return Array(body.readableBytesView)
}
