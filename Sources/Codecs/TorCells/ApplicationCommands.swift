/// Relay commands that an application protocol above the Tor layers defines (tor-spec leaves the
/// numbers unassigned). The Tor layers never name them: the application passes this value in, and
/// every command it does not list is treated as tor-spec says for an unknown command.
public struct ApplicationCommands: Hashable, Sendable {
    /// Commands handed to the application: at the last hop by the relay, at the client on its streams.
    /// On stream 0 they are circuit-level messages.
    public var commands: Set<UInt8>
    /// Of `commands`, those that open a stream when they reach the relay on an unknown stream ID. Any
    /// other application command on an unknown stream is dropped: it is a late message for a stream the
    /// application already ended, and opening a stream for it would hold the ID until a RELAY_END that
    /// may never come.
    public var opening: Set<UInt8>
    /// Of `commands`, the bulk ones: their cells count toward the circuit window (not the stream window)
    /// and bodies longer than one cell are split, as for DATA.
    public var bulk: Set<UInt8>

    public init(commands: Set<UInt8>, opening: Set<UInt8> = [], bulk: Set<UInt8> = []) {
        precondition(opening.isSubset(of: commands) && bulk.isSubset(of: commands), "opening and bulk are application commands")
        self.commands = commands
        self.opening = opening
        self.bulk = bulk
    }

    /// No application: every non-tor command is unknown.
    public static let none = ApplicationCommands(commands: [])

    public func contains(_ command: RelayCommand) -> Bool { self.commands.contains(command.rawValue) }
}
