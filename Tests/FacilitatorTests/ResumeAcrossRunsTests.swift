import Facilitator
import Foundation
import PeersmProtocol
import Requester
import Testing

/// `peersm fetch --continue`: a download a previous run left (its process gone) continues from the
/// last verified chunk, only when the facilitator still serves the same file with the same key.
@Suite struct ResumeAcrossRunsTests {
    let name = try! HashName(infohash: Array(repeating: 0x42, count: 20))
    let file = testBytes(6 * 1024 * 1024 + 77, seed: 11)

    /// A first run that breaks off after more than 4.5 MiB (its only circuit killed, no rebuilds),
    /// leaving the output and its `.peersm-part` state as a killed process would.
    func interruptedRun(_ rig: LoopbackRig, to out: URL) async throws {
        let killed = KillOnce()
        let network = rig.network
        await #expect(throws: FetchError.self) {
            _ = try await rig.requester { $0.maxCircuitRebuilds = 0 }.fetch(self.name, to: out) { progress in
                if case .transferring = progress.stage, progress.verifiedBytes > 4_500_000, killed.first() {
                    Task { if let id = await network.openCircuits.first { await network.killCircuit(id) } }
                }
            }
        }
        #expect(killed.fired)
    }

    func slowSource() -> MemoryContentSource {
        var source = MemoryContentSource(files: [name: file])
        source.pieceSize = 32 << 10
        source.delayPerPiece = .milliseconds(2)
        return source
    }

    @Test func aLaterRunContinuesFromTheLastVerifiedChunk() async throws {
        let rig = try LoopbackRig(source: slowSource())
        defer { Task { await rig.stop() } }
        let out = scratchFile()
        let state = out.deletingLastPathComponent().appendingPathComponent(out.lastPathComponent + ".peersm-part")
        defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: state) }
        try await interruptedRun(rig, to: out)
        #expect(FileManager.default.fileExists(atPath: state.path))

        let first = FirstValue()
        let result = try await rig.requester().fetch(name, to: out, resume: true) { progress in
            if case .resumed(let chunk) = progress.stage { first.set(chunk) }
        }
        #expect(try Data(contentsOf: out) == Data(file))
        // It started past the first 4 MiB (state is saved every 64 blocks) and fetched only the rest.
        let from = try #require(first.value)
        let resumedAt: UInt64 = UInt64(from) * 486
        let lastSaveAtLeast: UInt64 = 4_500_000 - 64 * 128 * 486
        #expect(resumedAt >= lastSaveAtLeast)
        let rest: UInt64 = UInt64(file.count) - resumedAt
        #expect(result.bytes == rest, "the second run fetched \(result.bytes) bytes, the rest is \(rest)")
        #expect(!FileManager.default.fileExists(atPath: state.path), "the state outlived the complete file")
    }

    @Test func aDifferentFacilitatorKeyStartsOver() async throws {
        let out = scratchFile()
        let state = out.deletingLastPathComponent().appendingPathComponent(out.lastPathComponent + ".peersm-part")
        defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: state) }
        do {
            let rig = try LoopbackRig(source: slowSource())
            try await interruptedRun(rig, to: out)
            await rig.stop()
        }
        // Another facilitator (new key) serves the same name: the saved bytes carry signatures it
        // did not make, so nothing of them is kept.
        let other = try LoopbackRig(source: slowSource())
        defer { Task { await other.stop() } }
        let resumed = FirstValue()
        let result = try await other.requester().fetch(name, to: out, resume: true) { progress in
            if case .resumed(let chunk) = progress.stage { resumed.set(chunk) }
        }
        #expect(resumed.value == nil)
        #expect(result.bytes == UInt64(file.count))
        #expect(try Data(contentsOf: out) == Data(file))
    }
}

/// The first value a progress callback saw.
final class FirstValue: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var stored: UInt32?
    var value: UInt32? { lock.withLock { stored } }
    func set(_ v: UInt32) { lock.withLock { if stored == nil { stored = v } } }
}
