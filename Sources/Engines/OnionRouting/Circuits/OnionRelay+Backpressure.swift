import TorCells

// Backpressure toward the client, decided here against `configuration.queueLimits`: a producer that
// filled its circuit's queue (or, an exit, its stream's) is told to pause, and to resume once the
// queue drained. Owners perform `pauseProducer` / `resumeProducer` and decide nothing themselves.
extension OnionRelay {
    /// What feeds a stream's queue.
    enum Producer {
        /// Reads of an exit stream's TCP socket: bounded per circuit and per stream.
        case exitReads
        /// The application (an application stream, or stream 0): bounded per circuit.
        case application
    }

    /// Whether the producer of `streamID` on `circuit` was told to pause and not yet to resume.
    public func isProducerPaused(_ circuit: RelayCircuitID, streamID: UInt16) -> Bool {
        self.circuits[circuit]?.pausedProducers[streamID] != nil
    }

    func hasRoom(_ id: RelayCircuitID, _ producer: Producer, _ streamID: UInt16) -> Bool {
        let limits = self.configuration.queueLimits
        let endpoint = self.circuits[id]!.endpoint
        guard endpoint.totalQueuedBytes < limits.pauseBytes else { return false }
        switch producer {
        case .exitReads: return endpoint.queuedBytes(streamID) < limits.exitStreamPauseBytes
        case .application: return true
        }
    }

    /// After `producer` queued cells on `streamID`: pause it if there is no room left.
    mutating func pauseIfFull(_ id: RelayCircuitID, _ producer: Producer, _ streamID: UInt16) -> [RelayAction] {
        guard self.circuits[id] != nil, !self.hasRoom(id, producer, streamID),
            self.circuits[id]!.pausedProducers.updateValue(producer, forKey: streamID) == nil
        else { return [] }
        return [.pauseProducer(id, streamID: streamID)]
    }

    /// After the circuit's queue may have shrunk: resume the paused producers that have room. An exit
    /// stream that ended meanwhile is forgotten (its socket is gone); the application is told even
    /// for a stream it released, as it paces per circuit.
    mutating func resumeProducers(_ id: RelayCircuitID) -> [RelayAction] {
        guard let paused = self.circuits[id]?.pausedProducers, !paused.isEmpty else { return [] }
        var actions: [RelayAction] = []
        for (streamID, producer) in paused.sorted(by: { $0.key < $1.key }) {
            if case .exitReads = producer, self.circuits[id]!.streams[streamID] != .open {
                self.circuits[id]!.pausedProducers[streamID] = nil
            } else if self.hasRoom(id, producer, streamID) {
                self.circuits[id]!.pausedProducers[streamID] = nil
                actions.append(.resumeProducer(id, streamID: streamID))
            }
        }
        return actions
    }
}
