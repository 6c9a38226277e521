import NIOCore
import TorCells

/// Flow-control state of one stream, plus the cells waiting for window.
struct StreamFlow {
    var package = PackageWindow(.stream)
    var deliver = DeliverWindow(.stream)
    var queue = CircularBuffer<RelayCell>()
    var queuedBytes = 0
    /// The consumer of this stream's data (the exit's TCP connection, the client's application) cannot
    /// take more: withhold stream SENDMEs, as C tor does while an edge connection's buffer is full,
    /// so the peer's stream window runs down instead of our buffers growing.
    var paused = false
}

/// The relay-message end of one circuit hop — the client's view of a hop, or a relay's view of the
/// client when it is the last hop: both circuit windows, per-stream windows, and per-stream send queues
/// drained round-robin so one bulk stream cannot starve the others.
///
/// Queued cells keep their order within a stream: an END queued behind DATA waits for that DATA.
struct CircuitEndpoint {
    var circuitPackage: CircuitPackageWindow
    var circuitDeliver = CircuitDeliverWindow()
    private(set) var streams: [UInt16: StreamFlow] = [:]
    /// Streams with queued cells, in round-robin order.
    private var ready = CircularBuffer<UInt16>()
    /// Bytes queued on all streams of the circuit (what the relay holds for it).
    private(set) var totalQueuedBytes = 0

    /// Which application commands count toward the windows (besides DATA).
    let applicationCommands: ApplicationCommands

    init(minimumSendmeVersion: UInt8, applicationCommands: ApplicationCommands) {
        self.circuitPackage = CircuitPackageWindow(minimumAcceptedVersion: minimumSendmeVersion)
        self.applicationCommands = applicationCommands
    }

    // MARK: streams

    func hasStream(_ id: UInt16) -> Bool { self.streams[id] != nil }

    mutating func addStream(_ id: UInt16) {
        if self.streams[id] == nil { self.streams[id] = StreamFlow() }
    }

    /// Forget a stream and drop whatever it still had queued.
    mutating func removeStream(_ id: UInt16) {
        self.totalQueuedBytes -= self.streams[id]?.queuedBytes ?? 0
        self.streams[id] = nil
        if let index = self.ready.firstIndex(of: id) { self.ready.remove(at: index) }
    }

    func queuedBytes(_ id: UInt16) -> Int { self.streams[id]?.queuedBytes ?? 0 }

    /// Whether a stream has nothing queued (an unknown stream has nothing).
    func hasNothingQueued(_ id: UInt16) -> Bool { self.streams[id]?.queue.isEmpty ?? true }

    /// Next free stream ID after `start`, skipping 0 and IDs in use; nil if all 65 535 are taken.
    func freeStreamID(after start: UInt16) -> UInt16? {
        var candidate = start
        for _ in 0..<Int(UInt16.max) {
            candidate = candidate == .max ? 1 : candidate + 1
            if self.streams[candidate] == nil { return candidate }
        }
        return nil
    }

    // MARK: sending

    /// Queue a cell on its stream (stream 0 is a pseudo-stream for circuit-level application messages).
    /// The caller then drains with `nextSendable`.
    mutating func enqueue(_ cell: RelayCell) {
        let id = cell.streamID
        if self.streams[id] == nil { self.streams[id] = StreamFlow() }
        let wasEmpty = self.streams[id]!.queue.isEmpty
        self.streams[id]!.queue.append(cell)
        self.streams[id]!.queuedBytes += cell.data.readableBytes
        self.totalQueuedBytes += cell.data.readableBytes
        if wasEmpty { self.ready.append(id) }
    }

    /// Pop the next cell the windows allow, or nil if everything queued is blocked. The stream window is
    /// charged here; the circuit window in `didSend` once the caller knows the running digest.
    mutating func nextSendable() -> RelayCell? {
        for _ in 0..<self.ready.count {
            let id = self.ready.removeFirst()
            guard let head = self.streams[id]?.queue.first else { continue }
            let flow = self.applicationCommands.flowControl(of: head.command)
            let blockedByCircuit = flow.countsTowardCircuitWindow && !self.circuitPackage.canSend
            let blockedByStream = flow.countsTowardStreamWindow && id != 0 && !self.streams[id]!.package.canSend
            if blockedByCircuit || blockedByStream {
                self.ready.append(id)
                continue
            }
            self.streams[id]!.queue.removeFirst()
            self.streams[id]!.queuedBytes -= head.data.readableBytes
            self.totalQueuedBytes -= head.data.readableBytes
            if flow.countsTowardStreamWindow && id != 0 { self.streams[id]!.package.didSend() }
            if !self.streams[id]!.queue.isEmpty { self.ready.append(id) }
            return head
        }
        return nil
    }

    /// Whether the cell about to be sent must have its running digest recorded (SENDME v1).
    func needsDigest(_ cell: RelayCell) -> Bool {
        self.applicationCommands.flowControl(of: cell.command).countsTowardCircuitWindow && self.circuitPackage.nextCellNeedsDigest
    }

    /// Charge the circuit window for a cell just encrypted and sent.
    mutating func didSend(_ cell: RelayCell, digest: SendmeDigest?) {
        if self.applicationCommands.flowControl(of: cell.command).countsTowardCircuitWindow {
            self.circuitPackage.didSend(digest: digest)
        }
    }

    // MARK: receiving

    /// Charge the circuit deliver window; returns the circuit SENDME to send now, if any.
    mutating func receivedCircuitLevel(_ cell: RelayCell, digest: SendmeDigest?) throws(FlowControlViolation) -> Sendme? {
        guard self.applicationCommands.flowControl(of: cell.command).countsTowardCircuitWindow else { return nil }
        return try self.circuitDeliver.didReceive(digest: digest)
    }

    /// Charge a stream's deliver window; returns how many stream SENDMEs to send now (already accounted).
    mutating func receivedStreamLevel(_ cell: RelayCell) throws(FlowControlViolation) -> Int {
        guard self.applicationCommands.flowControl(of: cell.command).countsTowardStreamWindow, cell.streamID != 0,
            self.streams[cell.streamID] != nil
        else { return 0 }
        _ = try self.streams[cell.streamID]!.deliver.didReceive()
        return self.dueStreamSendmes(cell.streamID)
    }

    /// Pause or resume a stream's consumer; returns how many stream SENDMEs to send now.
    mutating func setPaused(_ id: UInt16, _ paused: Bool) -> Int {
        guard self.streams[id] != nil else { return 0 }
        self.streams[id]!.paused = paused
        return self.dueStreamSendmes(id)
    }

    private mutating func dueStreamSendmes(_ id: UInt16) -> Int {
        var count = 0
        while !self.streams[id]!.paused && self.streams[id]!.deliver.sendmeDue {
            self.streams[id]!.deliver.didSendSendme()
            count += 1
        }
        return count
    }

    /// Apply a SENDME from the peer (stream 0: circuit level).
    mutating func receivedSendme(streamID: UInt16, _ sendme: Sendme) throws(FlowControlViolation) {
        if streamID == 0 {
            try self.circuitPackage.receivedSendme(sendme)
        } else if self.streams[streamID] != nil {
            try self.streams[streamID]!.package.receivedSendme()
        }
        // A stream SENDME for a stream we already closed is harmless: ignore it.
    }
}

/// Split application bytes into DATA-sized relay cells.
func relayCells(command: RelayCommand, streamID: UInt16, data: ByteBuffer) -> [RelayCell] {
    var data = data
    if data.readableBytes == 0 { return [RelayCell(command: command, streamID: streamID, data: data)] }
    var cells: [RelayCell] = []
    cells.reserveCapacity(data.readableBytes / RelayCellBody.maximumDataLength + 1)
    while data.readableBytes > 0 {
        let chunk = data.readSlice(length: min(RelayCellBody.maximumDataLength, data.readableBytes))!
        cells.append(RelayCell(command: command, streamID: streamID, data: chunk))
    }
    return cells
}
