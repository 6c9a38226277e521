import NIOCore
import TorCells
import TorCrypto

/// Static configuration of the relay side.
public struct OnionRelayConfiguration: Sendable {
    /// Our RSA identity: we refuse to extend to ourselves.
    public var identity: RSAIdentity
    /// Current (and, during rotation, previous) ntor onion keys.
    public var ntorKeys: [NtorSecretKey]
    /// Which (address, port) BEGIN may reach. Default: nothing.
    public var exitPolicy: AddressPolicy
    /// Which (address, port) EXTEND2 may reach.
    public var extendPolicy: AddressPolicy
    /// Allow extending to loopback/private addresses (tor's ExtendAllowPrivateAddresses; test networks).
    public var extendAllowPrivateAddresses: Bool
    /// Relay commands recognised at this hop that are handed to the application, which of them open
    /// a stream, and which count toward the circuit window. Default: none.
    public var applicationCommands: ApplicationCommands
    /// Bytes one circuit may have queued toward the client: the relay pauses its producers at
    /// `pauseBytes` (`RelayAction.pauseProducer`); over `maximumBytes` it destroys the circuit with
    /// RESOURCELIMIT.
    public var queueLimits: CircuitQueueLimits
    /// Lowest SENDME version accepted from clients (0 admits node-Tor's empty SENDMEs).
    public var minimumSendmeVersion: UInt8
    /// Accept BEGIN on a circuit whose previous hop is a client (not an authenticated relay). C tor
    /// refuses, so that it is not used as a one-hop proxy; the application hook is not affected.
    public var allowSingleHopExits: Bool
    /// Circuits one channel may carry; more CREATEs get DESTROY RESOURCELIMIT. Bounds what one peer
    /// can make us hold.
    public var maximumCircuitsPerChannel: Int
    /// Streams (exit and application) one circuit may hold; more get END RESOURCELIMIT.
    public var maximumStreamsPerCircuit: Int

    public init(
        identity: RSAIdentity, ntorKeys: [NtorSecretKey], exitPolicy: AddressPolicy = .rejectAll,
        extendPolicy: AddressPolicy = .acceptAll, extendAllowPrivateAddresses: Bool = false,
        applicationCommands: ApplicationCommands = .none,
        minimumSendmeVersion: UInt8 = 1,
        allowSingleHopExits: Bool = false, maximumCircuitsPerChannel: Int = 8192, maximumStreamsPerCircuit: Int = 1024,
        queueLimits: CircuitQueueLimits = .standard
    ) {
        self.identity = identity
        self.ntorKeys = ntorKeys
        self.exitPolicy = exitPolicy
        self.extendPolicy = extendPolicy
        self.extendAllowPrivateAddresses = extendAllowPrivateAddresses
        self.applicationCommands = applicationCommands
        self.minimumSendmeVersion = minimumSendmeVersion
        self.allowSingleHopExits = allowSingleHopExits
        self.maximumCircuitsPerChannel = maximumCircuitsPerChannel
        self.maximumStreamsPerCircuit = maximumStreamsPerCircuit
        self.queueLimits = queueLimits
    }
}

/// What the relay state machine asks its owner to do.
public enum RelayAction: Hashable, Sendable {
    /// Write this cell on that channel.
    case send(ChannelCell, on: ChannelID)
    /// Find an open channel to `target` (checking its identities) or open one, then call
    /// `extendChannelReady(_:channel:)`, or `extendChannelFailed(_:reason:)`.
    case openChannel(ExtendTarget, for: RelayCircuitID)
    /// Exit: open a TCP connection (the policy allowed it; for a hostname, re-check the resolved address
    /// with `AddressPolicy.allows`), then call `streamConnected` or `streamConnectFailed`.
    case connect(RelayCircuitID, streamID: UInt16, host: String, port: UInt16)
    /// Exit: write these bytes to the stream's TCP connection. Clients may send data optimistically
    /// right after BEGIN, so this can come before the connect completes: buffer it until then.
    case streamData(RelayCircuitID, streamID: UInt16, ByteBuffer)
    /// The stream is gone (END received, protocol violation, or the circuit is gone): the exit closes
    /// its TCP connection, the application forgets its stream.
    case closeStream(RelayCircuitID, streamID: UInt16, EndReason)
    /// Application hook: a relay message with an application command arrived for us.
    /// Answer with `sendApplicationMessage`.
    case application(RelayCircuitID, streamID: UInt16, command: RelayCommand, body: ByteBuffer)
    /// The circuit is gone and all its resources dropped. `failure` is set when we tore it down because
    /// of bad input (log it); nil when a peer sent DESTROY or the owner asked.
    case circuitClosed(RelayCircuitID, DestroyReason, failure: CircuitFailure?)
    /// Backpressure: the producer of `streamID` (an exit's TCP socket reads, or the application for an
    /// application stream or stream 0) must stop: too many bytes wait for window on the circuit (or,
    /// for an exit stream, on the stream). `resumeProducer` follows once they drained; a producer that
    /// keeps going regardless gets its circuit destroyed at `queueLimits.maximumBytes`.
    case pauseProducer(RelayCircuitID, streamID: UInt16)
    /// A paused producer may produce again (its circuit's queue drained below the thresholds).
    case resumeProducer(RelayCircuitID, streamID: UInt16)
    /// An input was ignored (per tor-spec: e.g. a cell for an unknown circuit). Worth a debug log.
    case dropped(ChannelID, circuitID: UInt32, reason: String)
}

/// Errors from the owner's own calls; they do not change any circuit.
public enum OnionRelayError: Error, Hashable, Sendable {
    case unknownCircuit(RelayCircuitID)
    case unknownStream(RelayCircuitID, UInt16)
    case unknownChannel(ChannelID)
    /// A non-data relay message longer than one cell (498 bytes); only DATA and bulk application
    /// commands are split.
    case messageTooLong(RelayCommand, Int)
}
