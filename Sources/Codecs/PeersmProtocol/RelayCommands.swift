import TorCells

// Peersm's relay commands as the Tor layers carry them. The Tor layers know none of these numbers:
// the services pass `ApplicationCommands.peersm` to the relay and the client.

extension ApplicationCommands {
    /// DB_INFO … DB_SENDME go to the application; DB_QUERY opens a stream at the relay; DB_DATA counts
    /// toward the circuit window, because Peersm clients (node-Tor) acknowledge every received cell with
    /// circuit SENDMEs while pacing each stream with DB_SENDME at the application level.
    public static let peersm = ApplicationCommands(
        commands: Set(PeersmRelayCommand.allCases.map(\.rawValue)),
        opening: [PeersmRelayCommand.dbQuery.rawValue],
        bulk: [PeersmRelayCommand.dbData.rawValue])
}

extension RelayCommand {
    public init(_ command: PeersmRelayCommand) { self.init(command.rawValue) }

    public static let dbInfo = RelayCommand(PeersmRelayCommand.dbInfo)
    public static let dbQuery = RelayCommand(PeersmRelayCommand.dbQuery)
    public static let dbConnected = RelayCommand(PeersmRelayCommand.dbConnected)
    public static let dbData = RelayCommand(PeersmRelayCommand.dbData)
    public static let dbEnd = RelayCommand(PeersmRelayCommand.dbEnd)
    public static let dbSendme = RelayCommand(PeersmRelayCommand.dbSendme)
}
