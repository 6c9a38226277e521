import ArgumentParser
import Foundation
import NetBasics
import Logging
import OnionRouting
import FetchConsole
import PeersmCircuits
import PeersmProtocol
import Requester

struct Fetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch one file through a facilitator and verify every chunk.",
        discussion: """
            RELAYS is the circuit's path, first hop first; the LAST relay must be a Peersm facilitator.
            Each relay is written

                host:port:rsa_fingerprint_hex:ed25519_identity_base64:ntor_onion_key_base64

            for example

                127.0.0.1:9001:A1B2…(40 hex)…:dGhpcyBpcyBh…(43 b64):bm90IGEgcmVh…(43 b64)

            (the ed25519 field may be '-'). Give several separated by commas, or a file with one per
            line with @FILE (# starts a comment). `facilitatord` prints its own line at start.

            The file info (size, type, the facilitator's signing key) comes first; then the data, in
            queries of up to 31.8 MB. A broken circuit is rebuilt and the transfer resumes from the
            last verified block. Exit status: 0 done and verified; 1 refused (DB_END) or verification
            failure; 2 circuits kept failing; 64 bad arguments.
            """)

    @Argument(help: "A magnet link (magnet:?xt=urn:btih:…) or a 40-hex-digit infohash.")
    var hashName: String

    @Option(name: .long, help: "The circuit path: relay specs separated by commas, or @FILE (see above).")
    var via: String

    @Option(name: [.short, .customLong("output")], help: "Where to write the file.")
    var output: String

    @Option(help: "Chunks (486 bytes) asked per query, 1…65535.")
    var chunksPerQuery: UInt16 = .max

    @Option(help: "New circuits to build after losing one before giving up.")
    var rebuilds = 5

    @Option(help: ArgumentHelp("Seconds a query may go without file info, data or DB_END before its circuit is dropped and rebuilt.",
                               discussion: "Keep it above the facilitator's resolve and stall timeouts (60 s by default), which it reports itself."))
    var idleTimeout = 150

    @Flag(name: [.customShort("c"), .customLong("continue")],
          help: ArgumentHelp("Continue a download an earlier run left (its state is kept in FILE.peersm-part).",
                             discussion: "Only if the facilitator still serves the same file with the same key; else the file is fetched again from the start."))
    var resume = false

    @Flag(help: "No progress bar.")
    var quiet = false

    func run() async throws {
        let name: HashName
        do { name = try parseHashName(hashName) } catch { throw ValidationError("\(error)") }
        let hops: [CircuitHop]
        do { hops = try RelaySpec.parseList(via) } catch { throw ValidationError("\(error)") }
        guard hops.count >= 1 else { throw ValidationError("--via names no relay") }
        let provider = makeNodeCircuitProvider(hops)
        var options = FetchOptions()
        options.chunksPerQuery = max(1, chunksPerQuery)
        options.maxCircuitRebuilds = rebuilds
        guard idleTimeout >= 1 else { throw ValidationError("--idle-timeout must be at least 1 second") }
        options.idleTimeout = .seconds(idleTimeout)
        _ = try await runFetch(Requester(circuits: provider, options: options), name, to: URL(fileURLWithPath: output),
                               resume: resume, quiet: quiet)
    }
}

/// Reads a command-line hash_name: a magnet link, or 40 hex digits (sent as the 20-byte infohash).
func parseHashName(_ text: String) throws -> HashName {
    let s = text.trimmingCharacters(in: .whitespaces)
    if s.hasPrefix("magnet:?") {
        let name = try HashName(magnet: s)
        guard name.infohash != nil else { throw ValidationError("the magnet link has no xt=urn:btih: infohash") }
        return name
    }
    guard s.utf8.count == 40, let bytes = Hex.decode(s) else {
        throw ValidationError("expected a magnet link or a 40-hex-digit infohash, got \"\(s)\"")
    }
    return try HashName(infohash: bytes)
}

