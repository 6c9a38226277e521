import Crypto
import Testing
@testable import TorCrypto

@Suite struct KDFTests {
    let tKey = Array("ntor-curve25519-sha256-1:key_extract".utf8)
    let mExpand = Array("ntor-curve25519-sha256-1:key_expand".utf8)

    // C tor test_crypto.c test_crypto_hkdf_sha256 (also arti kdf.rs testvec_ntor1_kdf).
    @Test func ntor1KDFVectors() throws {
        #expect(try TorKDF.rfc5869(secretInput: Array("Tor".utf8), tKey: tKey, mExpand: mExpand, count: 100) == hex("""
            5521492a85139a8d9107a2d5c0d9c91610d0f95989975ebee6c02a4f8d622a6cfdf9b7c7edd3832e2760ded1eac309b76f8d
            66c4a3c4d6225429b3a016e3c3d45911152fc87bc2de9630c3961be9fdb9f93197ea8e5977180801926d3321fa21513e59ac
            """))
        let quote = Array("AN ALARMING ITEM TO FIND ON YOUR CREDIT-RATING STATEMENT".utf8)
        #expect(try TorKDF.rfc5869(secretInput: quote, tKey: tKey, mExpand: mExpand, count: 100) == hex("""
            a2aa9b50da7e481d30463adb8f233ff06e9571a0ca6ab6df0fb206fa34e5bc78d063fc291501beec53b36e5a0e434561200c
            5f8bd13e0f88b3459600b4dc21d69363e2895321c06184879d94b18f078411be70b767c7fc40679a9440a0c95ea83a23efbf
            """))
    }

    // RFC 5869 appendix A, test cases 1 and 3.
    @Test func rfc5869Vectors() throws {
        let ikm = [UInt8](repeating: 0x0b, count: 22)
        #expect(try TorKDF.rfc5869(secretInput: ikm, tKey: hex("000102030405060708090a0b0c"),
                                   mExpand: hex("f0f1f2f3f4f5f6f7f8f9"), count: 42)
            == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"))
        #expect(try TorKDF.rfc5869(secretInput: ikm, tKey: [], mExpand: [], count: 42)
            == hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"))
    }

    // Spec formula K1 = HMAC(KEY_SEED, m_expand|1), K(i+1) = HMAC(KEY_SEED, K(i)|m_expand|i+1).
    @Test func ntor1KDFClearBox() throws {
        let input = Array("another example key seed that we will expand".utf8)
        let seed = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: tKey))))
        var expected: [UInt8] = [], prev: [UInt8] = []
        for i in 1...4 {
            prev = Array(HMAC<SHA256>.authenticationCode(for: prev + mExpand + [UInt8(i)], using: seed))
            expected += prev
        }
        #expect(try TorKDF.rfc5869(secretInput: input, tKey: tKey, mExpand: mExpand, count: 99) == Array(expected.prefix(99)))
    }

    // C tor test_crypto_kdf_TAP (arti testvec_tap_kdf).
    @Test func kdfTorVectors() throws {
        #expect(try TorKDF.tor([], count: 100) == hex("""
            5ba93c9db0cff93f52b521d7420e43f6eda2784fbf8b4530d8d246dd74ac53a13471bba17941dff7c4ea21bb365bbeeaf5f2
            c654883e56d11e43c44e9842926af7ca0a8cca12604f945414f07b01e13da42c6cf1de3abfdea9b95f34687cbbe92b9a7383
            """))
        #expect(try TorKDF.tor(Array("Tor".utf8), count: 100) == hex("""
            776c6214fc647aaa5f683c737ee66ec44f03d0372e1cce69227950f236ddf1e329a7ce7c227903303f525a8c6662426e8034
            870642a6dabbd41b5d97ec9bf2312ea729992f48f8ea2d0ba83f45dfda1a80bdc8b80de01b23e3e0ffae099b3e4ccf28dc28
            """))
        let quote = Array("AN ALARMING ITEM TO FIND ON A MONTHLY AUTO-DEBIT NOTICE".utf8)
        #expect(try TorKDF.tor(quote, count: 100) == hex("""
            a340b5d126086c3ab29c2af4179196dbf95e1c72431419d3314844bf8f6afb6098db952b95581fb6c33625709d6f4400b8e7
            ace18a70579fad83c0982ef73f89395bcc39493ad53a685854daf2ba9b78733b805d9a6824c907ee1dba5ac27a1e466d4d10
            """))
    }

    @Test func oversizedOutputIsAnError() {
        #expect(throws: TorCryptoError.self) { try TorKDF.tor([1], count: 256 * 20 + 1) }
        #expect(throws: TorCryptoError.self) { try TorKDF.rfc5869(secretInput: [1], tKey: [], mExpand: [], count: 255 * 32 + 1) }
        #expect(throws: TorCryptoError.self) { try TorKDF.tor([1], count: -1) }
    }
}
