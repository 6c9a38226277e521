import Crypto
import Testing
@testable import TorCrypto

@Suite struct NtorTests {
    // arti crates/tor-proto/src/crypto/handshake/ntor.rs, test `testvec`.
    let bSK = hex("4820544f4c4420594f5520444f474954204b454550532048415050454e494e47")
    let bPK = hex("ccbc8541904d18af08753eae967874749e6149f873de937f57f8fd903a21c471")
    let xSK = hex("706f6461792069207075742e2e2e2e2e2e2e2e4a454c4c59206f6e2074686973")
    let ySK = hex("70686520737175697272656c2e2e2e2e2e2e2e2e686173206869732067616d65")
    let id = hex("69546f6c64596f7541626f75745374616972732e")

    func relayKey() throws -> NtorSecretKey {
        NtorSecretKey(identity: try RSAIdentity(bytes: id), privateKey: try .init(rawRepresentation: bSK))
    }

    @Test func vector() throws {
        let relay = try relayKey()
        #expect(relay.publicKey.onionKey == bPK)
        let (state, skin) = Ntor.clientStart(relay: relay.publicKey, ephemeral: try .init(rawRepresentation: xSK))
        #expect(skin == hex("""
            69546f6c64596f7541626f75745374616972732eccbc8541904d18af08753eae967874749e6149f873de937f57f8fd903a21c471
            e65dfdbef8b2635837fe2cebc086a8096eae3213e6830dc407516083d412b078
            """))
        let (reply, serverKeys) = try Ntor.serverRespond(
            onionskin: skin, keys: [relay], ephemeral: try .init(rawRepresentation: ySK))
        #expect(reply == hex("""
            390480a14362761d6aec1fea840f6e9e928fb2adb7b25c670be1045e35133a37
            1cbdf68b89923e1f85e8e18ee6e805ea333fe4849c790ffd2670bd80fec95cc8
            """))
        let clientKeys = try Ntor.clientFinish(state: state, reply: reply)
        #expect(clientKeys == serverKeys)
        let first72 = clientKeys.forwardDigest + clientKeys.backwardDigest + clientKeys.forwardKey + clientKeys.backwardKey
        #expect(first72 == hex("""
            0c62dee7f48893370d0ef896758d35729867beef1a5121df80e00f79ed349af39b51cae125719182f19d932a667dae1a
            fbf2e336e6910e7822223e763afad0a13342157969dc6b79
            """))
    }

    @Test func randomRoundTripWithKeyRotation() throws {
        let identity = try RSAIdentity(bytes: secureRandomBytes(20))
        let old = NtorSecretKey(identity: identity, privateKey: .init())
        let current = NtorSecretKey(identity: identity, privateKey: .init())
        let (state, skin) = Ntor.clientStart(relay: old.publicKey)
        let (reply, serverKeys) = try Ntor.serverRespond(onionskin: skin, keys: [current, old])
        #expect(try Ntor.clientFinish(state: state, reply: reply) == serverKeys)
    }

    @Test func serverRejectsWrongIdentityOrKey() throws {
        let relay = try relayKey()
        let wrongID = try NtorPublicKey(identity: try RSAIdentity(bytes: [UInt8](repeating: 13, count: 20)), onionKey: bPK)
        let wrongKey = try NtorPublicKey(identity: relay.identity, onionKey: Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation))
        for pk in [wrongID, wrongKey] {
            let (_, skin) = Ntor.clientStart(relay: pk)
            #expect(throws: TorCryptoError.unknownNtorKey) { try Ntor.serverRespond(onionskin: skin, keys: [relay]) }
        }
        #expect(throws: TorCryptoError.self) { try Ntor.serverRespond(onionskin: [1, 2, 3], keys: [relay]) }
    }

    @Test func clientRejectsTamperedAuthAndZeroPoint() throws {
        let relay = try relayKey()
        let (state, skin) = Ntor.clientStart(relay: relay.publicKey)
        var (reply, _) = try Ntor.serverRespond(onionskin: skin, keys: [relay])
        reply[60] ^= 7
        #expect(throws: TorCryptoError.handshakeAuthFailed) { try Ntor.clientFinish(state: state, reply: reply) }
        // Y = 0 is a low-order point: the shared secret would be all zero.
        #expect(throws: TorCryptoError.nonContributoryDH) {
            try Ntor.clientFinish(state: state, reply: [UInt8](repeating: 0, count: 32) + reply[32...])
        }
        // X = 0 from a malicious client.
        #expect(throws: TorCryptoError.nonContributoryDH) {
            try Ntor.serverRespond(onionskin: Array(skin[0..<52]) + [UInt8](repeating: 0, count: 32), keys: [relay])
        }
        #expect(throws: TorCryptoError.self) { try Ntor.clientFinish(state: state, reply: Array(reply[0..<10])) }
    }

    @Test func createFastRoundTripAndLayout() throws {
        let x = hex("000102030405060708090a0b0c0d0e0f10111213"), y = [UInt8](repeating: 0xAB, count: 20)
        let (state, sentX) = try CreateFastHandshake.clientStart(x: x)
        #expect(sentX == x)
        let (reply, serverKeys) = try CreateFastHandshake.serverRespond(x: x, y: y)
        // Layout KH Df Db Kf Kb over KDF-TOR(X|Y).
        let k = try TorKDF.tor(x + y, count: 92)
        #expect(reply == y + k[0..<20])
        #expect(serverKeys.forwardDigest == Array(k[20..<40]) && serverKeys.backwardDigest == Array(k[40..<60]))
        #expect(serverKeys.forwardKey == Array(k[60..<76]) && serverKeys.backwardKey == Array(k[76..<92]))
        #expect(try CreateFastHandshake.clientFinish(state: state, reply: reply) == serverKeys)
        var bad = reply
        bad[39] ^= 1
        #expect(throws: TorCryptoError.handshakeAuthFailed) { try CreateFastHandshake.clientFinish(state: state, reply: bad) }
        #expect(throws: TorCryptoError.self) { try CreateFastHandshake.serverRespond(x: [1]) }
    }
}

@Suite struct NtorInjectedSecretTests {
    let vectors = NtorTests()

    /// The raw-bytes and RNG entry points reproduce arti's vector: the RNG's words are taken little-endian.
    @Test func rawAndGeneratedSecretsMatchVector() throws {
        let relay = try vectors.relayKey()
        let (_, expectedSkin) = Ntor.clientStart(relay: relay.publicKey, ephemeral: try .init(rawRepresentation: vectors.xSK))
        let (rawState, rawSkin) = try Ntor.clientStart(relay: relay.publicKey, ephemeralSecret: vectors.xSK)
        var xRNG = ScriptedGenerator(bytes: vectors.xSK)
        let (rngState, rngSkin) = Ntor.clientStart(relay: relay.publicKey, using: &xRNG)
        #expect(rawSkin == expectedSkin && rngSkin == expectedSkin)
        #expect(xRNG.words.isEmpty)

        let (reply, serverKeys) = try Ntor.serverRespond(onionskin: rawSkin, keys: [relay], ephemeralSecret: vectors.ySK)
        var yRNG = ScriptedGenerator(bytes: vectors.ySK)
        let (rngReply, rngServerKeys) = try Ntor.serverRespond(onionskin: rawSkin, keys: [relay], using: &yRNG)
        #expect(reply == hex("""
            390480a14362761d6aec1fea840f6e9e928fb2adb7b25c670be1045e35133a37
            1cbdf68b89923e1f85e8e18ee6e805ea333fe4849c790ffd2670bd80fec95cc8
            """))
        #expect(rngReply == reply && rngServerKeys == serverKeys)
        #expect(try Ntor.clientFinish(state: rawState, reply: reply) == serverKeys)
        #expect(try Ntor.clientFinish(state: rngState, reply: reply) == serverKeys)
    }

    @Test func rejectsWrongSecretLength() throws {
        let relay = try vectors.relayKey()
        #expect(throws: TorCryptoError.badLength(what: "ntor ephemeral secret", expected: 32, actual: 31)) {
            try Ntor.clientStart(relay: relay.publicKey, ephemeralSecret: Array(vectors.xSK.dropLast()))
        }
        let (_, skin) = Ntor.clientStart(relay: relay.publicKey)
        #expect(throws: TorCryptoError.badLength(what: "ntor ephemeral secret", expected: 32, actual: 33)) {
            try Ntor.serverRespond(onionskin: skin, keys: [relay], ephemeralSecret: vectors.ySK + [0])
        }
    }
}
