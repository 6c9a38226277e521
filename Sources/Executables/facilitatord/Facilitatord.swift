import ArgumentParser

/// `facilitatord`: the Peersm facilitator daemon and its administration commands. Each concern is
/// one subcommand group; the daemon itself becomes the `run` subcommand.
@main
struct Facilitatord: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "facilitatord",
        abstract: "The Peersm facilitator: fetches BitTorrent content for anonymous peers over onion circuits.",
        discussion: """
            `facilitatord run --config FILE` runs the relay and facilitator (see etc/facilitatord.toml, \
            or `facilitatord config sample`).
            Administration commands work on the daemon's SQLite database (--db, or $\(DatabaseOptions.environmentKey), \
            default \(DatabaseOptions.defaultPath)).
            """,
        subcommands: [RunCommand.self, BlocklistCommand.self, ConfigCommand.self])
}
