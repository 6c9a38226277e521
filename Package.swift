// swift-tools-version:6.0
// Peersm facilitator. Layers (bottom → top), one module per concern:
//   C shims      CShims/COpenSSL (streaming AES-CTR, TLS with RFC 5705 exporter, RSA/X.509)
//                CShims/CTorrent (libtorrent 2.0, extern "C")
//   codecs       TorCells, PeersmProtocol            (pure: bytes ⇄ values)
//   crypto       TorCrypto                           (ntor, KDFs, relay layers, certs, keys)
//   engines      OnionRouting (sans-I/O channel/circuit/stream state machines)
//                TorrentEngine (the one Swift owner of the libtorrent session)
//   transport    OnionTransport (thin NIO handlers: TLS link, WebSocket)
//   services     Facilitator, Requester, Blocklists
//   executables  facilitatord, peersm
import PackageDescription

// Flags pkg-config gives for Debian's libtorrent-rasterbar 2.0.8; the shim must match the library's ABI.
let libtorrentDefines: [CXXSetting] = [
    "TORRENT_LINKING_SHARED", "BOOST_ASIO_ENABLE_CANCELIO", "BOOST_ASIO_NO_DEPRECATED",
    "TORRENT_USE_OPENSSL", "TORRENT_USE_LIBCRYPTO", "TORRENT_SSL_PEERS", "OPENSSL_NO_SSL2", "BOOST_ALL_NO_LIB",
].map { .define($0) }

let package = Package(
    name: "peersm-facilitator",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "facilitatord", targets: ["facilitatord"]),
        .executable(name: "peersm", targets: ["peersm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
    ],
    targets: [
        // MARK: C shims
        .target(
            name: "COpenSSL", path: "CShims/COpenSSL",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .target(
            name: "CTorrent", path: "CShims/CTorrent",
            cxxSettings: libtorrentDefines,
            linkerSettings: [.linkedLibrary("torrent-rasterbar"), .linkedLibrary("ssl"), .linkedLibrary("crypto")]),

        // MARK: codecs
        .target(
            name: "TorCells", dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            path: "Sources/Codecs/TorCells"),
        .target(
            name: "PeersmProtocol",
            dependencies: [
                "TorCells",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/Codecs/PeersmProtocol"),

        // MARK: crypto
        .target(
            name: "TorCrypto",
            dependencies: [
                "COpenSSL",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/Crypto/TorCrypto"),

        // MARK: engines
        .target(
            name: "OnionRouting",
            dependencies: [
                "TorCells", "TorCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Engines/OnionRouting"),
        .target(
            name: "TorrentEngine",
            dependencies: ["CTorrent", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Engines/TorrentEngine"),

        // MARK: transport
        .target(
            name: "OnionTransport",
            dependencies: [
                "OnionRouting", "COpenSSL", "TorCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Transport/OnionTransport"),

        // MARK: services
        .target(
            name: "Blocklists",
            dependencies: [
                "TorrentEngine",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Sources/Services/Blocklists"),
        .target(
            name: "Facilitator",
            dependencies: [
                "OnionRouting", "OnionTransport", "PeersmProtocol", "TorrentEngine", "Blocklists",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Sources/Services/Facilitator"),
        .target(
            name: "Requester",
            dependencies: [
                "OnionRouting", "OnionTransport", "PeersmProtocol", "TorCells", "TorCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Services/Requester"),

        // MARK: executables
        .executableTarget(
            name: "facilitatord",
            dependencies: [
                "Facilitator", "Blocklists", "OnionTransport", "TorCrypto", "TorrentEngine",
                "Requester",  // RelaySpec: the spec line printed at start is the one `peersm --via` parses
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Executables/facilitatord"),
        .executableTarget(
            name: "peersm",
            dependencies: [
                "Requester", "Facilitator", "TorrentEngine", "OnionRouting", "OnionTransport", "PeersmProtocol", "TorCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Executables/peersm"),
        // Drives TorrentEngine for scripts/bench-torrent.
        .executableTarget(name: "TorrentBench", dependencies: ["TorrentEngine"], path: "Benchmarks/TorrentBench"),

        // MARK: benchmarks
        .executableTarget(name: "VerifyBench", dependencies: ["PeersmProtocol"], path: "Benchmarks/VerifyBench"),
        .executableTarget(
            name: "RelayCryptoBench",
            dependencies: ["TorCrypto", .product(name: "Crypto", package: "swift-crypto")],
            path: "Benchmarks/RelayCryptoBench"),

        // MARK: tests
        // Shared by the integration tests: private-namespace checks, child processes, tor test network, seeders.
        .target(
            name: "TestSupport",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport"),
        .testTarget(name: "TorCellsTests", dependencies: ["TorCells", "PeersmProtocol", "TestSupport", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "TorCryptoTests", dependencies: ["TorCrypto", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "PeersmProtocolTests", dependencies: ["PeersmProtocol", "TestSupport", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "OnionRoutingTests", dependencies: ["OnionRouting", "PeersmProtocol", "TestSupport", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "OnionTransportTests", dependencies: ["OnionTransport", "PeersmProtocol", "TestSupport"]),
        .testTarget(name: "TorrentEngineTests", dependencies: ["TorrentEngine", "TestSupport"]),
        .testTarget(
            name: "BlocklistsTests",
            dependencies: [
                "Blocklists", "TorrentEngine", "TestSupport",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]),
        // Runs the built facilitatord binary (its config, endpoints and shutdown).
        .testTarget(name: "FacilitatordTests", dependencies: ["TestSupport"]),
        .testTarget(
            name: "FacilitatorTests",
            dependencies: [
                "Facilitator", "Requester", "TestSupport", "TorrentEngine", "PeersmProtocol", "OnionRouting",
                "OnionTransport", "TorCrypto",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(
            name: "InteropTests",
            dependencies: [
                "OnionTransport", "OnionRouting", "TestSupport",
                // RealTorFacilitatorTests: seeder → our facilitator ← C tor middle ← requester.
                "Facilitator", "Requester", "TorrentEngine", "PeersmProtocol", "TorCrypto",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOPosix", package: "swift-nio"),
            ]),
    ],
    swiftLanguageModes: [.v5]
)
