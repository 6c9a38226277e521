import NetBasics
import NIOCore
import TorCells
import TorCrypto

/// Where an EXTEND2 asks us to go, from its link specifiers.
public struct ExtendTarget: Hashable, Sendable {
    public var address: IPv4Address
    public var port: UInt16
    public var rsaIdentity: RSAIdentity
    public var ed25519Identity: Ed25519Identity?
    /// The optional IPv6 OR address ([01] link specifier); port 0 when absent.
    public var ipv6Address: IPv6Address?
    public var ipv6Port: UInt16 = 0

    public init(address: IPv4Address, port: UInt16, rsaIdentity: RSAIdentity, ed25519Identity: Ed25519Identity?) {
        self.address = address
        self.port = port
        self.rsaIdentity = rsaIdentity
        self.ed25519Identity = ed25519Identity
    }

    /// Read the link specifiers; tor requires an IPv4 address and an RSA identity (tor-spec §5.1.2).
    init(linkSpecifiers: [LinkSpecifier]) throws(CircuitFailure) {
        var v4: (IPv4Address, UInt16)?
        var v6: (IPv6Address, UInt16)?
        var rsa: RSAIdentity?
        var ed: Ed25519Identity?
        for spec in linkSpecifiers {
            switch spec {
            case .ipv4(let a, let port): if v4 == nil { v4 = (a, port) }
            case .ipv6(let a, let port): if v6 == nil { v6 = (a, port) }
            case .rsaIdentity(let id): if rsa == nil { rsa = try? RSAIdentity(bytes: id) }
            case .ed25519Identity(let id): if ed == nil { ed = try? Ed25519Identity(bytes: id) }
            case .unknown: break
            }
        }
        guard let v4 else { throw .extendRefused("no IPv4 link specifier") }
        guard let rsa else { throw .extendRefused("no RSA identity link specifier") }
        guard v4.1 != 0 else { throw .extendRefused("port 0") }
        self.init(address: v4.0, port: v4.1, rsaIdentity: rsa, ed25519Identity: ed)
        self.ipv6Address = v6?.0
        self.ipv6Port = v6?.1 ?? 0
    }
}

// EXTEND2: checking the target, asking the owner for a channel, then CREATE2 on it.
extension OnionRelay {
    mutating func extend(_ id: RelayCircuitID, _ extend: Extend2, early: Bool) -> [RelayAction] {
        guard early else { return self.close(id, reason: .protocol, failure: .extendNotInRelayEarly, notify: true) }
        guard case .none = self.circuits[id]!.extend, self.circuits[id]!.next == nil else {
            return self.close(id, reason: .protocol, failure: .alreadyExtended, notify: true)
        }
        let target: ExtendTarget
        do { target = try ExtendTarget(linkSpecifiers: extend.linkSpecifiers) } catch {
            return self.close(id, reason: .protocol, failure: error, notify: true)
        }
        if let refusal = self.extendRefusal(target, from: id) {
            return self.close(id, reason: .protocol, failure: .extendRefused(refusal), notify: true)
        }
        self.circuits[id]!.extend = .awaitingChannel(extend.create2)
        return [.openChannel(target, for: id)]
    }

    func extendRefusal(_ target: ExtendTarget, from id: RelayCircuitID) -> String? {
        if target.rsaIdentity == self.configuration.identity { return "extend to ourselves" }
        if let previous = self.channels[id.channel]?.peerIdentity, previous == target.rsaIdentity {
            return "extend back to the previous hop"
        }
        let address = IPAddress.v4(target.address)
        if !address.isPublic && !self.configuration.extendAllowPrivateAddresses {
            return "private address \(target.address)"
        }
        if !self.configuration.extendPolicy.allows(address, port: target.port) {
            return "\(target.address):\(target.port) rejected by extend policy"
        }
        return nil
    }

    /// The channel for a pending EXTEND2 is ready: send CREATE2 on it.
    public mutating func extendChannelReady(_ id: RelayCircuitID, channel: ChannelID) -> [RelayAction] {
        guard let circuit = self.circuits[id], case .awaitingChannel(let create) = circuit.extend else { return [] }
        guard channel != id.channel, self.channels[channel] != nil else {
            return self.close(id, reason: .connectFailed, failure: .extendRefused("no usable channel"), notify: true)
        }
        let nextID: UInt32
        do {
            nextID = try self.channels[channel]!.circuits.openOutbound(.next(id), using: &self.rng)
        } catch {
            return self.close(id, reason: .resourceLimit, failure: .resourceLimit("circuit IDs on \(channel)"), notify: true)
        }
        self.circuits[id]!.next = (channel, nextID)
        self.circuits[id]!.extend = .awaitingCreated
        return [self.cell(.create2(create), circuitID: nextID, on: channel)]
    }

    /// Opening the channel for a pending EXTEND2 failed.
    public mutating func extendChannelFailed(_ id: RelayCircuitID, reason: DestroyReason = .connectFailed) -> [RelayAction] {
        guard let circuit = self.circuits[id], case .awaitingChannel = circuit.extend else { return [] }
        return self.close(id, reason: reason, failure: nil, notify: true)
    }
}
