import Foundation
import Testbed

public enum HTTPSinkError: Error, CustomStringConvertible {
    case badAnnouncement(String)
    case downloadFailed(String, Int32, String)
    case wrongSize(expected: Int, got: Int)

    public var description: String {
        switch self {
        case .badAnnouncement(let log): return "httpsink did not announce its port; log:\n\(log)"
        case .downloadFailed(let url, let code, let log): return "curl \(url) exited with \(code):\n\(log)"
        case .wrongSize(let expected, let got): return "downloaded \(got) bytes, expected \(expected)"
        }
    }
}

/// A local HTTP server (scripts/tornet/httpsink.py) on 127.0.0.2 that serves N deterministic
/// pseudo-random bytes at `/bytes/N` and their SHA-256 at `/sha256/N`, so a download through tor
/// (or through our own circuits) can be checked byte-exact. Sustains ~500 MB/s on loopback, far
/// above any tor circuit, so it is never the bottleneck of a benchmark.
///
/// It listens on 127.0.0.2 because the tor test network's relays listen on 127.0.0.1: asked for a
/// relay's own address, a tor client builds a 4-hop "enclave" circuit to that relay instead.
public final class HTTPSink: @unchecked Sendable {
    public static let host = "127.0.0.2"
    public var host: String { Self.host }
    public let port: UInt16
    private let process: ChildProcess

    public static var scriptPath: String {
        URL(fileURLWithPath: TorTestNetwork.scriptPath).deletingLastPathComponent()
            .appendingPathComponent("tornet/httpsink.py").path
    }

    /// Starts the sink on a free port; its request log goes to `directory/httpsink.log`.
    public static func start(directory: URL) async throws -> HTTPSink {
        let process = try ChildProcess("python3", ["-u", scriptPath, "--host", host, "--port", "0"],
                                       directory: directory, name: "httpsink")
        try await process.waitForLog(containing: "listening on", timeout: .seconds(20))
        guard let line = process.log.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }),
              let port = line.split(separator: ":").last.flatMap({ UInt16($0) }) else {
            process.stop()
            throw HTTPSinkError.badAnnouncement(process.log)
        }
        try await waitForTCP(host: host, port: port)
        return HTTPSink(process: process, port: port)
    }

    private init(process: ChildProcess, port: UInt16) {
        self.process = process
        self.port = port
    }

    public func path(bytes count: Int) -> String { "/bytes/\(count)" }
    public func url(bytes count: Int) -> String { "http://\(host):\(port)/bytes/\(count)" }

    /// The SHA-256 (lower-case hex) of the first `count` bytes the sink serves, computed by the sink.
    public func expectedSHA256(bytes count: Int, scratch: URL) async throws -> String {
        let file = scratch.appendingPathComponent("sha256-\(count).txt")
        _ = try await Self.download("http://\(host):\(port)/sha256/\(count)", to: file)
        return try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func stop() { process.stop() }
    deinit { process.stop() }

    /// Downloads `url` with curl, directly or through a SOCKS5 proxy (hostname resolved by the
    /// proxy, as a tor client expects), into `file`. Returns the byte count and the wall time.
    public static func download(_ url: String, socks5Port: UInt16? = nil, to file: URL,
                                timeout: Duration = .seconds(120)) async throws -> (bytes: Int, seconds: Double) {
        var args = ["--silent", "--show-error", "--fail", "--max-time", "\(timeout.components.seconds)", "-o", file.path]
        if let socks5Port { args += ["--socks5-hostname", "127.0.0.1:\(socks5Port)"] }
        guard let curl = ChildProcess.which("curl") else { throw TestSupportError.toolMissing("curl") }
        let log = file.appendingPathExtension("curl.log")
        let start = ContinuousClock.now
        let status = try await runToCompletion(curl, args + [url], output: log)
        let elapsed = ContinuousClock.now - start
        guard status == 0 else {
            throw HTTPSinkError.downloadFailed(url, status, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
        }
        let size = (try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)?.intValue ?? 0
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return (size, seconds)
    }

    /// SHA-256 (lower-case hex) of a file, by coreutils `sha256sum` (TestSupport links no crypto).
    public static func sha256Hex(of file: URL) throws -> String {
        let out = try runTool("sha256sum", [file.path])
        return String(out.prefix(64))
    }
}
