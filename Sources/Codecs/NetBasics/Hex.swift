/// Base 16 (RFC 4648 §8): the one encoder and strict decoder of the package.
public enum Hex {
    private static let lower = Array("0123456789abcdef".utf8)
    private static let upper = Array("0123456789ABCDEF".utf8)

    /// Two digits a byte, lowercase unless asked (tor fingerprints are uppercase).
    public static func encode(_ bytes: some Sequence<UInt8>, uppercase: Bool = false) -> String {
        let digits = uppercase ? upper : lower
        var out = [UInt8]()
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of hex text (either case); nil on any other character (no sign, no `0x`) or an odd
    /// digit count. With `ignoringWhitespace`, spaces, tabs and line breaks between digits are skipped.
    public static func decode(_ text: some StringProtocol, ignoringWhitespace: Bool = false) -> [UInt8]? {
        decode(ascii: text.utf8, ignoringWhitespace: ignoringWhitespace)
    }

    /// `decode(_:)` over ASCII bytes.
    public static func decode(ascii chars: some Collection<UInt8>, ignoringWhitespace: Bool = false) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var high: UInt8? = nil
        for c in chars {
            guard let v = nibble(c) else {
                if ignoringWhitespace && (c == 0x20 || c == 0x0A || c == 0x09 || c == 0x0D) { continue }
                return nil
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return high == nil ? out : nil
    }

    /// The value of one hex digit (ASCII), or nil.
    @inlinable
    public static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}

/// Base 32 (RFC 4648 §6) without padding, as BitTorrent magnet links write info-hashes.
public enum Base32 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    /// Uppercase, unpadded.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        var buffer: UInt32 = 0, bits = 0
        for b in bytes {
            buffer = buffer << 8 | UInt32(b)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out.append(alphabet[Int(buffer >> UInt32(bits) & 0x1F)])
            }
            buffer &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 { out.append(alphabet[Int(buffer << UInt32(5 - bits) & 0x1F)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Case-insensitive; '1' reads as 'I' (libtorrent does, for links typed by hand). Trailing bits
    /// that do not fill a byte are dropped. nil on padding or any other character.
    public static func decode(_ text: some StringProtocol) -> [UInt8]? { decode(ascii: text.utf8) }

    /// `decode(_:)` over ASCII bytes.
    public static func decode(ascii chars: some Collection<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(chars.count * 5 / 8)
        var buffer: UInt32 = 0, bits = 0
        for c in chars {
            let value: UInt8
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = c - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = c - UInt8(ascii: "a")
            case UInt8(ascii: "2")...UInt8(ascii: "7"): value = c - UInt8(ascii: "2") + 26
            case UInt8(ascii: "1"): value = 8  // 'I'
            default: return nil
            }
            buffer = (buffer << 5 | UInt32(value)) & 0xFFFF
            bits += 5
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        return out
    }
}
