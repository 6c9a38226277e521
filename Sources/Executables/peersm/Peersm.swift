import ArgumentParser
import Foundation

@main
struct Peersm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peersm",
        abstract: "Fetch BitTorrent content anonymously through a Peersm facilitator, over onion circuits.",
        discussion: """
            A requester builds a Tor-protocol circuit whose last hop is a facilitator, asks it for a
            torrent (infohash or magnet link) with DB_QUERY, and receives the file as signed DB_DATA
            relay cells. Every 62 KB block is checked against the facilitator's Ed25519 signature
            before it is written. See docs/PROTOCOL.md.

            Start with scripts/demo (`peersm-demo`): everything on this machine, loopback only.
            """,
        subcommands: [Fetch.self])
}
