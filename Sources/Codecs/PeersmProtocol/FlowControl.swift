/// Per-stream flow control of DB_DATA (relay command 85, DB_SENDME). Circuit-level SENDMEs
/// (tor-spec §7.3, window 1000 / increment 100) apply on top, counting DB_DATA like RELAY_DATA.
public enum DBFlowControl {
    /// DB_DATA messages a facilitator may send on a new DB stream before any DB_SENDME.
    public static let initialWindow = 1000
    /// Messages granted by one DB_SENDME; the requester sends one per this many messages consumed.
    public static let increment = 500
}

public enum DBFlowControlError: Error, Equatable, Sendable {
    /// The facilitator tried to send with no window left (a bug in the caller).
    case windowExhausted
    /// A DB_SENDME would raise the window above `DBFlowControl.initialWindow`: the peer broke the protocol.
    case unexpectedSendme
    /// A DB_DATA arrived beyond the window the requester granted: the peer broke the protocol.
    case windowOverrun
}

/// Facilitator side: how many more DB_DATA this stream may carry.
public struct DBSendWindow: Sendable, Equatable {
    public private(set) var window = DBFlowControl.initialWindow
    public init() {}

    public var canSend: Bool { window > 0 }

    public mutating func didSend() throws {
        guard window > 0 else { throw DBFlowControlError.windowExhausted }
        window -= 1
    }

    public mutating func receivedSendme() throws {
        guard window + DBFlowControl.increment <= DBFlowControl.initialWindow else { throw DBFlowControlError.unexpectedSendme }
        window += DBFlowControl.increment
    }
}

/// Requester side: counts what arrives and what the application has consumed, and says when to
/// send a DB_SENDME. "Consumed" means released after verification; a block (≤ 128 messages) always
/// fits in the window, so verification-before-release cannot deadlock.
public struct DBReceiveWindow: Sendable, Equatable {
    /// DB_DATA the facilitator may still send.
    public private(set) var window = DBFlowControl.initialWindow
    private var consumedSinceSendme = 0
    public init() {}

    public mutating func didReceive() throws {
        guard window > 0 else { throw DBFlowControlError.windowOverrun }
        window -= 1
    }

    /// Records `count` consumed messages; returns how many DB_SENDME to send now.
    public mutating func didConsume(_ count: Int = 1) -> Int {
        consumedSinceSendme += count
        let sendmes = consumedSinceSendme / DBFlowControl.increment
        consumedSinceSendme -= sendmes * DBFlowControl.increment
        window += sendmes * DBFlowControl.increment
        return sendmes
    }
}
