import Testing
@testable import TorCrypto

@Suite struct BytesTests {
    @Test func randomBytesTakesEachWordLittleEndianAndTruncates() {
        let words = hex("0001020304050607 08090a0b0c0d0e0f 1011121314151617")
        for count in [0, 1, 8, 13, 24] {
            var rng = ScriptedGenerator(bytes: words)
            #expect(randomBytes(count, using: &rng) == Array(words.prefix(count)))
            // A partial last word is drawn once and its tail dropped.
            #expect(rng.words.count == 3 - (count + 7) / 8)
        }
        var rng = ScriptedGenerator(bytes: words)
        #expect(randomBytes(-1, using: &rng).isEmpty)
    }

    @Test func hexRoundTripAndRejects() {
        let bytes: [UInt8] = [0x00, 0x7f, 0x80, 0xff, 0x0a]
        #expect(bytes.hexString == "007f80ff0a")
        #expect([UInt8](hexString: "00 7F 80 ff\n0a") == bytes)
        #expect([UInt8](hexString: "abc") == nil)
        #expect([UInt8](hexString: "zz") == nil)
    }

    @Test func constantTimeEqualComparesLengthAndContent() {
        #expect(constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(constantTimeEqual([UInt8](), [UInt8]()))
    }
}
