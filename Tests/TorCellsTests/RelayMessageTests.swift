import NetBasics
import NIOCore
import Testing
import TestSupport
@testable import TorCells
import PeersmProtocol

// Byte vectors: C tor captures and hand-made cases published in arti's
// crates/tor-cell/tests/testvec_relaymsg.rs (bytes only), plus our own edge cases.

/// Decodes `hexBody` as `command`, checks it equals `message`, and that `message` encodes to
/// `canonicalHex` (default: the same bytes). Also round-trips through a full 509-byte relay cell.
func checkRelay(_ command: RelayCommand, _ hexBody: String, _ message: RelayMessage, canonical canonicalHex: String? = nil,
                sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(message.command == command, sourceLocation: sourceLocation)
    let decoded = try RelayMessage(command: command, body: buffer(hex: hexBody))
    #expect(decoded == message, sourceLocation: sourceLocation)
    #expect(try encodeBody(message) == hex(canonicalHex ?? hexBody), sourceLocation: sourceLocation)
    var rng = SplitMix64(seed: 1)
    let body = try RelayCell(streamID: 0x1234, message: message).encode(padding: &rng)
    let cell = try RelayCell(decoding: body)
    #expect(cell.command == command && cell.streamID == 0x1234, sourceLocation: sourceLocation)
    #expect(try cell.message() == message, sourceLocation: sourceLocation)
}

func relayError(_ command: RelayCommand, _ hexBody: String) -> CellError? {
    cellError { try RelayMessage(command: command, body: buffer(hex: hexBody)) }
}

@Suite("Relay messages")
struct RelayMessageTests {
    @Test("BEGIN vectors: hostname, flags, bracketed IPv6")
    func begin() throws {
        try checkRelay(.begin, "3132372E302E302E313A3730303300", .begin(try Begin(host: "127.0.0.1", port: 7003)))
        try checkRelay(.begin, "7777772e786b63642e636f6d3a34343300 00000003",
                       .begin(try Begin(host: "www.xkcd.com", port: 443, flags: [.ipv6Okay, .ipv4NotOkay])))
        try checkRelay(.begin, "5b323030313a6462383a3a315d3a323200", .begin(try Begin(host: "2001:db8::1", port: 22)))
        let parsed = try RelayMessage(command: .begin, body: buffer(hex: "5b323030313a6462383a3a315d3a323200"))
        guard case .begin(let b) = parsed else { Issue.record("not BEGIN"); return }
        #expect(b.ipv6Address == IPv6Address("2001:db8::1"))
        #expect(b.host == "2001:db8::1" && b.port == 22 && b.flags.isEmpty)
    }

    @Test("BEGIN malformed: no NUL, no port, bad port, non-ASCII, unbracketed IPv6, bad IPv6, short flags")
    func beginErrors() {
        #expect(relayError(.begin, "5b3a3a5d21") == .missingNulTerminator(field: "BEGIN ADDRPORT"))
        func body(_ s: String) -> String { s.utf8.map { hexByte($0) }.joined() + "00" }
        #expect(relayError(.begin, body("[::]!")) == .badStreamTarget(reason: "missing port"))
        #expect(relayError(.begin, body("example.com")) == .badStreamTarget(reason: "missing port"))
        #expect(relayError(.begin, body("example.com:0")) == .badStreamTarget(reason: "bad port"))
        #expect(relayError(.begin, body("example.com:65536")) == .badStreamTarget(reason: "bad port"))
        #expect(relayError(.begin, body("example.com:")) == .badStreamTarget(reason: "bad port"))
        #expect(relayError(.begin, body("example.com:+80")) == .badStreamTarget(reason: "bad port"))
        #expect(relayError(.begin, body(":80")) == .badStreamTarget(reason: "empty host"))
        #expect(relayError(.begin, body("torproject™.org:443")) == .badStreamTarget(reason: "ADDRPORT is not printable ASCII"))
        #expect(relayError(.begin, body("2001:db8::1:80")) == .badStreamTarget(reason: "IPv6 address without brackets"))
        #expect(relayError(.begin, body("[2001:db8:::1]:80")) == .badStreamTarget(reason: "malformed IPv6 address"))
        #expect(relayError(.begin, body("[2001:db8::1:80")) == .badStreamTarget(reason: "unclosed ["))
        #expect(relayError(.begin, body("a]b:80")) == .badStreamTarget(reason: "host contains a non-printable, non-ASCII or bracket character"))
        #expect(relayError(.begin, body("a.b:80") + "0000") == .truncated(field: "BEGIN flags"))
        #expect(cellError { try Begin(host: "exa mple.com", port: 80) }
            == .badStreamTarget(reason: "host contains a non-printable, non-ASCII or bracket character"))
        #expect(cellError { try Begin(host: "a.b", port: 0) } == .badStreamTarget(reason: "port 0"))
        #expect(cellError { try Begin(host: "fe80::1%eth0", port: 1) } == .badStreamTarget(reason: "malformed IPv6 address"))
    }

    @Test("DATA, DROP, BEGIN_DIR, TRUNCATE, TRUNCATED vectors")
    func simple() throws {
        try checkRelay(.data, "474554202f20485454502f312e310d0a0d0a", .data(buffer(Array("GET / HTTP/1.1\r\n\r\n".utf8))))
        try checkRelay(.drop, "", .drop)
        try checkRelay(.beginDir, "", .beginDir)
        try checkRelay(.truncate, "", .truncate)
        try checkRelay(.truncated, "08", .truncated(.channelClosed))
        #expect(relayError(.truncated, "") == .truncated(field: "TRUNCATED reason"))
        #expect(cellError { try encodeBody(.data(buffer(Array(repeating: 0, count: 499)))) } == .payloadTooLong(length: 499, limit: 498))
    }

    @Test("END vectors: plain reasons, EXITPOLICY with IPv4/IPv6, empty and TTL-less forms")
    func end() throws {
        try checkRelay(.end, "01", .end(End(reason: .misc)))
        try checkRelay(.end, "06", .end(End(reason: .done)))
        try checkRelay(.end, "04 7f000007 00000100",
                       .end(End(reason: .exitPolicy, exitPolicy: .init(address: .v4(IPv4Address(127, 0, 0, 7)), ttl: 256))))
        try checkRelay(.end, "04 20010db8 00000000 00000000 0000f00b 00000200",
                       .end(End(reason: .exitPolicy, exitPolicy: .init(address: IPAddress("2001:db8::f00b")!, ttl: 512))))
        try checkRelay(.end, "", .end(End(reason: .misc)), canonical: "01")
        try checkRelay(.end, "04 7f000007",
                       .end(End(reason: .exitPolicy, exitPolicy: .init(address: .v4(IPv4Address(127, 0, 0, 7)), ttl: .max))),
                       canonical: "04 7f000007 ffffffff")
        try checkRelay(.end, "0D", .end(End(reason: .torProtocol)))
        #expect(EndReason.notDirectory.rawValue == 14 && EndReason.torProtocol.description == "TORPROTOCOL")
        #expect(relayError(.end, "04 7f0000") == .badAddress(type: 0, length: 3))
    }

    @Test("CONNECTED vectors: empty, IPv4+TTL, IPv6 form")
    func connected() throws {
        try checkRelay(.connected, "", .connected(.empty))
        try checkRelay(.connected, "7F000001 00000E10", .connected(Connected(address: .v4(IPv4Address(127, 0, 0, 1)), ttl: 0xE10)))
        try checkRelay(.connected, "00000000 06 20010db8 00000000 00000000 00001122 00000E10",
                       .connected(Connected(address: IPAddress("2001:db8::1122"), ttl: 0xE10)))
    }

    @Test("CONNECTED malformed: bad address type, truncated TTL, unencodable 0.0.0.0")
    func connectedErrors() {
        #expect(relayError(.connected, "00000000 07 20010db8 00000000 00000000 00001122 00000E10") == .badAddress(type: 7, length: 20))
        #expect(relayError(.connected, "7F000001 0000") == .truncated(field: "CONNECTED TTL"))
        #expect(relayError(.connected, "00000000 06 20010db8") == .truncated(field: "CONNECTED IPv6 address"))
        #expect(cellError { try encodeBody(.connected(Connected(address: .v4(IPv4Address(rawValue: 0)), ttl: 1))) }
            == .unencodableAddress("0.0.0.0 in CONNECTED is reserved for the IPv6 form"))
    }

    @Test("SENDME vectors: v0 and v1; unknown versions kept")
    func sendme() throws {
        try checkRelay(.sendme, "", .sendme(.v0))
        try checkRelay(.sendme, "01 0014 F01234989823478bcdefabcdef01234567890123",
                       .sendme(.v1(digest: hex("F01234989823478bcdefabcdef01234567890123"))))
        try checkRelay(.sendme, "00 0000", .sendme(.v0), canonical: "")
        try checkRelay(.sendme, "07 0002 ABCD", .sendme(.unrecognized(version: 7, data: buffer(hex: "ABCD"))))
    }

    @Test("SENDME malformed: wrong DATA_LEN, truncated digest, bad digest on encode")
    func sendmeErrors() {
        #expect(relayError(.sendme, "01 0013 F01234989823478bcdefabcdef012345678901") == .badSendmeDigestLength(19))
        #expect(relayError(.sendme, "01 0014 F012") == .truncated(field: "SENDME data"))
        #expect(relayError(.sendme, "01") == .truncated(field: "SENDME DATA_LEN"))
        #expect(cellError { try encodeBody(.sendme(.v1(digest: [1, 2, 3]))) } == .badSendmeDigestLength(3))
    }

    @Test("EXTEND2 vector (IPv4 + RSA id, ntor) and all link specifier kinds")
    func extend2() throws {
        let onionskin = "03479E93EBF3FF2C58C1C9DBF2DE9DE9C2801B3E36A3E0BDB1F1A10579820243DD2E228B902940EB49EF842646E3926768C28410074BEE50A535116D657C6BFB7E5114119DC69F05DF907EF62002EA782B0A357F"
        let rsa = hex("03479E93EBF3FF2C58C1C9DBF2DE9DE9C2801B3E")
        let message = RelayMessage.extend2(Extend2(
            linkSpecifiers: [.ipv4(IPv4Address(127, 0, 0, 1), port: 5000), .rsaIdentity(rsa)],
            handshakeType: 2, handshakeData: buffer(hex: onionskin)))
        try checkRelay(.extend2, "02 00 06 7F0000011388 02 14 03479E93EBF3FF2C58C1C9DBF2DE9DE9C2801B3E 0002 0054 " + onionskin, message)
        guard case .extend2(let e) = message else { return }
        #expect(e.create2 == Create2(handshakeType: 2, handshakeData: buffer(hex: onionskin)))

        let ed = Array(repeating: UInt8(0xED), count: 32)
        try checkRelay(.extend2,
                       "05 00 06 0A000001 2329 02 14" + String(repeating: "11", count: 20) + " 03 20" + String(repeating: "ED", count: 32)
                           + " 01 12 20010db8000000000000000000000001 2329 7F 02 ABCD 0003 0002 BEEF",
                       .extend2(Extend2(linkSpecifiers: [.ipv4(IPv4Address(10, 0, 0, 1), port: 9001),
                                                         .rsaIdentity(Array(repeating: 0x11, count: 20)),
                                                         .ed25519Identity(ed),
                                                         .ipv6(IPv6Address("2001:db8::1")!, port: 9001),
                                                         .unknown(type: 0x7F, body: [0xAB, 0xCD])],
                                        handshakeType: 3, handshakeData: buffer(hex: "BEEF"))))
    }

    @Test("EXTEND2 malformed: bad link specifier lengths, truncated handshake")
    func extend2Errors() {
        #expect(relayError(.extend2, "01 00 05 7F00000113 0002 0000") == .badLinkSpecifier(type: 0, length: 5))
        #expect(relayError(.extend2, "01 02 13" + String(repeating: "11", count: 19) + "0002 0000") == .badLinkSpecifier(type: 2, length: 19))
        #expect(relayError(.extend2, "01 03 10" + String(repeating: "11", count: 16) + "0002 0000") == .badLinkSpecifier(type: 3, length: 16))
        #expect(relayError(.extend2, "01 01 06 7F0000011388 0002 0000") == .badLinkSpecifier(type: 1, length: 6))
        #expect(relayError(.extend2, "02 00 06 7F0000011388") == .truncated(field: "link specifier type"))
        #expect(relayError(.extend2, "01 00 06 7F0000011388 0002 0054 AABB") == .truncated(field: "HDATA"))
        #expect(relayError(.extend2, "01 7F 09 AABB") == .truncated(field: "link specifier"))
        #expect(cellError { try encodeBody(.extend2(Extend2(linkSpecifiers: [.ed25519Identity([1])], handshakeType: 2, handshakeData: ByteBuffer()))) }
            == .badLinkSpecifier(type: 3, length: 1))
    }

    @Test("EXTENDED2 vector")
    func extended2() throws {
        let reply = "0026619058EB2661834D54C2624828728F28915587CDAD1AD3373B85F33A480EEA9D3B2CEF8D39C1DBD2FA519E75296B96960690C79A28D6A0D9454F8E9634BD"
        try checkRelay(.extended2, "0040 " + reply, .extended2(Created2(handshakeData: buffer(hex: reply))))
        #expect(relayError(.extended2, "0041 " + reply) == .truncated(field: "HDATA"))
    }

    @Test("Unparsed commands (unknown, XON/XOFF, application commands such as Peersm DB_*) stay raw and round-trip")
    func raw() throws {
        try checkRelay(RelayCommand(249), "617262697472617279206279746573", .raw(RelayCommand(249), buffer(Array("arbitrary bytes".utf8))))
        for command in [RelayCommand.xoff, .xon, .resolve, .dbInfo, .dbQuery, .dbConnected, .dbData, .dbEnd, .dbSendme] {
            try checkRelay(command, "0102", .raw(command, buffer([1, 2])))
        }
        #expect(RelayCommand.xoff.rawValue == 43 && RelayCommand.xon.rawValue == 44)
        #expect(RelayCommand.dbInfo.rawValue == 80 && RelayCommand.dbSendme.rawValue == 85)
        // TorCells names no application command: they print and classify as unknown ones do.
        #expect(RelayCommand.dbData.description == "RELAY_COMMAND(83)" && RelayCommand(200).description == "RELAY_COMMAND(200)")
        #expect(RelayCommand.data.isStreamCommand && !RelayCommand.extend2.isStreamCommand && !RelayCommand.dbData.isStreamCommand)
        #expect(ApplicationCommands.peersm.contains(.dbQuery) && !ApplicationCommands.peersm.contains(.data))
        #expect(ApplicationCommands.peersm.opening == [81] && ApplicationCommands.peersm.bulk == [83])
    }
}
