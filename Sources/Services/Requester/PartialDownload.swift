import Foundation
import NetBasics
import PeersmProtocol

/// What a later `fetch(…, resume: true)` needs to continue a download another process started:
/// which file (hash_name, size), whose signatures made it (the facilitator key, pinned), and how
/// far the output file holds verified bytes. Kept beside the output as `<output>.peersm-part`,
/// written only after the bytes it vouches for, and removed once the file is complete.
struct PartialDownload: Codable, Equatable {
    var hashName: String      // hex of the hash_name bytes
    var size: UInt64
    var publicKey: String     // base64 of the facilitator's Ed25519 key
    var verifiedChunks: UInt32

    static func stateURL(for output: URL) -> URL {
        output.deletingLastPathComponent().appendingPathComponent(output.lastPathComponent + ".peersm-part")
    }

    init(name: HashName, info: FileInfo, verifiedChunks: UInt32) {
        hashName = Hex.encode(name.bytes)
        size = info.size
        publicKey = Data(info.publicKeyBytes).base64EncodedString()
        self.verifiedChunks = verifiedChunks
    }

    /// The saved state for `output`, nil if there is none or it cannot be read (start over).
    static func load(for output: URL) -> PartialDownload? {
        guard let data = try? Data(contentsOf: stateURL(for: output)) else { return nil }
        return try? JSONDecoder().decode(PartialDownload.self, from: data)
    }

    func save(for output: URL) throws {
        try JSONEncoder().encode(self).write(to: Self.stateURL(for: output), options: .atomic)
    }

    static func remove(for output: URL) {
        try? FileManager.default.removeItem(at: stateURL(for: output))
    }

    /// Whether this state continues the download of `name` as the facilitator now describes it.
    /// A different key means different signatures: the saved bytes cannot be vouched for.
    func continues(_ other: PartialDownload) -> Bool {
        hashName == other.hashName && size == other.size && publicKey == other.publicKey
    }
}
