/// How many bytes one circuit may hold at a relay toward its client, waiting for circuit or stream
/// window. The one place these thresholds are written: the relay state machine decides against them
/// when its producers (exit socket reads, the application) pause and resume
/// (`RelayAction.pauseProducer` / `.resumeProducer`) and when a circuit is destroyed; its owners only
/// perform those actions.
public struct CircuitQueueLimits: Hashable, Sendable {
    /// Producers (exit socket reads, the application) pause while this many bytes wait on the
    /// circuit and resume below it. Per circuit: the circuit window is shared by all of its streams.
    public var pauseBytes: Int
    /// An exit stream also pauses reading its TCP socket while this many bytes wait on the stream
    /// itself (its stream window ran out while the circuit still has room).
    public var exitStreamPauseBytes: Int
    /// A circuit with more than this many bytes queued is destroyed (RESOURCELIMIT) rather than allowed
    /// to grow without bound (a client that withholds SENDMEs while something keeps producing).
    /// Producers that honour `pauseBytes` overshoot it by one batch at most.
    public var maximumBytes: Int

    public init(pauseBytes: Int = 512 * 1024, exitStreamPauseBytes: Int = 128 * 1024, maximumBytes: Int = 4 << 20) {
        self.pauseBytes = pauseBytes
        self.exitStreamPauseBytes = exitStreamPauseBytes
        self.maximumBytes = maximumBytes
    }

    public static let standard = CircuitQueueLimits()
}
