import COpenSSL
import Crypto
import Foundation

/// Owns one OpenSSL EVP_PKEY (RSA). Immutable after creation; OpenSSL allows concurrent read-only use.
final class OpenSSLRSAHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { cossl_rsa_free(pointer) }

    /// Runs an OpenSSL "length-returning" encoder: first sizes the output, then fills it.
    func encode(_ body: (UnsafeMutablePointer<UInt8>?, Int) -> Int32) -> [UInt8]? {
        let n = body(nil, 0)
        guard n > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: Int(n))
        let written = out.withUnsafeMutableBufferPointer { body($0.baseAddress, $0.count) }
        guard written > 0 else { return nil }
        return Array(out.prefix(Int(written)))
    }
}

/// An RSA public key (relay identity, TAP onion key, or TLS link key), held by OpenSSL.
public struct RSAPublicKey: Sendable, Hashable {
    let handle: OpenSSLRSAHandle
    /// PKCS#1 RSAPublicKey DER: the encoding Tor hashes for fingerprints and puts in descriptors.
    public let der: [UInt8]

    init(handle: OpenSSLRSAHandle) throws {
        guard let der = handle.encode({ cossl_rsa_public_der(handle.pointer, $0, $1) }) else {
            throw TorCryptoError.openSSL("encoding RSA public key")
        }
        self.handle = handle
        self.der = der
    }

    /// Parses PKCS#1 RSAPublicKey DER.
    public init(der: [UInt8]) throws {
        guard let p = cossl_rsa_from_public_der(der, der.count) else { throw TorCryptoError.badKey("RSA public key DER") }
        try self.init(handle: OpenSSLRSAHandle(p))
    }

    public var bits: Int { Int(cossl_rsa_bits(handle.pointer)) }

    /// Tor's RSA identity: SHA-1 of the PKCS#1 DER.
    public var identity: RSAIdentity { try! RSAIdentity(bytes: Array(Insecure.SHA1.hash(data: der))) }

    /// Verifies a Tor-style RSA signature: PKCS#1 v1.5 type-1 padding around `message` itself (Tor signs
    /// a bare SHA-1/SHA-256 digest, with no ASN.1 DigestInfo). Constant-time compare of the recovered bytes.
    public func verifyTorSignature(_ signature: [UInt8], message: [UInt8]) -> Bool {
        var out = [UInt8](repeating: 0, count: max(64, bits / 8))
        let n = out.withUnsafeMutableBufferPointer {
            cossl_rsa_verify_recover(handle.pointer, signature, signature.count, $0.baseAddress, $0.count)
        }
        return n >= 0 && constantTimeEqual(out.prefix(Int(n)), message)
    }

    public static func == (a: RSAPublicKey, b: RSAPublicKey) -> Bool { a.der == b.der }
    public func hash(into h: inout Hasher) { h.combine(der) }
}

/// An RSA private key, held by OpenSSL.
public struct RSAPrivateKey: Sendable {
    let handle: OpenSSLRSAHandle
    public let publicKey: RSAPublicKey

    /// New key with e = 65537 (1024 bits for Tor identity/TAP keys, 2048 for the TLS link key).
    public static func generate(bits: Int) throws -> RSAPrivateKey {
        guard let p = cossl_rsa_generate(Int32(clamping: bits)) else { throw TorCryptoError.openSSL("RSA-\(bits) generation") }
        return try RSAPrivateKey(handle: OpenSSLRSAHandle(p))
    }

    init(handle: OpenSSLRSAHandle) throws {
        guard cossl_rsa_has_private(handle.pointer) == 1 else { throw TorCryptoError.badKey("RSA key has no private part") }
        self.handle = handle
        self.publicKey = try RSAPublicKey(handle: handle)
    }

    /// Parses a PEM private key (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY").
    public init(pem: [UInt8]) throws {
        guard let p = cossl_rsa_from_private_pem(pem, pem.count) else { throw TorCryptoError.badKey("RSA private key PEM") }
        try self.init(handle: OpenSSLRSAHandle(p))
    }

    /// PKCS#8 PEM (also what the TLS layer loads for the link key).
    public func pem() throws -> [UInt8] {
        guard let pem = handle.encode({ cossl_rsa_private_pem(handle.pointer, $0, $1) }) else {
            throw TorCryptoError.openSSL("encoding RSA private key")
        }
        return pem
    }

    /// Tor-style signature: PKCS#1 v1.5 type-1 padding around `message` (a digest), no DigestInfo.
    public func torSignature(_ message: [UInt8]) throws -> [UInt8] {
        var sig = [UInt8](repeating: 0, count: publicKey.bits / 8 + 1)
        let n = sig.withUnsafeMutableBufferPointer {
            cossl_rsa_sign_raw(handle.pointer, message, message.count, $0.baseAddress, $0.count)
        }
        guard n > 0 else { throw TorCryptoError.openSSL("RSA signing") }
        return Array(sig.prefix(Int(n)))
    }
}

/// A DER X.509 certificate carrying an RSA key (Tor's TLS link cert and CERTS type-2 identity cert).
public struct X509Certificate: Sendable, Hashable {
    public let der: [UInt8]
    public let publicKey: RSAPublicKey
    public let notBefore: Date
    public let notAfter: Date

    /// Parses DER; only RSA subject keys are accepted (all Tor uses, and C tor requires for TLS).
    public init(der: [UInt8]) throws {
        var nb: Int64 = 0, na: Int64 = 0
        guard let p = cossl_x509_rsa_key(der, der.count, &nb, &na) else {
            throw TorCryptoError.malformedCertificate("X.509 DER (or non-RSA key)")
        }
        self.der = der
        self.publicKey = try RSAPublicKey(handle: OpenSSLRSAHandle(p))
        self.notBefore = Date(timeIntervalSince1970: TimeInterval(nb))
        self.notAfter = Date(timeIntervalSince1970: TimeInterval(na))
    }

    /// Issues a certificate for `key` signed by itself (SHA-256 with RSA). `issuerCommonName` lets the link
    /// cert name a different issuer, as C tor's do; the signature is still by `key`.
    public static func selfSigned(
        key: RSAPrivateKey, commonName: String, issuerCommonName: String? = nil, notBefore: Date, notAfter: Date
    ) throws -> X509Certificate {
        var out = [UInt8](repeating: 0, count: 4096)
        let n = out.withUnsafeMutableBufferPointer { buf in
            cossl_x509_self_signed(
                key.handle.pointer, commonName, issuerCommonName, Int64(notBefore.timeIntervalSince1970),
                Int64(notAfter.timeIntervalSince1970), buf.baseAddress, buf.count)
        }
        guard n > 0 else { throw TorCryptoError.openSSL("X.509 certificate issue") }
        return try X509Certificate(der: Array(out.prefix(Int(n))))
    }

    /// True if the certificate's signature verifies under `key`.
    public func isSigned(by key: RSAPublicKey) -> Bool { cossl_x509_verify_signature(der, der.count, key.handle.pointer) == 1 }

    /// SHA-256 of the DER: what a type-5 Ed25519 cert certifies and what AUTHENTICATE's SCERT holds.
    public var sha256: [UInt8] { Array(SHA256.hash(data: der)) }

    /// A CERTS type-2 identity cert as C tor checks it: self-signed, 1024-bit key, valid at `now` give or
    /// take `tolerance` seconds of clock skew.
    public func checkAsTorIdentityCert(at now: Date, tolerance: TimeInterval = 0) throws -> RSAPublicKey {
        guard publicKey.bits == 1024 else { throw TorCryptoError.certificateMismatch("RSA identity key is not 1024 bits") }
        guard isSigned(by: publicKey) else { throw TorCryptoError.badSignature }
        guard now + tolerance >= notBefore, now - tolerance <= notAfter else { throw TorCryptoError.expired }
        return publicKey
    }

    public static func == (a: X509Certificate, b: X509Certificate) -> Bool { a.der == b.der }
    public func hash(into h: inout Hasher) { h.combine(der) }
}
