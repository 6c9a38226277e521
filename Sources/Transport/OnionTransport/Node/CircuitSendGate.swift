import Foundation
import OnionRouting

/// Backpressure for an application that produces relay messages away from the relay's event loop
/// (the facilitator actor hands batches over with `eventLoop.execute`). Per circuit it counts the bytes
/// handed over but not yet given to the relay, plus what the relay queues on the circuit for window,
/// and tells the producer to stop at `pauseBytes`. The producer learns it synchronously from
/// `submitted`, so it overshoots by at most the batch it just handed over, however far the event loop
/// lags behind; the relay side hands batches over with `deliver` and reports the relay's
/// `resumeProducer` with `queueChanged`, which resume the producer. The one driver of application
/// output for both the NIO relay server (`FacilitatorRelayBridge`) and the in-memory network.
///
/// Use the relay's `CircuitQueueLimits.pauseBytes` as `pauseBytes`: the relay says `resumeProducer`
/// only for circuits whose queue reached that value, which is what makes every stop end in a resume.
/// Thread-safe.
public final class CircuitSendGate: @unchecked Sendable {
    // @unchecked Sendable: all state is behind `lock`.
    public let pauseBytes: Int

    private struct State {
        var inFlight = 0
        var queued = 0
        var blocked = false
        var isIdle: Bool { inFlight == 0 && queued == 0 && !blocked }
    }

    private let lock = NSLock()
    private var circuits: [RelayCircuitID: State] = [:]

    public init(pauseBytes: Int) {
        self.pauseBytes = max(1, pauseBytes)
    }

    /// Producer: `bytes` for `circuit` were handed to the relay's loop. False: stop producing for the
    /// circuit until the relay side resumes it.
    public func submitted(_ circuit: RelayCircuitID, bytes: Int) -> Bool {
        self.lock.withLock {
            var state = self.circuits[circuit, default: State()]
            state.inFlight += bytes
            if state.inFlight + state.queued >= self.pauseBytes { state.blocked = true }
            self.circuits[circuit] = state
            return !state.blocked
        }
    }

    /// Whether the producer may send on `circuit` now.
    public func isWritable(_ circuit: RelayCircuitID) -> Bool {
        self.lock.withLock { !(self.circuits[circuit]?.blocked ?? false) }
    }

    /// Relay loop: `bytes` submitted earlier reached the relay, which now holds `queued` bytes for the
    /// circuit. True: the producer was stopped and may resume now (tell it).
    public func applied(_ circuit: RelayCircuitID, bytes: Int, queued: Int) -> Bool {
        self.lock.withLock {
            guard var state = self.circuits[circuit] else { return false }
            state.inFlight = max(0, state.inFlight - bytes)
            return self.update(circuit, &state, queued: queued)
        }
    }

    /// Relay loop: give the relay a batch of `bytes` submitted earlier, in order, through `send`, stopping
    /// at the first failure (the circuit or stream is gone: DESTROY crossed the answers, and a relay
    /// drops them); then account for it against what the relay now queues. True: resume the producer.
    public func deliver<Batch: Sequence>(
        _ circuit: RelayCircuitID, bytes: Int, _ batch: Batch, send: (Batch.Element) throws -> Void, queued: () -> Int
    ) -> Bool {
        for message in batch {
            do { try send(message) } catch { break }
        }
        return self.applied(circuit, bytes: bytes, queued: queued())
    }

    /// Relay loop: the relay said `resumeProducer` on the circuit (its queue drained below the pause).
    /// True: resume the producer.
    public func queueChanged(_ circuit: RelayCircuitID, queued: Int) -> Bool {
        self.lock.withLock {
            guard var state = self.circuits[circuit] else { return false }
            return self.update(circuit, &state, queued: queued)
        }
    }

    /// The circuit is gone.
    public func remove(_ circuit: RelayCircuitID) {
        _ = self.lock.withLock { self.circuits.removeValue(forKey: circuit) }
    }

    /// Circuits with any state (for tests: idle circuits are forgotten).
    public var trackedCircuits: Int { self.lock.withLock { self.circuits.count } }

    private func update(_ circuit: RelayCircuitID, _ state: inout State, queued: Int) -> Bool {
        state.queued = queued
        var resumed = false
        if state.blocked && state.inFlight + state.queued < self.pauseBytes {
            state.blocked = false
            resumed = true
        }
        self.circuits[circuit] = state.isIdle ? nil : state
        return resumed
    }
}
