import NIOCore
import NIOPosix
import TorCells

/// Opens a TLS connection carrying an `OnionLink`.
enum OnionLinkConnector {
    static let clientTLS = Result { try TLSContext.client() }

    /// - Parameter webSocketPath: connect through the WebSocket bridge transport (GET this path) instead
    ///   of plain TCP.
    static func connect(host: String, port: Int, link: OnionLink, on eventLoop: EventLoop, timeout: TimeAmount,
                        handshakeTimeout: TimeAmount, localAddresses: [NetinfoAddress] = [],
                        webSocketPath: String? = nil) -> EventLoopFuture<Channel> {
        let tls: TLSContext
        do { tls = try self.clientTLS.get() } catch { return eventLoop.makeFailedFuture(error) }
        @Sendable func addLink(_ channel: Channel) throws {
            try channel.pipeline.syncOperations.addHandlers(try OnionLink.pipeline(
                tls: tls, endpoint: link.endpoint, localAddresses: localAddresses, handshakeTimeout: handshakeTimeout))
            try channel.pipeline.syncOperations.addHandler(link)
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                if let webSocketPath {
                    return WebSocketLink.configureClient(
                        channel: channel, host: host, path: webSocketPath, upgradeTimeout: timeout, addStreamHandlers: addLink)
                }
                return channel.eventLoop.makeCompletedFuture { try addLink(channel) }
            }
            .connect(host: host, port: port)
    }
}
