import ArgumentParser
import FacilitatorNode

/// `facilitatord config …`: the config file as the daemon's key table declares it.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show the config file's keys.",
        subcommands: [Sample.self])

    struct Sample: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the sample config: every key at its default, with what it does.",
            discussion: "This is etc/facilitatord.toml: `facilitatord config sample > etc/facilitatord.toml` regenerates it.")

        func run() {
            print(ConfigFile.sample(), terminator: "")
        }
    }
}
