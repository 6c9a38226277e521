import Foundation
import Testbed

/// A torrent made for a test: content files under `contentDirectory`, a v1 `.torrent` built by
/// `scripts/torrent-peer.py make` (python3-libtorrent), and what it reported (info-hash, magnet).
public final class TorrentFixture: @unchecked Sendable {
    public struct File: Sendable { public let path: String; public let size: Int64; public let offset: Int64 }

    public let directory: URL
    public let contentDirectory: URL
    public let torrentURL: URL
    public let infoHash: String
    public let magnet: String
    public let pieceLength: Int
    public let pieceCount: Int
    public let totalSize: Int64
    public let files: [File]
    public let name: String

    public static var scriptsDirectory: URL { PeerScript.scriptsDirectory }
    public static var peerScript: String { PeerScript.path }
    public static var python: String { PeerScript.python }

    /// A single file `name` of `size` pseudo-random bytes (or a directory `name` holding `files`).
    /// `hybrid`: a BitTorrent v1+v2 torrent (pad files, SHA-256 block hashes) instead of v1 only.
    public init(in directory: URL, name: String, size: Int? = nil, files multi: [(String, Int)] = [],
                pieceKiB: Int = 64, tracker: String? = nil, hybrid: Bool = false, seed: UInt64 = 1) throws {
        self.directory = directory
        self.name = name
        contentDirectory = directory.appendingPathComponent("content")
        let fm = FileManager.default
        try fm.createDirectory(at: contentDirectory, withIntermediateDirectories: true)
        let content = contentDirectory.appendingPathComponent(name)
        var rng = seed
        if let size {
            try Self.pseudoRandom(size, &rng).write(to: content)
        } else {
            try fm.createDirectory(at: content, withIntermediateDirectories: true)
            for (file, size) in multi { try Self.pseudoRandom(size, &rng).write(to: content.appendingPathComponent(file)) }
        }
        torrentURL = directory.appendingPathComponent("\(name).torrent")
        var args = [Self.peerScript, "make", content.path, torrentURL.path, "--piece-kib", String(pieceKiB)]
        if let tracker { args += ["--tracker", tracker] }
        if hybrid { args.append("--hybrid") }
        let out = try runTool(Self.python, args)
        guard let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
              let ih = json["info_hash"] as? String, let mag = json["magnet"] as? String,
              let pl = json["piece_length"] as? Int, let pc = json["pieces"] as? Int,
              let ts = json["total_size"] as? Int, let fl = json["files"] as? [[String: Any]] else {
            throw TestbedError.exited("torrent-peer.py make", 0, log: out)
        }
        infoHash = ih
        magnet = mag
        pieceLength = pl
        pieceCount = pc
        totalSize = Int64(ts)
        files = fl.map { File(path: $0["path"] as? String ?? "", size: Int64($0["size"] as? Int ?? 0),
                              offset: Int64($0["offset"] as? Int ?? 0)) }
    }

    public var torrentBytes: [UInt8] { (try? [UInt8](Data(contentsOf: torrentURL))) ?? [] }

    /// The content of file `index` as the seeders have it.
    public func contents(ofFile index: Int) throws -> Data {
        try Data(contentsOf: contentDirectory.appendingPathComponent(files[index].path))
    }

    /// Fast deterministic filler (splitmix64): distinct per seed, so torrents never collide.
    static func pseudoRandom(_ count: Int, _ state: inout UInt64) -> Data {
        var data = Data(count: count)
        data.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
            var i = 0
            while i < count {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                for b in 0..<8 where i + b < count { raw[i + b] = UInt8(truncatingIfNeeded: z >> (8 * UInt64(b))) }
                i += 8
            }
        }
        return data
    }
}
