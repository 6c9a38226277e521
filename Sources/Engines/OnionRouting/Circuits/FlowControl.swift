import TorCells
import TorCrypto

// Circuit- and stream-level flow control (tor-spec §7.3–7.4), kept apart from the circuit state
// machines the way swift-nio-ssh keeps `ChildChannelWindowManager` apart from its multiplexer.
//
// Each side of a circuit hop has two windows per level:
//  - a *package* window: how many flow-controlled cells we may still send before the peer's SENDME;
//  - a *deliver* window: how many flow-controlled cells the peer may still send us before we SENDME.

/// A flow-control rule violated by the peer. Every case is the peer's fault and calls for tearing down
/// the circuit (circuit level) or the stream (stream level) with reason TORPROTOCOL.
public enum FlowControlViolation: Error, Hashable, Sendable {
    /// The peer sent a flow-controlled cell while our deliver window was already empty.
    case deliverWindowExhausted
    /// A SENDME would raise the package window above its initial size.
    case sendmeOverflow(window: Int)
    /// A circuit SENDME arrived but we never recorded a digest it could acknowledge.
    case unexpectedSendme
    /// A v1 SENDME echoed a digest that does not match the one we recorded (tor-spec §7.4, prop 289).
    case sendmeDigestMismatch
    /// A SENDME whose version is below our minimum accepted version, or unknown.
    case unacceptableSendmeVersion(UInt8)
}

/// The size and increment of a window. Tor fixes these per level.
public struct FlowControlParameters: Hashable, Sendable {
    public var initialWindow: Int
    public var increment: Int

    public init(initialWindow: Int, increment: Int) {
        precondition(initialWindow > 0 && increment > 0 && increment <= initialWindow)
        self.initialWindow = initialWindow
        self.increment = increment
    }

    /// `CIRCWINDOW_START` / `CIRCWINDOW_INCREMENT`.
    public static let circuit = FlowControlParameters(initialWindow: 1000, increment: 100)
    /// `STREAMWINDOW_START` / `STREAMWINDOW_INCREMENT`.
    public static let stream = FlowControlParameters(initialWindow: 500, increment: 50)
}

/// Our sending budget at one level. The peer refills it with SENDMEs.
public struct PackageWindow: Hashable, Sendable {
    public let parameters: FlowControlParameters
    public private(set) var window: Int

    public init(_ parameters: FlowControlParameters) {
        self.parameters = parameters
        self.window = parameters.initialWindow
    }

    /// Whether one more flow-controlled cell may be sent now.
    public var canSend: Bool { self.window > 0 }

    /// Account for one flow-controlled cell sent. Callers check `canSend` first: sending past the
    /// window is our bug, not the peer's, so it is trapped in debug builds and clamped otherwise.
    public mutating func didSend() {
        assert(self.window > 0, "packaged a cell with an empty window")
        self.window = max(0, self.window - 1)
    }

    /// Apply one SENDME from the peer.
    public mutating func receivedSendme() throws(FlowControlViolation) {
        let next = self.window + self.parameters.increment
        guard next <= self.parameters.initialWindow else {
            throw .sendmeOverflow(window: self.window)
        }
        self.window = next
    }
}

/// The peer's sending budget toward us at one level. We refill it by sending SENDMEs.
public struct DeliverWindow: Hashable, Sendable {
    public let parameters: FlowControlParameters
    public private(set) var window: Int

    public init(_ parameters: FlowControlParameters) {
        self.parameters = parameters
        self.window = parameters.initialWindow
    }

    /// Account for one flow-controlled cell received. Returns `true` when a SENDME is now due; the
    /// caller sends it and calls `didSendSendme()`.
    public mutating func didReceive() throws(FlowControlViolation) -> Bool {
        guard self.window > 0 else { throw .deliverWindowExhausted }
        self.window -= 1
        return self.sendmeDue
    }

    /// C tor sends a SENDME as soon as the window falls to `initial - increment` (900 for circuits,
    /// 450 for streams), so the peer never stalls while we have room.
    public var sendmeDue: Bool {
        self.window <= self.parameters.initialWindow - self.parameters.increment
    }

    public mutating func didSendSendme() {
        self.window += self.parameters.increment
    }
}

/// A 20-byte SHA-1 running-digest snapshot, as echoed by a v1 circuit SENDME.
public struct SendmeDigest: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(_ bytes: some Sequence<UInt8>) {
        let bytes = Array(bytes)
        guard bytes.count == 20 else { return nil }
        self.bytes = bytes
    }

    public var description: String { Array(self.bytes.prefix(4)).hexString + "…" }
}

/// The sending side of circuit-level flow control with authenticated SENDMEs (proposal 289).
///
/// Every `increment`-th flow-controlled cell we send, we remember the running digest the cell left
/// behind; the peer's next SENDME must echo it, which proves it really received (and decrypted) the
/// cells rather than blindly acknowledging to make us send faster.
public struct CircuitPackageWindow: Hashable, Sendable {
    public private(set) var window: PackageWindow
    /// Oldest first; each SENDME acknowledges the oldest.
    private var recordedDigests: [SendmeDigest] = []
    /// Lowest SENDME version we accept. 1 is what current tor demands; 0 admits peers (such as the
    /// Peersm browser clients) that send empty SENDMEs.
    public let minimumAcceptedVersion: UInt8

    public init(_ parameters: FlowControlParameters = .circuit, minimumAcceptedVersion: UInt8 = 1) {
        self.window = PackageWindow(parameters)
        self.minimumAcceptedVersion = minimumAcceptedVersion
    }

    public var canSend: Bool { self.window.canSend }

    /// Whether the cell about to be sent must have its digest recorded; true for the cell after which
    /// the peer's deliver window reaches a multiple of the increment, i.e. when it will SENDME.
    public var nextCellNeedsDigest: Bool {
        (self.window.window - 1) % self.window.parameters.increment == 0
    }

    /// Account for one flow-controlled cell sent. `digest` is the running digest right after that cell
    /// and is required exactly when `nextCellNeedsDigest` was true.
    public mutating func didSend(digest: SendmeDigest?) {
        if self.nextCellNeedsDigest, let digest {
            self.recordedDigests.append(digest)
        }
        self.window.didSend()
    }

    /// Check and apply a circuit SENDME.
    public mutating func receivedSendme(_ sendme: Sendme) throws(FlowControlViolation) {
        switch sendme {
        case .v0:
            guard self.minimumAcceptedVersion == 0 else { throw .unacceptableSendmeVersion(0) }
            // Unauthenticated: only the window bound can be checked (as C tor does for v0). Keep the
            // recorded digests in step in case the peer mixes versions.
            if !self.recordedDigests.isEmpty { self.recordedDigests.removeFirst() }
        case .v1(let echoed):
            guard !self.recordedDigests.isEmpty else {
                // Nothing outstanding: either it overflows the window or acknowledges nothing we sent.
                if self.window.window + self.window.parameters.increment > self.window.parameters.initialWindow {
                    throw .sendmeOverflow(window: self.window.window)
                }
                throw .unexpectedSendme
            }
            let expected = self.recordedDigests.removeFirst()
            guard echoed == expected.bytes else { throw .sendmeDigestMismatch }
        case .unrecognized(let version, _):
            throw .unacceptableSendmeVersion(version)
        }
        try self.window.receivedSendme()
    }
}

/// The receiving side of circuit-level flow control: decides when to SENDME and what digest it carries.
public struct CircuitDeliverWindow: Hashable, Sendable {
    public private(set) var window: DeliverWindow

    public init(_ parameters: FlowControlParameters = .circuit) {
        self.window = DeliverWindow(parameters)
    }

    /// Account for one received flow-controlled cell whose running digest (after the cell) is `digest`.
    /// Returns the SENDME payload to send now, if one is due; the window is refilled at once.
    public mutating func didReceive(digest: SendmeDigest?) throws(FlowControlViolation) -> Sendme? {
        guard try self.window.didReceive() else { return nil }
        self.window.didSendSendme()
        if let digest { return .v1(digest: digest.bytes) }
        return .v0
    }
}

/// Which windows a relay command's cells consume. Only DATA counts in tor; an application's bulk
/// commands (`ApplicationCommands.bulk`) count toward the circuit window only.
public struct FlowControlClass: Hashable, Sendable {
    public var countsTowardCircuitWindow: Bool
    public var countsTowardStreamWindow: Bool

    public static let none = FlowControlClass(countsTowardCircuitWindow: false, countsTowardStreamWindow: false)
    public static let circuitOnly = FlowControlClass(countsTowardCircuitWindow: true, countsTowardStreamWindow: false)
    public static let circuitAndStream = FlowControlClass(countsTowardCircuitWindow: true, countsTowardStreamWindow: true)

}

extension ApplicationCommands {
    /// Which flow-control windows a cell with this command consumes.
    public func flowControl(of command: RelayCommand) -> FlowControlClass {
        if command == .data { return .circuitAndStream }
        return self.bulk.contains(command.rawValue) ? .circuitOnly : .none
    }

    /// Whether a body longer than one cell may be split into several cells (DATA and bulk commands);
    /// splitting any other message would change its meaning.
    public func splits(_ command: RelayCommand) -> Bool { self.flowControl(of: command).countsTowardCircuitWindow }
}
