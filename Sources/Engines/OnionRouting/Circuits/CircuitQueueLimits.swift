/// How many bytes one circuit may hold at a relay toward its client, waiting for circuit or stream
/// window. The one place these thresholds are written: the relay state machine enforces
/// `maximumBytes`, and its owners (the NIO relay server, `CircuitSendGate`, the in-memory test
/// network) pause their producers at `pauseBytes`.
public struct CircuitQueueLimits: Hashable, Sendable {
    /// Producers (exit socket reads, the application) pause while this many bytes wait on the
    /// circuit and resume below it. Per circuit: the circuit window is shared by all of its streams.
    public var pauseBytes: Int
    /// A circuit with more than this many bytes queued is destroyed (RESOURCELIMIT) rather than allowed
    /// to grow without bound (a client that withholds SENDMEs while something keeps producing).
    /// Producers that honour `pauseBytes` overshoot it by one batch at most.
    public var maximumBytes: Int

    public init(pauseBytes: Int = 512 * 1024, maximumBytes: Int = 4 << 20) {
        self.pauseBytes = pauseBytes
        self.maximumBytes = maximumBytes
    }

    public static let standard = CircuitQueueLimits()
}
