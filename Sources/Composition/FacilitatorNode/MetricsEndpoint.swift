import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import TorrentEngine

/// The node's Prometheus scrape endpoint: `GET /metrics` in the text exposition format, served
/// from the registry that backs every swift-metrics instrument of the services (facilitator streams
/// and DB_END reasons, blocklist ranges, blocked peers, spies). Scrapes are rare and tiny, so one
/// HTTP/1.1 handler on the relay's event loop group is enough.
public final class MetricsEndpoint: Sendable {
    public let localAddress: SocketAddress
    private let channel: any Channel

    /// Serves `registry` on `host:port`.
    /// `refresh` runs before each scrape, for values that are read rather than pushed (engine stats).
    static func start(host: String, port: Int, registry: PrometheusCollectorRegistry,
                      refresh: @escaping @Sendable () async -> Void,
                      group: any EventLoopGroup, logger: Logger) async throws -> MetricsEndpoint {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(ScrapeHandler(registry: registry, refresh: refresh, logger: logger))
                }
            }
            .bind(host: host, port: port).get()
        return MetricsEndpoint(channel: channel)
    }

    private init(channel: any Channel) {
        self.channel = channel
        self.localAddress = channel.localAddress!
    }

    public func shutdown() async {
        try? await channel.close()
    }
}

/// Pushes the torrent engine's session counters into gauges at scrape time. The upload gauge is
/// the free-rider invariant made visible: it must stay 0.
struct EngineGauges: Sendable {
    private let uploaded = Gauge(label: "peersm_torrent_payload_uploaded_bytes")
    private let downloaded = Gauge(label: "peersm_torrent_payload_downloaded_bytes")
    private let store = Gauge(label: "peersm_torrent_memory_store_bytes")
    private let storePeak = Gauge(label: "peersm_torrent_memory_store_peak_bytes")
    private let refused = Gauge(label: "peersm_torrent_requests_refused")
    private let torrents = Gauge(label: "peersm_torrent_active_torrents")

    func update(from engine: TorrentEngine) async {
        guard let s = try? await engine.sessionStats() else { return }
        uploaded.record(s.payloadUploaded)
        downloaded.record(s.payloadDownloaded)
        store.record(s.storeBytes)
        storePeak.record(s.storePeakBytes)
        refused.record(s.requestsRefused)
        torrents.record(s.torrents)
    }
}

private final class ScrapeHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: NIO confines the handler to its channel's event loop.
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let refresh: @Sendable () async -> Void
    private let logger: Logger
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, refresh: @escaping @Sendable () async -> Void, logger: Logger) {
        self.registry = registry
        self.refresh = refresh
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            guard path == "/metrics" else {
                return respond(context, head, .notFound, "only /metrics is served here\n")
            }
            guard head.method == .GET || head.method == .HEAD else {
                return respond(context, head, .methodNotAllowed, "use GET\n", extra: [("Allow", "GET, HEAD")])
            }
            let loop = context.eventLoop
            let box = NIOLoopBound((self, context), eventLoop: loop)
            let (refresh, registry) = (self.refresh, self.registry)
            Task {
                await refresh()
                let body = registry.emitToString()
                loop.execute {
                    let (handler, context) = box.value
                    handler.respond(context, head, .ok, body,
                                    contentType: "text/plain; version=0.0.4; charset=utf-8")
                }
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus,
                         _ body: String, contentType: String = "text/plain; charset=utf-8",
                         extra: [(String, String)] = []) {
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(body.utf8.count)")] + extra)
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                      promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        }
        let keepAlive = request.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.debug("metrics connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
