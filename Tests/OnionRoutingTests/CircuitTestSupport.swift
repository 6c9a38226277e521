import NetBasics
import NIOCore
import TorCells
import TorCrypto
import TestSupport

@testable import OnionRouting
import PeersmProtocol

/// A test relay's identity and keys (real ntor keys; identities and keys drawn from the test's seed).
struct TestRelayIdentity {
    let rsa: RSAIdentity
    let ed: Ed25519Identity
    let ntor: NtorSecretKey
    let address: IPv4Address
    let port: UInt16

    init(index: Int, rng: inout SplitMix64) throws {
        self.rsa = try RSAIdentity(bytes: (0..<20).map { _ in UInt8.random(in: 0...255, using: &rng) })
        self.ed = try Ed25519Identity(bytes: (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
        self.ntor = try NtorSecretKey(identity: self.rsa, rawPrivateKey: (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
        self.address = IPv4Address(127, 0, 0, UInt8(index + 1))
        self.port = 9001
    }

    var hop: CircuitHop {
        CircuitHop(address: self.address, port: self.port, ntorKey: self.ntor.publicKey, ed25519Identity: self.ed)
    }
}

/// Byte pattern that makes reordering or loss visible.
func pattern(_ count: Int, seed: UInt8) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.reserveCapacity(count)
    for i in 0..<count { buffer.writeInteger(UInt8(truncatingIfNeeded: i &* 31 &+ Int(seed) &+ i >> 9)) }
    return buffer
}

/// A client and N relays wired by in-memory channels. Cells go through a FIFO, like TCP; the test plays
/// the transport: it opens channels when a relay asks, and simulates the exit's TCP connections.
final class TestNetwork {
    enum Node: Hashable { case client, relay(Int) }

    var identities: [TestRelayIdentity] = []
    var relays: [OnionRelay] = []
    var client: ClientCircuitMultiplexer
    let clientChannel = ChannelID(0)
    private var channelEnds: [ChannelID: (Node, Node)] = [:]
    private var nextChannel: UInt64 = 1
    private var inFlight: [(ChannelCell, ChannelID, Node)] = []

    var clientEvents: [(UInt32, ClientCircuitEvent)] = []
    /// Everything relays asked for other than sending cells and opening channels.
    var relayEvents: [(Int, RelayAction)] = []
    var cellsDelivered = 0
    /// Every cell delivered, in order, when `recordCells` is set (for determinism checks).
    var recordCells = false
    private(set) var trace: [ChannelCell] = []
    /// Called for each `.connect`; returns the answer to feed back (nil: the test answers later).
    var onConnect: ((RelayCircuitID, UInt16, String, UInt16) -> ConnectAnswer?)? = nil
    enum ConnectAnswer { case connected(IPAddress?), failed(EndReason) }

    init(relayCount: Int, seed: UInt64 = 1, configure: (Int, inout OnionRelayConfiguration) -> Void = { _, _ in }) throws {
        var rng = SplitMix64(seed: seed)
        for i in 0..<relayCount {
            let identity = try TestRelayIdentity(index: i, rng: &rng)
            var config = OnionRelayConfiguration(
                identity: identity.rsa, ntorKeys: [identity.ntor], extendAllowPrivateAddresses: true,
                applicationCommands: .peersm)
            configure(i, &config)
            self.identities.append(identity)
            self.relays.append(OnionRelay(configuration: config, rng: SplitMix64(seed: seed &+ UInt64(i) &+ 100)))
        }
        self.client = ClientCircuitMultiplexer(
            rng: SplitMix64(seed: seed &+ 7), makeCircuitRNG: { SplitMix64(seed: seed &+ 11) },
            applicationCommands: .peersm)
        self.channelEnds[self.clientChannel] = (.client, .relay(0))
        self.relays[0].channelOpened(self.clientChannel, role: .responder, peerIdentity: nil)
    }

    var path: [CircuitHop] { self.identities.map(\.hop) }

    /// Build a circuit through every relay and run until quiet.
    func buildCircuit(firstHop: FirstHopHandshake = .ntor) throws -> UInt32 {
        let (id, actions) = try self.client.buildCircuit(path: self.path, firstHop: firstHop)
        self.handleClient(id, actions)
        self.run()
        return id
    }

    func clientCall(_ id: UInt32, _ body: (inout ClientCircuit) throws -> [ClientCircuitAction]) throws {
        guard let actions = try self.client.withCircuit(id, body) else { throw TestError("no circuit \(id)") }
        self.handleClient(id, actions)
    }

    func relayCall(_ index: Int, _ body: (inout OnionRelay) throws -> [RelayAction]) rethrows {
        let actions = try body(&self.relays[index])
        self.handleRelay(index, actions)
    }

    /// Deliver cells until nothing is in flight.
    func run(limit: Int = 10_000_000) {
        var index = 0
        while index < self.inFlight.count, self.cellsDelivered < limit {
            let (cell, channel, to) = self.inFlight[index]
            index += 1
            if index > 4096 {
                self.inFlight.removeFirst(index)
                index = 0
            }
            self.cellsDelivered += 1
            if self.recordCells { self.trace.append(cell) }
            switch to {
            case .client:
                switch self.client.receive(cell) {
                case .circuit(let id, let actions): self.handleClient(id, actions)
                case .dropped(let id, let reason): self.clientEvents.append((id, .closed(.none, failure: .unexpected("dropped: \(reason)"))))
                }
            case .relay(let r):
                self.handleRelay(r, self.relays[r].receive(cell, on: channel))
            }
        }
        self.inFlight.removeFirst(index)
    }

    func handleClient(_ id: UInt32, _ actions: [ClientCircuitAction]) {
        for action in actions {
            switch action {
            case .send(let cell): self.inFlight.append((cell, self.clientChannel, .relay(0)))
            case .event(let event): self.clientEvents.append((id, event))
            }
        }
    }

    func handleRelay(_ r: Int, _ actions: [RelayAction]) {
        for action in actions {
            switch action {
            case .send(let cell, let channel):
                guard let ends = self.channelEnds[channel] else { continue }
                let to = ends.0 == .relay(r) ? ends.1 : ends.0
                self.inFlight.append((cell, channel, to))
            case .openChannel(let target, let circuit):
                guard let t = self.identities.firstIndex(where: { $0.rsa == target.rsaIdentity }) else {
                    self.handleRelay(r, self.relays[r].extendChannelFailed(circuit))
                    continue
                }
                let channel = self.channel(between: r, and: t)
                self.handleRelay(r, self.relays[r].extendChannelReady(circuit, channel: channel))
            case .connect(let circuit, let stream, let host, let port):
                self.relayEvents.append((r, action))
                switch self.onConnect?(circuit, stream, host, port) {
                case .connected(let address)?:
                    self.handleRelay(r, try! self.relays[r].streamConnected(circuit, streamID: stream, address: address))
                case .failed(let reason)?:
                    self.handleRelay(r, try! self.relays[r].streamConnectFailed(circuit, streamID: stream, reason: reason))
                case nil: break
                }
            default:
                self.relayEvents.append((r, action))
            }
        }
    }

    /// Reuse a channel between two relays if one exists, as a relay would; else open one.
    private func channel(between a: Int, and b: Int) -> ChannelID {
        if let existing = self.channelEnds.first(where: { $0.value == (.relay(a), .relay(b)) || $0.value == (.relay(b), .relay(a)) }) {
            return existing.key
        }
        let channel = ChannelID(self.nextChannel)
        self.nextChannel += 1
        self.channelEnds[channel] = (.relay(a), .relay(b))
        self.relays[a].channelOpened(channel, role: .initiator, peerIdentity: self.identities[b].rsa)
        self.relays[b].channelOpened(channel, role: .responder, peerIdentity: self.identities[a].rsa)
        return channel
    }

    /// The relays' channel between a and b, if open.
    func existingChannel(_ a: Int, _ b: Int) -> ChannelID? {
        self.channelEnds.first(where: { $0.value == (.relay(a), .relay(b)) || $0.value == (.relay(b), .relay(a)) })?.key
    }

    // Convenience views.
    func events(of id: UInt32) -> [ClientCircuitEvent] { self.clientEvents.filter { $0.0 == id }.map(\.1) }
    func relayActions(_ r: Int) -> [RelayAction] { self.relayEvents.filter { $0.0 == r }.map(\.1) }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
