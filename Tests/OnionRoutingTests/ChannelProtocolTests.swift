import Foundation
import NetBasics
import NIOCore
import Testing
import TorCells
import TorCrypto
import TestSupport

@testable import OnionRouting

/// Version negotiation, cell ordering, malformed input, and the open channel.
@Suite struct ChannelProtocolTests {
    let now = ChannelTestKeys.now

    // MARK: versions

    @Test func responderRefusesLinkVersionsBelow4() throws {
        var responder = responderMachine()
        _ = responder.start(now: now)
        let actions = responder.receive(try encodeLinkCells([linkCell(.versions([1, 2, 3]))]), now: now)
        #expect(actions == [.close(.noCommonLinkVersion(peerVersions: [1, 2, 3]))])
        #expect(responder.isClosed)
        // Nothing more comes out of a closed channel.
        #expect(responder.receive(try encodeLinkCells([linkCell(.versions([4]))]), now: now).isEmpty)
    }

    @Test func initiatorRefusesLinkVersionsBelow4() throws {
        var client = clientMachine()
        _ = client.start(now: now)
        let actions = client.receive(try encodeLinkCells([linkCell(.versions([3])), linkCell(.certs(Certs([])))]), now: now)
        #expect(actions == [.close(.noCommonLinkVersion(peerVersions: [3]))])
    }

    @Test func highestCommonVersionWins() throws {
        var responder = responderMachine()
        _ = responder.start(now: now)
        let actions = responder.receive(try encodeLinkCells([linkCell(.versions([3, 4, 5, 6, 7]))]), now: now)
        let cells = try decodeLinkCells(actions.written)
        #expect(try cells.first?.message() == .versions([4, 5]))
        // Our VERSIONS goes with 2-byte circuit IDs; everything after with 4 (514-byte NETINFO at the end).
        #expect(actions.written.readableBytes == cells.dropFirst().reduce(2 + 1 + 2 + 4) { sum, cell in
            sum + (cell.command.isVariableLength ? 7 + cell.payload.readableBytes : 514)
        })
    }

    // MARK: ordering

    @Test func netinfoBeforeCertsRefused() throws {
        var flight = try responderFlight()
        flight.remove(at: 1)  // CERTS
        var client = clientMachine()
        _ = client.start(now: now)
        let actions = client.receive(try encodeLinkCells(flight), now: now)
        #expect(actions.closeReason == .unexpectedCell(.authChallenge, state: "awaiting CERTS"))
    }

    @Test func certsBeforeVersionsRefused() throws {
        let flight = try responderFlight()
        var client = clientMachine()
        _ = client.start(now: now)
        // CERTS framed with 2-byte IDs, as if it came first.
        var bytes = ByteBuffer()
        try ChannelCellEncoder(circuitIDWidth: .twoBytes).encode(flight[1], into: &bytes)
        #expect(client.receive(bytes, now: now).closeReason == .unexpectedCell(.certs, state: "awaiting VERSIONS"))
    }

    @Test func circuitCellBeforeHandshakeCompleteRefused() throws {
        var responder = responderMachine()
        _ = responder.start(now: now)
        _ = responder.receive(try encodeLinkCells([linkCell(.versions([4, 5]))]), now: now)
        let create = try linkCell(.createFast(CreateFast(keyMaterial: Array(repeating: 7, count: 20))), circuitID: 0x8000_0001)
        let actions = responder.receive(try encodeCells([create]), now: now)
        #expect(actions.closeReason == .unexpectedCell(.createFast, state: "awaiting the initiator's NETINFO"))
    }

    @Test func duplicateCertsFromResponderRefused() throws {
        var flight = try responderFlight()
        flight.insert(flight[1], at: 2)
        var client = clientMachine()
        _ = client.start(now: now)
        #expect(client.receive(try encodeLinkCells(flight), now: now).closeReason
            == .unexpectedCell(.certs, state: "awaiting AUTH_CHALLENGE"))
    }

    @Test func authChallengeFromInitiatorRefused() throws {
        var responder = responderMachine()
        _ = responder.start(now: now)
        _ = responder.receive(try encodeLinkCells([linkCell(.versions([4, 5]))]), now: now)
        let challenge = try linkCell(.authChallenge(AuthChallenge(challenge: Array(repeating: 0, count: 32), methods: [3])))
        #expect(responder.receive(try encodeCells([challenge]), now: now).closeReason
            == .unexpectedCell(.authChallenge, state: "awaiting the initiator's NETINFO"))
    }

    @Test func handshakeCellWithCircuitIDRefused() throws {
        var flight = try responderFlight()
        flight[1].circuitID = 5
        var client = clientMachine()
        _ = client.start(now: now)
        #expect(client.receive(try encodeLinkCells(flight), now: now).closeReason == .nonZeroCircuitID(.certs, 5))
    }

    @Test func paddingDuringHandshakeIgnored() throws {
        var flight = try responderFlight()
        flight.insert(try linkCell(.vpadding(length: 3)), at: 1)
        flight.insert(try linkCell(.padding), at: 3)
        flight.insert(try linkCell(.vpadding(length: 0)), at: 5)
        // AUTHORIZE (132) was reserved and never specified: ignored like any unknown variable-length cell.
        flight.insert(ChannelCell(circuitID: 0, command: .authorize, payload: ByteBuffer(bytes: [1, 2, 3])), at: 6)
        var client = clientMachine()
        _ = client.start(now: now)
        #expect(client.receive(try encodeLinkCells(flight), now: now).openedPeer != nil)
    }

    @Test func relayInitiatorNeedsAuthChallengeMethod3() throws {
        var flight = try responderFlight()
        flight[2] = try linkCell(.authChallenge(AuthChallenge(challenge: Array(repeating: 1, count: 32), methods: [1])))
        var relay = relayInitiatorMachine()
        _ = relay.start(now: now)
        #expect(relay.receive(try encodeLinkCells(flight), now: now).closeReason == .noUsableAuthMethod([1]))
    }

    @Test func clientAcceptsResponderWithoutAuthChallenge() throws {
        var flight = try responderFlight()
        flight.remove(at: 2)
        var client = clientMachine()
        _ = client.start(now: now)
        let actions = client.receive(try encodeLinkCells(flight), now: now)
        #expect(actions.openedPeer != nil)
        #expect(try decodeCells4(actions.written).map(\.command) == [.netinfo])
    }

    // MARK: malformed input

    @Test func garbageRefused() throws {
        var client = clientMachine()
        _ = client.start(now: now)
        // An HTTP server: 'T' (84) reads as a fixed-length command, so nothing happens until 512 bytes are in.
        let response = "HTTP/1.1 400 Bad Request\r\n" + String(repeating: "X-Filler: 0123456789\r\n", count: 30)
        let bytes = Array(response.utf8)
        #expect(client.receive(ByteBuffer(bytes: bytes.prefix(500)), now: now).isEmpty)
        let actions = client.receive(ByteBuffer(bytes: bytes.dropFirst(500)), now: now)
        #expect(actions == [.close(.unexpectedCell(ChannelCommand(84), state: "awaiting VERSIONS"))])
    }

    @Test func truncatedCertsRefused() throws {
        var client = clientMachine()
        _ = client.start(now: now)
        var bytes = try encodeLinkCells([linkCell(.versions([4, 5]))])
        bytes.writeBytes([0, 0, 0, 0, 129, 0, 4, 1, 2, 0, 9])  // CERTS: one type-2 cert of 9 bytes, cell ends
        guard case .malformedCell(.certs, _) = client.receive(bytes, now: now).closeReason else {
            Issue.record("expected malformedCell")
            return
        }
    }

    @Test func oddVersionsRefused() throws {
        var responder = responderMachine()
        _ = responder.start(now: now)
        let actions = responder.receive(ByteBuffer(bytes: [0, 0, 7, 0, 3, 0, 4, 5]), now: now)
        #expect(actions == [.close(.malformedCell(.versions, .oddVersionsLength(3)))])
    }

    @Test func seededRandomBytesNeverTrap() throws {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<200 {
            var responder = responderMachine()
            _ = responder.start(now: now)
            var client = clientMachine()
            _ = client.start(now: now)
            let length = Int.random(in: 0..<1200, using: &rng)
            var bytes = ByteBuffer(bytes: (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) })
            // Half the time, behind a valid VERSIONS so the fuzz reaches the later states.
            if Bool.random(using: &rng) {
                var prefix = try encodeLinkCells([linkCell(.versions([4, 5]))])
                prefix.writeBuffer(&bytes)
                bytes = prefix
            }
            _ = responder.receive(bytes, now: now)
            _ = client.receive(bytes, now: now)
            #expect(!responder.isOpen && !client.isOpen)
        }
    }

    // MARK: open channel

    func openPair(relay: Bool = false) -> ChannelPair {
        var pair = ChannelPair(initiator: relay ? relayInitiatorMachine() : clientMachine(), responder: responderMachine())
        pair.run()
        return pair
    }

    @Test func circuitCellsFlowBothWaysAfterOpen() throws {
        var pair = openPair()
        let create = try ChannelCell(circuitID: 0x8000_0042, message: .create2(Create2(handshakeType: 2, handshakeData: ByteBuffer(bytes: [1, 2, 3]))))
        var toResponder = ByteBuffer()
        try pair.initiator.encodeCircuitCell(create, into: &toResponder)
        try pair.initiator.encodeCircuitCell(ChannelCell(circuitID: 0, message: .padding), into: &toResponder)
        #expect(toResponder.readableBytes == 2 * 514)
        let atResponder = pair.responder.receive(toResponder, now: now)
        #expect(atResponder == [.circuitCell(create)])
        #expect(try atResponder.first?.circuitCell?.message() == .create2(Create2(handshakeType: 2, handshakeData: ByteBuffer(bytes: [1, 2, 3]))))

        let destroy = try ChannelCell(circuitID: 0x8000_0042, message: .destroy(.finished))
        var toInitiator = ByteBuffer()
        try pair.responder.encodeCircuitCell(destroy, into: &toInitiator)
        try pair.responder.encodeCircuitCell(ChannelCell(circuitID: 0, message: .vpadding(length: 10)), into: &toInitiator)
        // A cell split across two reads arrives once, whole.
        let split = toInitiator.readSlice(length: 300)!
        #expect(pair.initiator.receive(split, now: now).isEmpty)
        #expect(pair.initiator.receive(toInitiator, now: now) == [.circuitCell(destroy)])
    }

    @Test func handshakeCellsAfterOpenAreProtocolErrors() throws {
        for message in [ChannelMessage.versions([4, 5]), .netinfo(Netinfo(timestamp: 0, otherAddress: initiatorAddress, myAddresses: [])),
                        .certs(try Certs([]))] {
            var pair = openPair(relay: true)
            let actions = pair.responder.receive(try encodeCells([linkCell(message)]), now: now)
            #expect(actions == [.close(.unexpectedCell(message.command, state: "open"))])
            #expect(pair.responder.isClosed)
        }
    }

    @Test func unknownCommandsIgnoredWhenOpen() throws {
        var pair = openPair()
        let unknownFixed = ChannelCell(circuitID: 7, command: ChannelCommand(99), payload: ByteBuffer(repeating: 0, count: 509))
        let unknownVariable = ChannelCell(circuitID: 0, command: ChannelCommand(200), payload: ByteBuffer(bytes: [1, 2]))
        let negotiate = try ChannelCell(circuitID: 0, message: .paddingNegotiate(PaddingNegotiate(command: .stop)))
        #expect(pair.initiator.receive(try encodeCells([unknownFixed, unknownVariable, negotiate]), now: now).isEmpty)
        #expect(pair.initiator.isOpen)
    }

    @Test func sendingBeforeOpenOrLinkCellsRefused() throws {
        var client = clientMachine()
        _ = client.start(now: now)
        var out = ByteBuffer()
        let relay = ChannelCell(circuitID: 0x8000_0001, command: .relay, payload: ByteBuffer(repeating: 0, count: 509))
        #expect(throws: TorChannelError.notOpen) { try client.encodeCircuitCell(relay, into: &out) }
        let pair = openPair()
        let netinfo = try linkCell(.netinfo(Netinfo(timestamp: 0, otherAddress: initiatorAddress, myAddresses: [])))
        #expect(throws: TorChannelError.notACircuitCell(.netinfo)) { try pair.initiator.encodeCircuitCell(netinfo, into: &out) }
        #expect(out.readableBytes == 0)
    }

    // MARK: vector

    /// arti `crates/tor-proto/src/channel/handshake.rs` tests: a C tor relay's CERTS cell from a chutney
    /// network (valid 2020-09-26T18:01:20Z) and arti's VERSIONS / AUTH_CHALLENGE / VPADDING / NETINFO cells.
    @Test func chutneyResponderFlightVerifiesAtItsTime() throws {
        let t2 = channelHex("308201B930820122A0030201020208607C28BE6C390943300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303831303030303030305A170D3231303831303030303030305A301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D30819F300D06092A864886F70D010101050003818D0030818902818100D38B1E6CEB946E0DB0751F4CBACE3DCB9688B6C25304227B4710C35AFB73627E50500F5913E158B621802612D1C75827003703338375237552EB3CD3C12F6AB3604E60C1A2D26BB1FBAD206FF023969A90909D6A65A5458A5312C26EBD3A3DAD30302D4515CDCD264146AC18E6FC60A04BD3EC327F04294D96BA5AA25B464C3F0203010001300D06092A864886F70D01010B0500038181003BCE561EA7F95CC00B78AAB5D69573FF301C282A751D4A651921D042F1BECDBA24D918A6D8A5E138DC07BBA0B335478AE37ABD2C93A93932442AE9084329E846170FE0FC4A50AAFC804F311CC3CA4F41D845A7BA5901CBBC3E021E9794AAC70CE1F37B0A951592DB1B64F2B4AFB81AE52DBD9B6FEDE96A5FB8125EB6251EE50A")
        let t4 = channelHex("01040006CC2A01F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B00100200400DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602")
        let t5 = channelHex("01050006C98A03B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8007173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF72171BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C")
        let t7 = channelHex("DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E90006DA3A805CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A52DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91CDCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED896488DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F")
        let peerCertDigest = channelHex("b4fd606b64e4cbd466b8d76cb131069bae6f3aa1878857c9f624e31d77a799b8")
        let peerRSA = try RSAIdentity(bytes: channelHex("2f1fb49bb332a9eec617e41e911c33fb3890aef3"))
        let peerEd = try Ed25519Identity(bytes: channelHex("dcb604db2034b00fd16986d4adb9d16b21cb4e4457a33dec0f538903683e96e9"))
        let when = Date(timeIntervalSince1970: 1_601_143_280)

        var stream = ByteBuffer(bytes: channelHex("0000 07 0006 0003 0004 0005"))
        let certs = try Certs([(2, t2), (4, t4), (5, t5), (7, t7)].map { Certs.Entry(type: CertType($0.0), body: ByteBuffer(bytes: $0.1)) })
        try ChannelCellEncoder(circuitIDWidth: .fourBytes).encode(circuitID: 0, message: .certs(certs), into: &stream)
        stream.writeBytes(channelHex("00000000 80 0003 FF FF FF"))  // VPADDING
        stream.writeBytes(channelHex("00000000 82 0026 FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF 0002 0003 00ff"))
        var netinfo = channelHex("00000000 08 48949290 04 04 7f 00 00 02 01 04 04 7f 00 00 03")
        netinfo += Array(repeating: 0, count: 514 - netinfo.count)
        stream.writeBytes(netinfo)

        let link = LinkContext(peerCertificateSHA256: peerCertDigest, localCertificateSHA256: nil, exporter: nil,
                               peerAddress: .ipv4(IPv4Address(127, 0, 0, 3)))
        var client = clientMachine(expecting: ExpectedPeerIdentity(rsaIdentity: peerRSA, ed25519Identity: peerEd), link: link)
        #expect(try decodeLinkCells(client.start(now: when).written).map { try $0.message() } == [.versions([4, 5])])
        let actions = client.receive(stream, now: when)
        let peer = try #require(actions.openedPeer)
        #expect(peer.linkProtocol == 5)
        #expect(peer.identity?.rsaIdentity == peerRSA && peer.identity?.ed25519Identity == peerEd)
        #expect(peer.clockSkew == when.timeIntervalSince1970 - TimeInterval(0x4894_9290))
        #expect(peer.netinfo.otherAddress == .ipv4(IPv4Address(127, 0, 0, 2)))
        #expect(try decodeCells4(actions.written).map(\.command) == [.netinfo])

        // The same flight for another expected relay, or a year later, is refused.
        var wrong = clientMachine(expecting: ExpectedPeerIdentity(rsaIdentity: ChannelTestKeys.responder.fingerprint), link: link)
        _ = wrong.start(now: when)
        guard case .wrongIdentity = wrong.receive(stream, now: when).closeReason else {
            Issue.record("expected wrongIdentity")
            return
        }
        var late = clientMachine(link: link)
        _ = late.start(now: when)
        #expect(late.receive(stream, now: when + 365 * 86400).closeReason == .certificatesRejected(.expired))
    }
}

func decodeCells4(_ bytes: ByteBuffer) throws -> [ChannelCell] {
    var decoder = ChannelCellDecoder(circuitIDWidth: .fourBytes)
    decoder.append(bytes)
    return try decoder.decodeAvailable()
}
