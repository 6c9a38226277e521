import OnionRouting
import TorCrypto

/// A relay's links: every held link by channel ID, the open ones by their peer's authenticated RSA
/// identity (EXTEND2 reuses them), and the outgoing links still in their handshake with the circuits
/// waiting on each. Confined to the relay server's event loop.
struct RelayLinkRegistry {
    private(set) var links: [ChannelID: OnionLink] = [:]
    private var nextChannelID: UInt64 = 1
    /// Open links by the authenticated RSA identity of their peer.
    private var byIdentity: [RSAIdentity: ChannelID] = [:]
    /// Outgoing links still in their handshake, and the circuits waiting on each.
    private var pendingExtends: [RSAIdentity: (link: ChannelID, waiting: [RelayCircuitID])] = [:]

    var count: Int { self.links.count }
    subscript(id: ChannelID) -> OnionLink? { self.links[id] }

    mutating func allocateChannelID() -> ChannelID {
        defer { self.nextChannelID += 1 }
        return ChannelID(self.nextChannelID)
    }

    mutating func add(_ link: OnionLink) { self.links[link.id] = link }

    /// An open link to `target` whose identities match, if we hold one.
    func openLink(to target: ExtendTarget) -> ChannelID? {
        guard let id = self.byIdentity[target.rsaIdentity], let link = self.links[id], link.isOpen,
            target.ed25519Identity == nil || target.ed25519Identity == link.peerEd25519Identity
        else { return nil }
        return id
    }

    /// If a link to `identity` is already being opened, queue `circuit` on it and return true.
    mutating func waitForPendingLink(to identity: RSAIdentity, circuit: RelayCircuitID) -> Bool {
        guard self.pendingExtends[identity] != nil else { return false }
        self.pendingExtends[identity]!.waiting.append(circuit)
        return true
    }

    /// A new outgoing `link` to `identity`, opened for `circuit`.
    mutating func addPending(_ link: OnionLink, to identity: RSAIdentity, for circuit: RelayCircuitID) {
        self.links[link.id] = link
        self.pendingExtends[identity] = (link.id, [circuit])
    }

    /// A link finished its handshake: index it by identity (unless an open one is already), and
    /// return the circuits that were waiting for it.
    mutating func opened(_ link: OnionLink) -> [RelayCircuitID] {
        guard let identity = link.peerIdentity else { return [] }
        if self.byIdentity[identity] == nil || self.links[self.byIdentity[identity]!]?.isOpen != true {
            self.byIdentity[identity] = link.id
        }
        return self.pendingExtends.removeValue(forKey: identity)?.waiting ?? []
    }

    /// Forget a link. Returns whether it was held, and the circuits that were waiting for it (their
    /// EXTEND2 failed).
    mutating func remove(_ link: OnionLink) -> (wasHeld: Bool, failedExtends: [RelayCircuitID]) {
        let wasHeld = self.links.removeValue(forKey: link.id) != nil
        if let identity = link.peerIdentity, self.byIdentity[identity] == link.id {
            self.byIdentity[identity] = nil
        }
        var failed: [RelayCircuitID] = []
        for (identity, pending) in self.pendingExtends where pending.link == link.id {
            self.pendingExtends[identity] = nil
            failed += pending.waiting
        }
        return (wasHeld, failed)
    }

    /// A circuit is gone: it no longer waits for any link.
    mutating func forget(_ circuit: RelayCircuitID) {
        for (identity, pending) in self.pendingExtends {
            self.pendingExtends[identity]!.waiting = pending.waiting.filter { $0 != circuit }
        }
    }
}
