import Testing
import TorCrypto

/// The buffered CSPRNG used for relay-cell padding and circuit IDs on the node's hot path.
struct NodeFastRandomTests {
    @Test func independentInstancesDiffer() {
        var a = FastRandomNumberGenerator()
        var b = FastRandomNumberGenerator()
        let xs = (0..<64).map { _ in a.next() }
        let ys = (0..<64).map { _ in b.next() }
        #expect(xs != ys)
        #expect(Set(xs).count == 64)
    }

    @Test func outputLooksUniformAcrossRefillsAndRekeys() {
        // A 4 KiB rekey interval forces a fresh key every buffer; 1 MiB of output crosses 256 of them.
        var rng = FastRandomNumberGenerator(rekeyInterval: 4096)
        var counts = [Int](repeating: 0, count: 256)
        for _ in 0..<(1 << 17) {
            var word = rng.next()
            for _ in 0..<8 {
                counts[Int(word & 0xFF)] += 1
                word >>= 8
            }
        }
        // Expected 4096 per byte value; a chi-square over 255 degrees of freedom stays far below 400
        // for random data (p ≈ 1e-8), and explodes for a stuck or repeating buffer.
        let expected = Double(1 << 20) / 256
        let chiSquare = counts.reduce(0.0) { $0 + (Double($1) - expected) * (Double($1) - expected) / expected }
        #expect(chiSquare < 400, "chi-square \(chiSquare)")
    }

    @Test func noRepeatedBlocksAcrossRefills() {
        // A refill that reused the keystream position would repeat 4 KiB blocks.
        var rng = FastRandomNumberGenerator()
        var seen = Set<[UInt64]>()
        for _ in 0..<64 {
            let block = (0..<512).map { _ in rng.next() }
            #expect(seen.insert(block).inserted)
        }
    }
}
