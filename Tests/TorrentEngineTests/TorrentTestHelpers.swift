import Foundation
import TestSupport
@testable import TorrentEngine

/// What a stream delivered.
struct Delivered {
    var progress: [TorrentProgress] = []
    var info: TorrentStreamInfo?
    var data = Data()
    var chunks = 0
}

func collect(_ stream: AsyncThrowingStream<TorrentStreamEvent, Error>) async throws -> Delivered {
    var d = Delivered()
    for try await event in stream {
        switch event {
        case .progress(let p): d.progress.append(p)
        case .ready(let i): d.info = i
        case .data(let chunk): d.data.append(chunk); d.chunks += 1
        }
    }
    return d
}

/// SHA-256 (hex) by coreutils' sha256sum, so the test does not trust our own code for it.
func sha256(_ data: Data, scratch: URL) throws -> String {
    let file = scratch.appendingPathComponent("sha-\(UUID().uuidString)")
    try data.write(to: file)
    defer { try? FileManager.default.removeItem(at: file) }
    return String(try runTool("sha256sum", [file.path]).prefix(64))
}

/// Total bytes of regular files under a directory (the disk proof).
func bytesOnDisk(_ dir: URL) -> (files: [String], bytes: Int64) {
    var files: [String] = []
    var total: Int64 = 0
    if let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey]) {
        for case let url as URL in e {
            let v = try? url.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey])
            if v?.isRegularFile == true { files.append(url.path); total += Int64(v?.fileSize ?? 0) }
        }
    }
    return (files, total)
}

func makeEngine(_ scratch: URL, configure: (inout TorrentEngineSettings) -> Void = { _ in }) throws -> TorrentEngine {
    var s = TorrentEngineSettings.loopbackTest(dataDirectory: scratch.appendingPathComponent("engine-data").path)
    configure(&s)
    return try TorrentEngine(settings: s)
}

extension Seeder {
    var endpoint: PeerEndpoint { PeerEndpoint(host: host, port: port) }
}

