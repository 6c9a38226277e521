import Crypto
import Facilitator
import Foundation
import Logging
import NetBasics
import NIOCore
import PeersmCircuits
import PeersmProtocol
import Requester
import Testing

/// Operators keep info-level logs: nothing there may say which content a requester asked for.
@Suite struct LogPrivacyTests {
    final class Capture: LogHandler, @unchecked Sendable {
        final class Box: @unchecked Sendable {
            let lock = NSLock()
            var lines: [(Logger.Level, String)] = []
        }
        let box: Box
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        init(_ box: Box) { self.box = box }
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            box.lock.withLock { box.lines.append((event.level, "\(event.message)")) }
        }
    }

    /// A source whose failure names the torrent, as engine errors do.
    struct NamingFailureSource: ContentSource {
        func open(_ name: HashName, readFrom: UInt64?, progress: @escaping @Sendable (ProgressState) async -> Void) async throws -> any ContentFile {
            throw ContentError(.unavailable, "torrent \(name.magnet ?? "") (\(Hex.encode(name.bytes))) failed")
        }
    }

    @Test func aFailedQueryLogsItsReasonButNotTheHashNameAtInfo() async throws {
        let infohash = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
        let name = try HashName(magnet: "magnet:?xt=urn:btih:\(infohash)&dn=secret-title")
        let box = Capture.Box()
        let network = try LoopbackOnionNetwork(relayCount: 3)
        let service = FacilitatorService(source: NamingFailureSource(), signingKey: Curve25519.Signing.PrivateKey(),
                                         transport: network, logger: Logger(label: "test") { _ in Capture(box) })
        network.attach(service)
        await #expect(throws: FetchError.self) { _ = try await Requester(circuits: network).fileInfo(name) }
        await service.shutdown()
        network.shutdown()
        let lines = box.lock.withLock { box.lines }
        let visible = lines.filter { $0.0 >= .info }.map(\.1)
        #expect(visible.contains { $0.contains("UNAVAILABLE") || $0.contains("unavailable") }, "\(visible)")
        for line in visible {
            #expect(!line.lowercased().contains(infohash) && !line.contains("secret-title") && !line.contains("magnet:"), "\(line)")
        }
        // The detail is still there for debugging.
        #expect(lines.contains { $0.0 == .debug && $0.1.contains("secret-title") })
    }
}
