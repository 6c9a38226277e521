import ArgumentParser
import Foundation
import PeersmProtocol
import Requester

// The console side of a fetch, shared by `peersm fetch` and `peersm-demo`.

/// Runs a fetch with a progress bar on stderr; maps failures to exit codes with a clear message.
public func runFetch(_ requester: Requester, _ name: HashName, to output: URL, resume: Bool = false, quiet: Bool) async throws -> FetchResult {
    let bar = ProgressBar(enabled: !quiet)
    do {
        let result = try await requester.fetch(name, to: output, resume: resume) { bar.update($0) }
        bar.finish()
        return result
    } catch let error as FetchError {
        bar.finish()
        FileHandle.standardError.write(Data("peersm: \(error)\n".utf8))
        if case .circuitsExhausted = error { throw ExitCode(2) }
        throw ExitCode(1)
    }
}

/// The progress line (bytes, rate, ETA), redrawn at most 10 times a second.
public final class ProgressBar: @unchecked Sendable {
    private let lock = NSLock()
    private let enabled: Bool
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant
    private var lastDraw: ContinuousClock.Instant
    private var drew = false
    private let meter = ProgressMeter()

    public init(enabled: Bool) {
        self.enabled = enabled
        start = clock.now
        lastDraw = start - .seconds(1)
    }

    public func update(_ p: FetchProgress) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        let now = clock.now
        switch p.stage {
        case .transferring:
            guard now - lastDraw >= .milliseconds(100) || p.verifiedBytes == p.totalBytes else { return }
            lastDraw = now
            write("\r\u{1B}[K" + meter.line(done: p.verifiedBytes, total: p.totalBytes, elapsed: now - start))
            drew = true
        case .buildingCircuit(let attempt):
            note(attempt == 1 ? "building circuit…" : "building circuit (attempt \(attempt))…")
        case .facilitator(let word):
            note("facilitator: \(word)")
        case .resumed(let chunk):
            note("circuit lost; resuming from chunk \(chunk) on a new circuit")
        }
    }

    private func note(_ text: String) {
        write((drew ? "\n" : "") + text + "\n")
        drew = false
    }

    public func finish() {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        if drew { write("\n") }
        drew = false
    }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}
