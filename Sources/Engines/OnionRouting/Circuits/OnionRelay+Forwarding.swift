import NIOCore
import TorCells
import TorCrypto

// Relay cells: peeled and passed on in either direction, or handled here when recognized.
extension OnionRelay {
    /// A relay cell travelling away from the client.
    mutating func forward(_ id: RelayCircuitID, _ body: RelayCellBody, early: Bool) -> [RelayAction] {
        if early {
            self.circuits[id]!.relayEarlyReceived += 1
            guard self.circuits[id]!.relayEarlyReceived <= maximumRelayEarlyCells else {
                return self.close(id, reason: .protocol, failure: .tooManyRelayEarly, notify: true)
            }
        }
        var body = body
        let recognized: Bool
        do {
            let crypto = self.circuits[id]!.crypto
            recognized = try body.withUnsafeMutableBytes { try crypto.decryptForward($0) }
        } catch {
            return self.close(id, reason: .internal, failure: .crypto("\(error)"), notify: true)
        }
        if recognized { return self.handleRecognized(id, body, early: early) }
        guard let next = self.circuits[id]!.next, case .extended = self.circuits[id]!.extend else {
            // Last hop and the digest does not match: someone tampered with the cell.
            return self.close(id, reason: .protocol, failure: .unrecognizedRelayCell, notify: true)
        }
        let command: ChannelCommand = early ? .relayEarly : .relay
        return [.send(ChannelCell(circuitID: next.circuitID, command: command, payload: body.bytes), on: next.channel)]
    }

    /// A relay cell from the next hop travelling toward the client: add our layer and pass it on.
    mutating func backward(_ id: RelayCircuitID, _ body: RelayCellBody, early: Bool) -> [RelayAction] {
        guard !early else { return self.close(id, reason: .protocol, failure: .inboundRelayEarly, notify: true) }
        var body = body
        do {
            let crypto = self.circuits[id]!.crypto
            try body.withUnsafeMutableBytes { try crypto.relayBackward($0) }
        } catch {
            return self.close(id, reason: .internal, failure: .crypto("\(error)"), notify: true)
        }
        return [.send(ChannelCell(circuitID: id.circuitID, command: .relay, payload: body.bytes), on: id.channel)]
    }

    /// A relay cell addressed to this hop.
    mutating func handleRecognized(_ id: RelayCircuitID, _ body: RelayCellBody, early: Bool) -> [RelayAction] {
        let cell: RelayCell
        do { cell = try RelayCell(decoding: body) } catch {
            return self.close(id, reason: .protocol, failure: .malformed(error), notify: true)
        }

        var actions: [RelayAction] = []
        do {
            let digest = SendmeDigest(self.circuits[id]!.crypto.forwardDigest)
            if let sendme = try self.circuits[id]!.endpoint.receivedCircuitLevel(cell, digest: digest) {
                actions += self.originateNow(id, RelayCell(ours: .sendme(sendme), streamID: 0))
            }
        } catch {
            return self.close(id, reason: .protocol, failure: .flowControl(error), notify: true)
        }

        let streamID = cell.streamID
        if self.configuration.applicationCommands.contains(cell.command) {
            return actions + self.receivedApplicationMessage(id, cell)
        }

        let message: RelayMessage
        do { message = try cell.message() } catch {
            if cell.command.isStreamCommand && streamID != 0 {
                return actions + self.endStream(id, streamID, reason: .torProtocol)
            }
            return self.close(id, reason: .protocol, failure: .malformed(error), notify: true)
        }
        if cell.command.isStreamCommand && streamID == 0 {
            return self.close(id, reason: .protocol, failure: .badStreamID(cell.command, 0), notify: true)
        }

        switch message {
        case .extend2(let extend):
            return actions + self.extend(id, extend, early: early)
        case .sendme(let sendme):
            do {
                try self.circuits[id]!.endpoint.receivedSendme(streamID: streamID, sendme)
            } catch {
                return self.close(id, reason: .protocol, failure: .flowControl(error), notify: true)
            }
            return actions + self.drain(id)
        case .begin(let begin):
            return actions + self.begin(id, streamID, begin)
        case .beginDir:
            // We are not a directory cache.
            return actions + self.originateNow(id, RelayCell(ours: .end(End(reason: .notDirectory)), streamID: streamID))
        case .data(let data):
            guard let state = self.circuits[id]!.streams[streamID], state != .application else {
                return actions + [.dropped(id.channel, circuitID: id.circuitID, reason: "DATA for unknown stream \(streamID)")]
            }
            do {
                actions += self.streamSendmes(id, streamID, count: try self.circuits[id]!.endpoint.receivedStreamLevel(cell))
            } catch {
                return actions + self.endStream(id, streamID, reason: .torProtocol)
            }
            return actions + [.streamData(id, streamID: streamID, data)]
        case .end(let end):
            guard self.circuits[id]!.streams.removeValue(forKey: streamID) != nil else { return actions }
            self.circuits[id]!.endpoint.removeStream(streamID)
            return actions + [.closeStream(id, streamID: streamID, end.reason)]
        case .truncate:
            var out = actions
            if let next = self.circuits[id]!.next {
                self.channels[next.channel]?.circuits.remove(next.circuitID)
                out.append(self.destroyCell(next.circuitID, .requested, on: next.channel))
            }
            self.circuits[id]!.next = nil
            self.circuits[id]!.extend = .none
            return out + self.originateNow(id, RelayCell(ours: .truncated(.requested), streamID: 0))
        case .drop:
            return actions
        case .connected, .extended2, .truncated:
            return self.close(id, reason: .protocol, failure: .unexpected("\(cell.command) sent toward the exit"), notify: true)
        case .raw(.resolve, _) where streamID != 0:
            // We do not resolve names for clients: answer RESOLVED with one "transient error" entry
            // (type 0xF0, empty value, TTL 0) rather than leave the client waiting.
            let resolved = RelayCell(command: .resolved, streamID: streamID, data: ByteBuffer(bytes: [0xF0, 0, 0, 0, 0, 0]))
            return actions + self.originateNow(id, resolved)
        case .raw(let command, _):
            return actions + [.dropped(id.channel, circuitID: id.circuitID, reason: "unsupported relay command \(command)")]
        }
    }
}
