import NetBasics
import Testing
import TestSupport

/// One array of each length 0…63, for round trips.
func randomByteArrays(seed: UInt64) -> [[UInt8]] {
    var rng = SplitMix64(seed: seed)
    return (0..<64).map { n in (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
}

@Suite struct HexTests {
    @Test func roundTripAndRejects() {
        let bytes: [UInt8] = [0x00, 0x7f, 0x80, 0xff, 0x0a]
        #expect(Hex.encode(bytes) == "007f80ff0a")
        #expect(Hex.encode(bytes, uppercase: true) == "007F80FF0A")
        #expect(Hex.decode("007f80ff0a") == bytes && Hex.decode("007F80FF0A") == bytes)
        #expect(Hex.decode("") == [])
        for bad in ["abc", "zz", "0x00", "+f", "-0", " 00", "00 ", "0g", "é0"] {
            #expect(Hex.decode(bad) == nil, "\(bad)")
        }
        #expect(Hex.decode("00 7F 80 ff\n0a\r\t", ignoringWhitespace: true) == bytes)
        #expect(Hex.decode("0 0", ignoringWhitespace: true) == [0])
        #expect(Hex.decode("0", ignoringWhitespace: true) == nil)
        for random in randomByteArrays(seed: 3) { #expect(Hex.decode(Hex.encode(random)) == random) }
    }
}

@Suite struct Base32Tests {
    @Test func rfc4648Vectors() {
        // RFC 4648 §10, without padding.
        for (text, encoded) in [("", ""), ("f", "MY"), ("fo", "MZXQ"), ("foo", "MZXW6"), ("foob", "MZXW6YQ"),
                                ("fooba", "MZXW6YTB"), ("foobar", "MZXW6YTBOI")] {
            #expect(Base32.encode(Array(text.utf8)) == encoded, "\(text)")
            #expect(Base32.decode(encoded) == Array(text.utf8), "\(encoded)")
            #expect(Base32.decode(encoded.lowercased()) == Array(text.utf8), "\(encoded)")
        }
    }

    @Test func roundTripAndRejects() {
        #expect(Base32.encode(Hex.decode(MagnetVectors.hex)!) == MagnetVectors.base32)
        #expect(Base32.decode(MagnetVectors.base32) == Hex.decode(MagnetVectors.hex))
        // '1' reads as 'I', as libtorrent does.
        #expect(Base32.decode("YEX6DQDLX1SUVHOJ6UM3GNNKPQJWPKEK") == Hex.decode(MagnetVectors.hex))
        for bad in ["MY======", "M0", "M8", "M9", "M-", "MY "] { #expect(Base32.decode(bad) == nil, "\(bad)") }
        for random in randomByteArrays(seed: 4) { #expect(Base32.decode(Base32.encode(random)) == random) }
    }
}

@Suite struct MagnetLinkTests {
    /// The shared vectors: what libtorrent reads (TorrentEngineTests check them against it).
    @Test func btihVectors() {
        for (magnet, want) in MagnetVectors.all {
            let got = (try? MagnetLink.btih(magnet)) ?? nil
            #expect(got.map { Hex.encode($0) } == want, "\(magnet)")
        }
    }

    @Test func refusalsAndXtValues() throws {
        let hex = MagnetVectors.hex, other = MagnetVectors.other
        #expect(throws: MagnetLink.Error.conflictingBTIH) { try MagnetLink.btih("magnet:?xt=urn:btih:\(hex)&xt=urn:btih:\(other)") }
        #expect(throws: MagnetLink.Error.malformedBTIH) { try MagnetLink.btih("magnet:?xt=urn:btih:zz") }
        #expect(throws: MagnetLink.Error.malformedEscape) { try MagnetLink.btih("magnet:?xt=urn%3Abtih%3A\(hex)%G0") }
        #expect(throws: MagnetLink.Error.malformedEscape) { try MagnetLink.btih("magnet:?xt=urn:btih:\(hex)%+1") }
        #expect(throws: MagnetLink.Error.notAMagnetLink) { try MagnetLink.btih("http://example/") }
        #expect(try MagnetLink.btih("MAGNET:?xt=urn:btih:\(hex)") == Hex.decode(hex))
        #expect(try MagnetLink.btih("magnet:?dn=x%ZZ&xt=urn:btih:\(hex)") == Hex.decode(hex), "only xt values are decoded")
        #expect(try MagnetLink.xtValues("magnet:?xt.1=urn:btih:\(hex)&dn=a&XT=urn%3Abtmh%3A1220&xt.b=c")
                == ["urn:btih:\(hex)", "urn:btmh:1220"])
        #expect(MagnetLink.percentDecoded(Array("a%41%2f%".utf8)) == nil)
        #expect(MagnetLink.percentDecoded(Array("a%41%2f".utf8)) == Array("aA/".utf8))
    }
}
