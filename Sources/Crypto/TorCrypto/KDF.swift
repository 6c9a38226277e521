import Crypto
import Foundation

/// Tor's two key-derivation functions (tor-spec §5.2).
public enum TorKDF {
    /// KDF-RFC5869 as ntor uses it: HKDF-SHA256 with salt `tKey`, IKM `secretInput`, info `mExpand`.
    public static func rfc5869(secretInput: [UInt8], tKey: [UInt8], mExpand: [UInt8], count: Int) throws -> [UInt8] {
        let maximum = 255 * SHA256.byteCount
        guard count >= 0, count <= maximum else { throw TorCryptoError.kdfOutputTooLong(requested: count, maximum: maximum) }
        let key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secretInput), salt: tKey, info: mExpand, outputByteCount: count)
        return key.withUnsafeBytes { Array($0) }
    }

    /// KDF-TOR: `SHA1(K0|00) | SHA1(K0|01) | …`, truncated to `count` (CREATE_FAST, and the legacy TAP layout).
    public static func tor(_ k0: [UInt8], count: Int) throws -> [UInt8] {
        let maximum = 256 * Insecure.SHA1.byteCount
        guard count >= 0, count <= maximum else { throw TorCryptoError.kdfOutputTooLong(requested: count, maximum: maximum) }
        var out = [UInt8]()
        out.reserveCapacity(count + Insecure.SHA1.byteCount)
        var i = 0
        while out.count < count {
            var h = Insecure.SHA1()
            h.update(data: k0)
            h.update(data: [UInt8(i)])
            out.append(contentsOf: h.finalize())
            i += 1
        }
        return Array(out.prefix(count))
    }
}
