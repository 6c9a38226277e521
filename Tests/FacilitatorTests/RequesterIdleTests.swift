import Facilitator
import Foundation
import NIOCore
import PeersmProtocol
import Requester
import Testing

/// A facilitator that goes silent must not hang `peersm fetch`: the requester drops the circuit after
/// its idle timeout, tries new circuits within its rebuild budget, then fails with a clear error.
@Suite struct RequesterIdleTests {
    let name = try! HashName(infohash: Array(repeating: 7, count: 20))

    /// Resolves never (metadata that never comes), or resolves and then never delivers a byte.
    struct SilentSource: ContentSource {
        let resolves: Bool
        func open(_ name: HashName, readFrom: UInt64?, progress: @escaping @Sendable (ProgressState) async -> Void) async throws -> any ContentFile {
            await progress(.torrent)   // progress words alone must not keep the query alive
            guard resolves else {
                try await Task.sleep(for: .seconds(3600))
                throw CancellationError()
            }
            return SilentFile()
        }
    }

    struct SilentFile: ContentFile {
        var size: UInt64 { 10 * 486 }
        var mimeType: String { "application/octet-stream" }
        func read(_ range: Range<UInt64>) async throws -> AsyncThrowingStream<ByteBuffer, Error> {
            AsyncThrowingStream { continuation in
                let sleeper = Task { try? await Task.sleep(for: .seconds(3600)); continuation.finish() }
                continuation.onTermination = { _ in sleeper.cancel() }
            }
        }
        func close() async {}
    }

    /// The facilitator's own timeouts are far away, so only the requester's idle timeout can end it.
    func patientFacilitator() -> FacilitatorConfiguration {
        var config = FacilitatorConfiguration()
        config.resolveTimeout = .seconds(3600)
        config.stallTimeout = .seconds(3600)
        return config
    }

    @Test(.timeLimit(.minutes(1)), arguments: [false, true])
    func aSilentFacilitatorEndsTheFetchWithAClearError(resolves: Bool) async throws {
        let rig = try LoopbackRig(source: SilentSource(resolves: resolves), configuration: patientFacilitator())
        defer { Task { await rig.stop() } }
        let out = scratchFile()
        defer { try? FileManager.default.removeItem(at: out) }
        let started = ContinuousClock.now
        await #expect {
            _ = try await rig.requester {
                $0.idleTimeout = .milliseconds(400)
                $0.maxCircuitRebuilds = 2
            }.fetch(self.name, to: out)
        } throws: { error in
            guard case FetchError.circuitsExhausted(let rebuilds, let last) = error else { return false }
            return rebuilds == 2 && last.contains("no answer from the facilitator")
        }
        // Three circuits × 0.4 s, plus building them: far below any facilitator timeout.
        #expect(ContinuousClock.now - started < .seconds(20))
    }
}
