import NetBasics
import NIOCore
import Testing
@testable import TorCells

// Byte vectors: tor-spec layouts as captured from C tor 0.4.5 in a chutney network, published in
// arti's crates/tor-cell/tests/testvec_chanmsg.rs (bytes only), plus hand-made edge cases.

/// Decodes `hexBody` (zero-padded to 509 for fixed commands) and checks it equals `message`;
/// re-encodes `message` and checks the bytes round-trip.
func checkChannel(_ command: ChannelCommand, _ hexBody: String, _ message: ChannelMessage,
                  sourceLocation: SourceLocation = #_sourceLocation) throws {
    let body = hex(hexBody)
    let wire = command.isVariableLength ? body : padded(body)
    #expect(message.command == command, sourceLocation: sourceLocation)
    let decoded = try ChannelMessage(command: command, payload: buffer(wire))
    #expect(decoded == message, sourceLocation: sourceLocation)
    let encoded = try encodePayload(message)
    #expect((command.isVariableLength ? encoded : padded(encoded)) == wire, sourceLocation: sourceLocation)
    // Through full framing, both circuit ID widths.
    for width in [CircuitIDWidth.twoBytes, .fourBytes] {
        var out = ByteBuffer()
        try ChannelCellEncoder(circuitIDWidth: width).encode(circuitID: 3, message: message, into: &out)
        var decoder = ChannelCellDecoder(circuitIDWidth: width)
        decoder.append(out)
        let cells = try decoder.decodeAvailable()
        #expect(cells.count == 1 && cells[0].command == command, sourceLocation: sourceLocation)
        #expect(try cells.first?.message() == message, sourceLocation: sourceLocation)
    }
}

let authenticateBodyHex = "4155544830303033ED6B2ACBAC868D87D1500505BF59196FD38DEF15E1078C46BF97C7EBCC26C2A26AAF7E6B8FF0C27AB8F0047426017D03A413D8C1D00077ED441112C3E88EEE535BA78B2FD74C3910C5FECBD700677DCA931F4B90EA5CD24D4E64F7E9EC9E0F38E4E1E55E42BC72F59E9224E328EB1BBE3D079013B2A04CDBCEB43B7135D365E81B01B6845D789F66F0F62AAF52D906D2252E5F105215A627123C05AF782D7B0D64C41C30AFB6660B3DB1028868104E2560CB527568241992B80855101D3BF6EFA987F7A56C132A0CF38B0097AA215CC58FF089AFCC15C0ABB3947E68137CD8554E336C435E4633F88909919E5448F80CDDBD5987D85407A95A2BBC898C7004318265719D99C7B549C276CDEE38CE9202395CB7E1EBD9B3D47C1F4BC254AA12798BA1480400A3CC8067518A9BBDD453E601579429CF2E72D6C175DA0A412D99ECA1079015651E95E8F40AD8BEC3CB496E83C0C66D10F4C606"

let certBodiesHex: [(UInt8, String)] = [
    (1, "3082023A308201A3A003020102020872AB0FE86C771604300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303632373030303030305A170D3231303231363233353935395A301C311A301806035504030C117777772E617775676863646E732E6E657430820122300D06092A864886F70D01010105000382010F003082010A0282010100FE255E99E10BE986DDA5DFB4AD7C39E8EFE4E5D79E105AB976942B6829386EB1D7B7AFB5ED4FCBEC8C1A34C34FD2ED182F8B42A0363453B55EE371F21347235277E2357F28AA10DD82D4248F7D1894AB5D2979654F71C350F73AD9F918D71F34F1505F77EC16391C8340F392F3684BA4BB6A7B022C3954C1158F152F9E3B4E328FAB2E4E881903CA0E32204B0FDA8AB62B6E215A7BDEC3F2AE41DC58EEC1252F643A1812A5D71802F48D6133DF79955E01F0287BB4AB8CF95BEBCD2EC66EF5B38C7B5EC08DED3D6E2A1D57289D773D5CB932803B6D97784D1DA36AE71C073ADBB7393714001CD7A082512772A7076DC01166417AF7C50AEF7F15FD0806EB07FF0203010001300D06092A864886F70D01010B050003818100CDA4E06BB6BB238B91188A077EEB0A4722518090FD116AF6CDEEB0E85CF6D8E242CF861F973A252EB5116709373B5AC817E6F848E2CBD76AEF684350D3416AEE5F33D56B96982509CDAF11CCA7260E5ADF6DDD0D017AE9A575C999ADAE50B3FB7027E810D47C8C5C14618C0AA10D307E304FBE50E868ADECB2C9536E2DB51BE0"),
    (2, "308201B930820122A0030201020208607C28BE6C390943300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303831303030303030305A170D3231303831303030303030305A301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D30819F300D06092A864886F70D010101050003818D0030818902818100D38B1E6CEB946E0DB0751F4CBACE3DCB9688B6C25304227B4710C35AFB73627E50500F5913E158B621802612D1C75827003703338375237552EB3CD3C12F6AB3604E60C1A2D26BB1FBAD206FF023969A90909D6A65A5458A5312C26EBD3A3DAD30302D4515CDCD264146AC18E6FC60A04BD3EC327F04294D96BA5AA25B464C3F0203010001300D06092A864886F70D01010B0500038181003BCE561EA7F95CC00B78AAB5D69573FF301C282A751D4A651921D042F1BECDBA24D918A6D8A5E138DC07BBA0B335478AE37ABD2C93A93932442AE9084329E846170FE0FC4A50AAFC804F311CC3CA4F41D845A7BA5901CBBC3E021E9794AAC70CE1F37B0A951592DB1B64F2B4AFB81AE52DBD9B6FEDE96A5FB8125EB6251EE50A"),
    (4, "01040006CC2A01F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B00100200400DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602"),
    (5, "01050006C98A03B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8007173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF72171BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C"),
    (7, "DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E90006DA3A805CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A52DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91CDCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED896488DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F"),
]

@Suite("Channel messages")
struct ChannelMessageTests {
    @Test("AUTH_CHALLENGE vector")
    func authChallenge() throws {
        let challenge = hex("00DA5C085DEE4F3656710DA3B73652E48ACD5BAE608335FCA3FB6C4DEE104A51")
        try checkChannel(.authChallenge, "00DA5C085DEE4F3656710DA3B73652E48ACD5BAE608335FCA3FB6C4DEE104A51 0002 0001 0003",
                         .authChallenge(try AuthChallenge(challenge: challenge, methods: [1, 3])))
        #expect(cellError { try AuthChallenge(challenge: [1, 2], methods: []) }
            == .badFieldLength(field: "AUTH_CHALLENGE challenge", expected: 32, actual: 2))
    }

    @Test("AUTHENTICATE vector")
    func authenticate() throws {
        try checkChannel(.authenticate, "0003 0160 " + authenticateBodyHex,
                         .authenticate(Authenticate(authType: 3, body: buffer(hex: authenticateBodyHex))))
    }

    @Test("CERTS vector with five certificates, lookup by type")
    func certs() throws {
        var wire: [UInt8] = [5]
        for (type, body) in certBodiesHex {
            let length = UInt16(body.count / 2)
            wire += [type, UInt8(length >> 8), UInt8(length & 0xFF)] + hex(body)
        }
        let certs = try Certs(certBodiesHex.map { Certs.Entry(type: CertType($0.0), body: buffer(hex: $0.1)) })
        try checkChannel(.certs, wire.map { hexByte($0) }.joined(), .certs(certs))
        #expect(certs[.ed25519Signing] == buffer(hex: certBodiesHex[2].1))
        #expect(certs[.rsaAuthenticate] == nil)
        #expect(certs.entries.map(\.type.rawValue) == [1, 2, 4, 5, 7])
    }

    @Test("CERTS with a duplicated type is rejected, decoding and constructing")
    func certsDuplicate() {
        #expect(cellError { try ChannelMessage(command: .certs, payload: buffer(hex: "02 04 0001 AA 04 0001 BB")) }
            == .duplicateCertType(.ed25519Signing))
        #expect(cellError { try Certs([.init(type: .rsaLink, body: buffer([1])), .init(type: .rsaLink, body: buffer([2]))]) }
            == .duplicateCertType(.rsaLink))
    }

    @Test("CERTS truncated inside a body or a header")
    func certsTruncated() {
        #expect(cellError { try ChannelMessage(command: .certs, payload: buffer(hex: "01 04 0005 AABB")) }
            == .truncated(field: "CERTS cert body"))
        #expect(cellError { try ChannelMessage(command: .certs, payload: buffer(hex: "02 04 0001 AA 05 00")) }
            == .truncated(field: "CERTS cert length"))
        #expect(cellError { try ChannelMessage(command: .certs, payload: buffer([])) } == .truncated(field: "CERTS count"))
    }

    @Test("CREATE2, CREATED2, CREATE_FAST, CREATED_FAST vectors")
    func handshakes() throws {
        let onionskin = "09164430E84D3BC56EC7E1D22734742345E2DECE0DE535B66B8E8A0EBBDAE3263C53E02EC2215685CD3A977DC7946FF47F84CD7025F75D252D1B35DEA28F32FA912513889A207E5049992DBC9BC541194C13624A"
        try checkChannel(.create2, "0002 0054 " + onionskin,
                         .create2(Create2(handshakeType: 2, handshakeData: buffer(hex: onionskin))))
        let reply = "0108907A701030ADB6CA9C6AF097DC4855614655659B6A7BF21C1097DCE7C66EE0E4EF287DE7CED40BEECA8B90140C05DB6138AEB551CE0C037068C315E307A0"
        try checkChannel(.created2, "0040 " + reply, .created2(Created2(handshakeData: buffer(hex: reply))))
        try checkChannel(.createFast, "0DC2A5EB921EF4B71F41184A99F4FAD99620A648",
                         .createFast(try CreateFast(keyMaterial: hex("0DC2A5EB921EF4B71F41184A99F4FAD99620A648"))))
        try checkChannel(.createdFast, "03B74250B01D09FDA72B70D63AE7994926F13055BED23485F6B3C8C3CEAFE1DF48A9FF8BAC4993FC",
                         .createdFast(try CreatedFast(keyMaterial: hex("03B74250B01D09FDA72B70D63AE7994926F13055"),
                                                      derivativeKeyData: hex("BED23485F6B3C8C3CEAFE1DF48A9FF8BAC4993FC"))))
    }

    @Test("Handshake cells with lengths past the end, and bad key sizes")
    func handshakeErrors() {
        // HLEN 0x01FE > 505 bytes left in the 509-byte payload.
        #expect(cellError { try ChannelMessage(command: .create2, payload: buffer(padded(hex("0002 01FE")))) }
            == .truncated(field: "HDATA"))
        #expect(cellError { try ChannelMessage(command: .created2, payload: buffer(padded(hex("01FF")))) }
            == .truncated(field: "HDATA"))
        #expect(cellError { try ChannelMessage(command: .create2, payload: buffer([0])) } == .truncated(field: "HTYPE"))
        #expect(cellError { try ChannelMessage(command: .createFast, payload: buffer(Array(repeating: 1, count: 19))) }
            == .truncated(field: "CREATE_FAST key material"))
        #expect(cellError { try ChannelMessage(command: .createdFast, payload: buffer(Array(repeating: 1, count: 39))) }
            == .truncated(field: "CREATED_FAST derivative key data"))
        #expect(cellError { try CreateFast(keyMaterial: [1]) } == .badFieldLength(field: "CREATE_FAST key material", expected: 20, actual: 1))
        #expect(cellError { try CreatedFast(keyMaterial: Array(repeating: 0, count: 20), derivativeKeyData: []) }
            == .badFieldLength(field: "CREATED_FAST derivative key data", expected: 20, actual: 0))
        let oversized = ChannelMessage.create2(Create2(handshakeType: 2, handshakeData: buffer(Array(repeating: 0, count: 506))))
        #expect(cellError { try ChannelCell(circuitID: 1, message: oversized) } == .payloadTooLong(length: 510, limit: 509))
    }

    @Test("DESTROY vectors and reasons")
    func destroy() throws {
        try checkChannel(.destroy, "04", .destroy(.hibernating))
        try checkChannel(.destroy, "00", .destroy(.none))
        try checkChannel(.destroy, "FE", .destroy(DestroyReason(254)))
        #expect(DestroyReason.noSuchService.rawValue == 12 && DestroyReason.orIdentity.rawValue == 7)
        #expect(DestroyReason.protocol.description == "PROTOCOL" && DestroyReason(200).description == "DESTROY_REASON(200)")
        #expect(cellError { try ChannelMessage(command: .destroy, payload: buffer([])) } == .truncated(field: "DESTROY reason"))
    }

    @Test("NETINFO vectors: client, relay, IPv6 relay, unknown address type")
    func netinfo() throws {
        let localhost = NetinfoAddress.ipv4(IPv4Address(127, 0, 0, 1))
        let localhost6 = NetinfoAddress.ipv6(IPv6Address("::1")!)
        try checkChannel(.netinfo, "00000000 04 04 7F000001 00",
                         .netinfo(Netinfo(timestamp: 0, otherAddress: localhost, myAddresses: [])))
        try checkChannel(.netinfo, "5F6F80E1 04 04 7F000001 01 04 04 7F000001",
                         .netinfo(Netinfo(timestamp: 0x5F6F_80E1, otherAddress: localhost, myAddresses: [localhost])))
        try checkChannel(.netinfo, "5F6F859C 06 10 00000000000000000000000000000001 02 04 04 7F000001 06 10 00000000000000000000000000000001",
                         .netinfo(Netinfo(timestamp: 0x5F6F_859C, otherAddress: localhost6, myAddresses: [localhost, localhost6])))
        try checkChannel(.netinfo, "00000000 BB 02 FFFF 00",
                         .netinfo(Netinfo(timestamp: 0, otherAddress: .unknown(type: 0xBB, body: [0xFF, 0xFF]), myAddresses: [])))
    }

    @Test("NETINFO with a wrong-length IPv4/IPv6 address or truncated list")
    func netinfoErrors() {
        #expect(cellError { try ChannelMessage(command: .netinfo, payload: buffer(padded(hex("5F6F859C 06 09 000000000000000000 00")))) }
            == .badAddress(type: 6, length: 9))
        #expect(cellError { try ChannelMessage(command: .netinfo, payload: buffer(padded(hex("00000000 04 04 7F000001 01 04 06 7F0000010000")))) }
            == .badAddress(type: 4, length: 6))
        #expect(cellError { try ChannelMessage(command: .netinfo, payload: buffer(hex("00000000 04 04 7F000001 02 04 04 7F000001"))) }
            == .truncated(field: "NETINFO address type"))
        #expect(cellError { try ChannelMessage(command: .netinfo, payload: buffer(hex("00000000 04 04 7F"))) }
            == .truncated(field: "NETINFO address"))
    }

    @Test("PADDING, VPADDING, VERSIONS, PADDING_NEGOTIATE vectors")
    func smallOnes() throws {
        try checkChannel(.padding, "", .padding)
        try checkChannel(.vpadding, "", .vpadding(length: 0))
        try checkChannel(.vpadding, "00000000000000000000", .vpadding(length: 10))
        try checkChannel(.versions, "000300040005", .versions([3, 4, 5]))
        try checkChannel(.paddingNegotiate, "00 02 0100 0200",
                         .paddingNegotiate(PaddingNegotiate(command: .start, lowMilliseconds: 256, highMilliseconds: 512)))
        try checkChannel(.paddingNegotiate, "00 01 0000 0000", .paddingNegotiate(PaddingNegotiate(command: .stop)))
    }

    @Test("VERSIONS with an odd length; PADDING_NEGOTIATE with version ≠ 0; negative VPADDING")
    func smallErrors() {
        #expect(cellError { try ChannelMessage(command: .versions, payload: buffer(hex("000300"))) } == .oddVersionsLength(3))
        #expect(cellError { try ChannelMessage(command: .paddingNegotiate, payload: buffer(padded(hex("90 0303")))) }
            == .unsupportedPaddingNegotiateVersion(0x90))
        #expect(cellError { try encodePayload(.vpadding(length: -1)) } == .negativeLength(-1))
        #expect(cellError { try encodePayload(.vpadding(length: 70_000)) } == .payloadTooLong(length: 70_000, limit: 65_535))
    }

    @Test("RELAY and RELAY_EARLY carry 509 opaque bytes")
    func relay() throws {
        let body = padded(Array("not validated at this stage".utf8))
        let relayBody = try RelayCellBody(buffer(body))
        try checkChannel(.relay, "6e6f742076616c6964617465642061742074686973207374616765", .relay(relayBody))
        try checkChannel(.relayEarly, "6e6f742076616c6964617465642061742074686973207374616765", .relayEarly(relayBody))
        #expect(cellError { try ChannelMessage(command: .relay, payload: buffer(Array(repeating: 0, count: 508))) }
            == .badRelayBodyLength(508))
    }

    @Test("Obsolete CREATE and AUTHORIZE are kept raw")
    func obsolete() throws {
        try checkChannel(.authorize, "6e6f74", .unknown(.authorize, buffer(hex("6e6f74"))))
        let create = padded(hex("07780DBE97D62D392E0DF2286C78386C"))
        try checkChannel(.create, "07780DBE97D62D392E0DF2286C78386C", .unknown(.create, buffer(create)))
    }

    @Test("Encoding more entries than a count byte holds is refused")
    func tooManyEntries() throws {
        let entries = (0...255).map { Certs.Entry(type: CertType(UInt8($0)), body: ByteBuffer()) }
        let certs = try Certs(entries)
        #expect(cellError { try encodePayload(.certs(certs)) } == .tooManyEntries(field: "CERTS count", count: 256))
        let netinfo = Netinfo(timestamp: 0, otherAddress: .ipv4(IPv4Address(1, 2, 3, 4)),
                              myAddresses: Array(repeating: .ipv4(IPv4Address(1, 2, 3, 4)), count: 256))
        #expect(cellError { try encodePayload(.netinfo(netinfo)) } == .tooManyEntries(field: "NETINFO addresses", count: 256))
        let extend = Extend2(linkSpecifiers: Array(repeating: .unknown(type: 9, body: []), count: 256), handshakeType: 2, handshakeData: ByteBuffer())
        #expect(cellError { try encodeBody(.extend2(extend)) } == .tooManyEntries(field: "EXTEND2 NSPEC", count: 256))
    }
}
