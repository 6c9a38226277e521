import NetBasics
import NIOCore
import TorCells
import TorCrypto

// Exit streams: BEGIN checked against the exit policy, then the owner's TCP connection.
extension OnionRelay {
    mutating func begin(_ id: RelayCircuitID, _ streamID: UInt16, _ begin: Begin) -> [RelayAction] {
        guard self.circuits[id]!.streams[streamID] == nil else {
            return [.dropped(id.channel, circuitID: id.circuitID, reason: "BEGIN for stream \(streamID) already in use")]
        }
        guard self.circuits[id]!.streams.count < self.configuration.maximumStreamsPerCircuit else {
            return self.originateNow(id, RelayCell(ours: .end(End(reason: .resourceLimit)), streamID: streamID))
        }
        if !self.configuration.allowSingleHopExits && self.channels[id.channel]?.peerIdentity == nil {
            return self.originateNow(id, RelayCell(ours: .end(End(reason: .torProtocol)), streamID: streamID))
        }
        let policy = self.configuration.exitPolicy
        let allowed: Bool
        var rejected: End.ExitPolicyRejection?
        if let address = IPAddress(begin.host) {
            allowed = policy.allows(address, port: begin.port)
            rejected = End.ExitPolicyRejection(address: address, ttl: 0)
        } else {
            allowed = policy.mightAllowHostname(port: begin.port)
        }
        guard allowed else {
            return self.originateNow(id, RelayCell(ours: .end(End(reason: .exitPolicy, exitPolicy: rejected)), streamID: streamID))
        }
        self.circuits[id]!.streams[streamID] = .connecting
        self.circuits[id]!.endpoint.addStream(streamID)
        return [.connect(id, streamID: streamID, host: begin.host, port: begin.port)]
    }

    /// Exit: the TCP connection for a BEGIN is up. Sends CONNECTED.
    public mutating func streamConnected(_ id: RelayCircuitID, streamID: UInt16, address: IPAddress?, ttl: UInt32 = 300) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] == .connecting else { throw .unknownStream(id, streamID) }
        self.circuits[id]!.streams[streamID] = .open
        var connected = Connected(address: address, ttl: ttl)
        if address?.ipv4 == 0 { connected = .empty }
        return self.originate(id, [RelayCell(ours: .connected(connected), streamID: streamID)])
    }

    /// Exit: the TCP connection for a BEGIN failed. Sends END with `reason`.
    public mutating func streamConnectFailed(_ id: RelayCircuitID, streamID: UInt16, reason: EndReason) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] == .connecting else { throw .unknownStream(id, streamID) }
        return self.endStream(id, streamID, reason: reason, closeTCP: false)
    }

    /// Exit: bytes read from the stream's TCP connection; sent as DATA as the windows allow. Returns
    /// `pauseProducer` when the owner must stop reading the socket (`resumeProducer` follows).
    public mutating func streamReceived(_ id: RelayCircuitID, streamID: UInt16, data: ByteBuffer) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] == .open else { throw .unknownStream(id, streamID) }
        return self.originate(id, relayCells(command: .data, streamID: streamID, data: data), producer: .exitReads, on: streamID)
    }

    /// Exit: the TCP connection closed (or the application ends a stream). Sends END after queued data.
    public mutating func closeStream(_ id: RelayCircuitID, streamID: UInt16, reason: EndReason = .done) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] != nil else { throw .unknownStream(id, streamID) }
        self.circuits[id]!.streams[streamID] = nil
        return self.originate(id, [RelayCell(ours: .end(End(reason: reason)), streamID: streamID)])
    }

    /// Exit backpressure: the stream's TCP connection stopped (or resumed) accepting writes. While
    /// paused, stream SENDMEs are withheld, so the client stops after its 500-cell stream window;
    /// resuming sends the SENDMEs owed.
    public mutating func setStreamPaused(_ id: RelayCircuitID, streamID: UInt16, _ paused: Bool) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] != nil else { throw .unknownStream(id, streamID) }
        return self.streamSendmes(id, streamID, count: self.circuits[id]!.endpoint.setPaused(streamID, paused))
    }
}
