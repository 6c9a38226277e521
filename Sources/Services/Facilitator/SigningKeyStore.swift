import Crypto
import Foundation

/// The facilitator's one long-term Ed25519 signing key, kept as its 32-byte seed in the data
/// directory (mode 0600). The public half goes in every file info; requesters may pin it.
public enum SigningKeyStore {
    public static let fileName = "facilitator_ed25519.key"

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case malformed(path: String, bytes: Int)
        public var description: String {
            switch self {
            case .unreadable(let path, let reason): return "cannot read signing key \(path): \(reason)"
            case .malformed(let path, let bytes): return "signing key \(path) has \(bytes) bytes, expected 32"
            }
        }
    }

    /// Loads the key from `directory`, creating it (and the directory, 0700) on first use.
    public static func loadOrCreate(in directory: URL) throws -> Curve25519.Signing.PrivateKey {
        let fm = FileManager.default
        let path = directory.appendingPathComponent(fileName).path
        if fm.fileExists(atPath: path) {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw Failure.unreadable(path: path, reason: "\(error)")
            }
            guard data.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: data) else {
                throw Failure.malformed(path: path, bytes: data.count)
            }
            return key
        }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let key = Curve25519.Signing.PrivateKey()
        // Write to a private temporary file then rename, so a crash never leaves a partial key.
        let temporary = path + ".tmp-\(getpid())"
        guard fm.createFile(atPath: temporary, contents: key.rawRepresentation, attributes: [.posixPermissions: 0o600]) else {
            throw Failure.unreadable(path: temporary, reason: "could not create")
        }
        do {
            try fm.moveItem(atPath: temporary, toPath: path)
        } catch {
            try? fm.removeItem(atPath: temporary)
            // Another process may have won the race: use its key.
            if fm.fileExists(atPath: path) { return try loadOrCreate(in: directory) }
            throw Failure.unreadable(path: path, reason: "\(error)")
        }
        return key
    }
}
