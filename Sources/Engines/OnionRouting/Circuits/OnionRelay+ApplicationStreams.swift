import NIOCore
import TorCells
import TorCrypto

// Application streams: the configured `ApplicationCommands` go to the owner's application, which
// answers with `sendApplicationMessage`.
extension OnionRelay {
    /// An application command arrived at this hop: open its stream if it is an opening command, then
    /// hand it to the application.
    mutating func receivedApplicationMessage(_ id: RelayCircuitID, _ cell: RelayCell) -> [RelayAction] {
        let streamID = cell.streamID
        if streamID != 0 && self.circuits[id]!.streams[streamID] == nil {
            guard self.configuration.applicationCommands.opening.contains(cell.command.rawValue) else {
                return [.dropped(id.channel, circuitID: id.circuitID, reason: "\(cell.command) for unknown stream \(streamID)")]
            }
            guard self.circuits[id]!.streams.count < self.configuration.maximumStreamsPerCircuit else {
                return self.originateNow(id, RelayCell(ours: .end(End(reason: .resourceLimit)), streamID: streamID))
            }
            self.circuits[id]!.streams[streamID] = .application
            self.circuits[id]!.endpoint.addStream(streamID)
        }
        return [.application(id, streamID: streamID, command: cell.command, body: cell.data)]
    }

    /// Application hook: send a relay message back toward the client on `streamID` (0: circuit level).
    /// Bulk application commands and DATA are flow-controlled: what does not fit the window is queued, and
    /// bodies over 498 bytes are split into several cells. Other messages must fit one cell. Returns
    /// `pauseProducer` once the circuit holds `queueLimits.pauseBytes` (stop producing on the stream
    /// until `resumeProducer`); past `queueLimits.maximumBytes` the circuit is destroyed.
    public mutating func sendApplicationMessage(_ id: RelayCircuitID, streamID: UInt16, command: RelayCommand, body: ByteBuffer) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id] != nil else { throw .unknownCircuit(id) }
        guard body.readableBytes <= RelayCellBody.maximumDataLength || self.configuration.applicationCommands.splits(command) else {
            throw .messageTooLong(command, body.readableBytes)
        }
        if streamID != 0 {
            guard self.circuits[id]!.streams[streamID] != nil else { throw .unknownStream(id, streamID) }
        }
        return self.originate(id, relayCells(command: command, streamID: streamID, data: body), producer: .application, on: streamID)
    }

    /// Application hook: the application is done with an application stream (its protocol ended it):
    /// forget it without a RELAY_END, so its ID and slot are free even if the client
    /// never sends RELAY_END. Cells already queued on it are still sent. A later RELAY_END from the
    /// client for it is ignored.
    public mutating func releaseApplicationStream(_ id: RelayCircuitID, streamID: UInt16) throws(OnionRelayError) {
        guard self.circuits[id]?.streams[streamID] == .application else { throw .unknownStream(id, streamID) }
        self.circuits[id]!.streams[streamID] = nil
        if self.circuits[id]!.endpoint.hasNothingQueued(streamID) { self.circuits[id]!.endpoint.removeStream(streamID) }
    }
}
