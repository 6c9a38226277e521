import NIOCore
import OnionRouting
import TorCrypto

/// Static settings of an `OnionRelayServer`: the relay state machine's own configuration plus what
/// the sockets need.
public struct OnionRelayServerConfiguration: Sendable {
    /// TLS certificates, identities and the ntor key. They are authoritative: the server sets
    /// `relay.identity` and `relay.ntorKeys` from them.
    public var keys: RelayKeys
    /// The relay state machine's settings (policies, application commands, limits).
    public var relay: OnionRelayConfiguration
    /// Where the ORPort listens. Loopback unless `allowNonLoopbackBind` is set: a relay reachable from
    /// the network is an explicit decision.
    public var host: String
    /// 0 picks a free port (read it back from `OnionRelayServer.port`).
    public var port: Int
    /// Also accept links over node-Tor's WebSocket bridge transport (TLS inside WebSocket frames) on
    /// this port of `host` (0: a free port; nil: no WebSocket listener).
    public var webSocketPort: Int?
    public var allowNonLoopbackBind: Bool
    public var exitConnectTimeout: TimeAmount
    public var linkHandshakeTimeout: TimeAmount
    /// Stop reading an exit's TCP socket while this many bytes wait for stream window: the relay's
    /// `queueLimits.exitStreamPauseBytes`, where the relay decides against it.
    public var exitReadPauseBytes: Int {
        get { self.relay.queueLimits.exitStreamPauseBytes }
        set { self.relay.queueLimits.exitStreamPauseBytes = newValue }
    }
    /// SO_RCVBUF of exit TCP sockets (the kernel doubles it). Bounds what an exit reads past
    /// `exitReadPauseBytes`: when the destination closes, NIO reads the socket's whole receive buffer
    /// up to EOF whatever autoRead says, and a buffer the kernel autotunes on a fast stream holds MiBs.
    public var exitReceiveBufferBytes: Int
    /// Inbound connections beyond this many held links are refused (closed at accept).
    public var maximumLinks: Int

    /// `relay` defaults to `OnionRelayConfiguration`'s defaults for `keys`; set its fields afterwards.
    public init(
        keys: RelayKeys, relay: OnionRelayConfiguration? = nil, host: String = "127.0.0.1", port: Int = 0,
        webSocketPort: Int? = nil, allowNonLoopbackBind: Bool = false,
        exitConnectTimeout: TimeAmount = .seconds(10),
        linkHandshakeTimeout: TimeAmount = .seconds(30), exitReadPauseBytes: Int? = nil,
        exitReceiveBufferBytes: Int = 128 * 1024,
        maximumLinks: Int = 4096
    ) {
        self.keys = keys
        self.relay = relay ?? OnionRelayConfiguration(identity: keys.fingerprint, ntorKeys: [keys.ntorKey])
        self.host = host
        self.port = port
        self.webSocketPort = webSocketPort
        self.allowNonLoopbackBind = allowNonLoopbackBind
        self.exitConnectTimeout = exitConnectTimeout
        self.linkHandshakeTimeout = linkHandshakeTimeout
        self.exitReceiveBufferBytes = exitReceiveBufferBytes
        self.maximumLinks = maximumLinks
        if let exitReadPauseBytes { self.exitReadPauseBytes = exitReadPauseBytes }
    }
}

public enum OnionRelayServerError: Error, Equatable, Sendable {
    case nonLoopbackBindNotAllowed(String)
    /// An inbound connection arrived while `maximumLinks` links were held.
    case tooManyLinks
}
