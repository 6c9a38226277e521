// swift-tools-version:6.0
// Peersm facilitator. Layers (bottom → top), one module per concern:
//   C shims      CShims/COpenSSL (streaming AES-CTR, TLS with RFC 5705 exporter, RSA/X.509)
//                CShims/CTorrent (libtorrent 2.0, extern "C")
//   codecs       NetBasics (addresses, address classes, hex, magnet links), TorCells, PeersmProtocol (pure)
//   crypto       TorCrypto                           (ntor, KDFs, relay layers, certs, keys)
//   engines      OnionRouting (sans-I/O channel/circuit/stream state machines)
//                TorrentEngine (the one Swift owner of the libtorrent session)
//   transport    OnionTransport (thin NIO handlers: TLS link, WebSocket)
//                PeersmCircuits (circuits to a facilitator: TLS or in-memory LoopbackOnionNetwork)
//   services     Facilitator, Requester, Blocklists
//   composition  FacilitatorNode (the one place a facilitator node is wired, started and stopped, and
//                its declarative config table: used by facilitatord, peersm-demo and the tests)
//   executables  facilitatord, peersm (requester only: links no libtorrent), peersm-demo;
//                FetchConsole (the fetch progress bar both requesters print)
//   testbed      Testbed (third-party programs on loopback, the private-namespace check: the demo and
//                the tests)
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
        .executable(name: "peersm-demo", targets: ["peersm-demo"]),
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
        // Network basics (no I/O): IP addresses and ranges, the address-class table, hex/base32, magnet links.
        .target(name: "NetBasics", path: "Sources/Codecs/NetBasics"),
        .target(
            name: "TorCells", dependencies: ["NetBasics", .product(name: "NIOCore", package: "swift-nio")],
            path: "Sources/Codecs/TorCells"),
        .target(
            name: "PeersmProtocol",
            dependencies: [
                "NetBasics", "TorCells",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/Codecs/PeersmProtocol"),

        // MARK: crypto
        .target(
            name: "TorCrypto",
            dependencies: [
                "COpenSSL", "NetBasics",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/Crypto/TorCrypto"),

        // MARK: engines
        .target(
            name: "OnionRouting",
            dependencies: [
                "NetBasics", "TorCells", "TorCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Engines/OnionRouting"),
        .target(
            name: "TorrentEngine",
            dependencies: ["CTorrent", "NetBasics", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Engines/TorrentEngine"),

        // MARK: transport
        .target(
            name: "OnionTransport",
            dependencies: [
                "NetBasics", "OnionRouting", "COpenSSL", "TorCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Transport/OnionTransport"),
        // Circuits whose last hop is a facilitator: the circuit-provider interface the requester
        // builds on, over TLS links (`OnionCircuitProvider`) or in memory (`LoopbackOnionNetwork`).
        .target(
            name: "PeersmCircuits",
            dependencies: [
                "NetBasics", "OnionRouting", "OnionTransport", "PeersmProtocol", "TorCells", "TorCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Transport/PeersmCircuits"),

        // MARK: services
        .target(
            name: "Blocklists",
            dependencies: [
                "NetBasics", "TorrentEngine",
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
                "NetBasics", "OnionRouting", "OnionTransport", "PeersmProtocol", "TorrentEngine", "Blocklists",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Sources/Services/Facilitator"),
        .target(
            name: "Requester",
            dependencies: [
                "NetBasics", "OnionRouting", "PeersmCircuits", "PeersmProtocol", "TorCells", "TorCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Services/Requester"),

        // MARK: composition
        .target(
            name: "FacilitatorNode",
            dependencies: [
                "Facilitator", "Blocklists", "OnionTransport", "TorCrypto", "TorrentEngine", "NetBasics",
                "Requester",  // RelaySpec (the spec line `peersm --via` parses)
                "PeersmCircuits",  // LoopbackOnionNetwork (in-memory front)
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Composition/FacilitatorNode"),

        // MARK: executables
        .executableTarget(
            name: "facilitatord",
            dependencies: [
                "NetBasics",
                "FacilitatorNode", "Blocklists",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Executables/facilitatord"),
        .target(
            name: "FetchConsole",
            dependencies: ["Requester", "PeersmProtocol", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/Executables/FetchConsole"),
        // The requester: no facilitator, no torrent engine (so no libtorrent) in this binary.
        .executableTarget(
            name: "peersm",
            dependencies: [
                "Requester", "PeersmCircuits", "FetchConsole", "OnionRouting", "PeersmProtocol", "NetBasics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Executables/peersm"),
        .executableTarget(
            name: "peersm-demo",
            dependencies: [
                "FacilitatorNode", "FetchConsole", "Testbed", "Requester", "PeersmCircuits", "OnionRouting", "OnionTransport",
                "PeersmProtocol", "TorCrypto", "NetBasics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Executables/peersm-demo"),
        // Drives TorrentEngine for scripts/bench-torrent.
        .executableTarget(name: "TorrentBench", dependencies: ["TorrentEngine"], path: "Benchmarks/TorrentBench"),

        // MARK: benchmarks
        .executableTarget(name: "VerifyBench", dependencies: ["PeersmProtocol"], path: "Benchmarks/VerifyBench"),
        .executableTarget(
            name: "RelayCryptoBench",
            dependencies: ["TorCrypto", .product(name: "Crypto", package: "swift-crypto")],
            path: "Benchmarks/RelayCryptoBench"),

        // MARK: testbed
        // Child processes, loopback ports, third-party seeders, the private-namespace check.
        .target(name: "Testbed", path: "Sources/Testbed"),

        // MARK: tests
        // Shared by the integration tests: the testbed (re-exported), tor test network, fixtures, peers.
        .target(
            name: "TestSupport",
            dependencies: ["NetBasics", "Testbed", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport"),
        .testTarget(name: "NetBasicsTests", dependencies: ["NetBasics", "TestSupport"]),
        .testTarget(name: "TorCellsTests", dependencies: ["TorCells", "NetBasics", "PeersmProtocol", "TestSupport", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "TorCryptoTests", dependencies: ["TorCrypto", "NetBasics", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "PeersmProtocolTests", dependencies: ["PeersmProtocol", "NetBasics", "TestSupport", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "OnionRoutingTests", dependencies: ["OnionRouting", "NetBasics", "PeersmProtocol", "TorrentEngine", "TestSupport", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "OnionTransportTests", dependencies: ["OnionTransport", "NetBasics", "PeersmProtocol", "TestSupport"]),
        .testTarget(name: "TorrentEngineTests", dependencies: ["TorrentEngine", "NetBasics", "TestSupport"]),
        .testTarget(
            name: "BlocklistsTests",
            dependencies: [
                "Blocklists", "NetBasics", "TorrentEngine", "TestSupport",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]),
        // Runs the built facilitatord binary (its config, endpoints and shutdown).
        .testTarget(name: "FacilitatordTests", dependencies: ["TestSupport"]),
        // The config table against etc/facilitatord.toml, table-driven parsing (no child processes).
        .testTarget(
            name: "FacilitatorNodeTests",
            dependencies: ["FacilitatorNode", "TestSupport", "TorrentEngine", .product(name: "TOMLKit", package: "TOMLKit")]),
        .testTarget(
            name: "FacilitatorTests",
            dependencies: [
                "Facilitator", "FacilitatorNode", "Requester", "PeersmCircuits", "TestSupport", "TorrentEngine", "PeersmProtocol",
                "OnionRouting", "OnionTransport", "TorCrypto", "NetBasics",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        .testTarget(
            name: "InteropTests",
            dependencies: [
                "NetBasics", "OnionTransport", "OnionRouting", "TestSupport",
                // RealTorFacilitatorTests: seeder → our facilitator ← C tor middle ← requester.
                "Facilitator", "Requester", "PeersmCircuits", "TorrentEngine", "PeersmProtocol", "TorCrypto",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOPosix", package: "swift-nio"),
            ]),
    ],
    swiftLanguageModes: [.v5]
)
