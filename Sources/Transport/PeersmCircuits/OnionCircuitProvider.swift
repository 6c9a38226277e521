import NIOCore
import OnionRouting
import OnionTransport
import PeersmProtocol
import TorCells

/// Circuits over real TLS links (the node runtime's `OnionClient`) through a fixed path whose last
/// hop is the facilitator. Each circuit gets its own link to the first hop, so a broken link costs
/// only the circuit on it.
public struct OnionCircuitProvider: CircuitProvider {
    public let path: [CircuitHop]
    public let eventLoopGroup: EventLoopGroup
    public var buildTimeout: TimeAmount

    public init(path: [CircuitHop], eventLoopGroup: EventLoopGroup, buildTimeout: TimeAmount = .seconds(60)) {
        self.path = path
        self.eventLoopGroup = eventLoopGroup
        self.buildTimeout = buildTimeout
    }

    public func buildCircuit() async throws -> any FacilitatorCircuit {
        guard let first = path.first else { throw CircuitLost("empty path") }
        let client = try await OnionClient.connect(
            to: first, on: eventLoopGroup.next(), applicationCommands: .peersm, timeout: buildTimeout)
        do {
            let circuit = try await client.buildCircuit(through: path, timeout: buildTimeout)
            return NodeFacilitatorCircuit(client: client, circuit: circuit)
        } catch {
            await client.close()
            throw error
        }
    }
}

struct NodeFacilitatorCircuit: FacilitatorCircuit {
    let client: OnionClient
    let circuit: OnionCircuit

    func openStream() async throws -> DBStreamChannel {
        let stream: OnionApplicationStream
        do { stream = try await circuit.openApplicationStream() } catch { throw CircuitLost("\(error)") }
        // Messages are taken from the circuit in batches (one event-loop hop per batch, not per
        // 498-byte DB_DATA) and handed out one by one from this buffer, on the consumer's task.
        let pending = PendingMessages()
        let inbound = AsyncThrowingStream<DBInbound, Error>(unfolding: {
            if let message = pending.popFirst() { return message }
            do {
                guard let batch = try await stream.nextBatch() else { return nil }
                pending.refill(batch)
                return pending.popFirst()
            } catch {
                throw CircuitLost("\(error)")
            }
        })
        return DBStreamChannel(
            streamID: stream.id, inbound: inbound,
            send: { command, body in
                do { try await stream.send(command: RelayCommand(command.rawValue), body: body) } catch {
                    throw CircuitLost("\(error)")
                }
            },
            close: { try? await stream.close() })
    }

    func close() async {
        await circuit.destroy()
        await client.close()
    }
}

/// The rest of the last batch of one stream's messages. Only its single consumer task touches it.
private final class PendingMessages: @unchecked Sendable {
    private var messages: [ApplicationMessage] = []
    private var head = 0

    func popFirst() -> DBInbound? {
        guard head < messages.count else { return nil }
        let message = messages[head]
        head += 1
        return DBInbound(command: message.command.rawValue, body: message.body)
    }

    func refill(_ batch: [ApplicationMessage]) {
        messages = batch
        head = 0
    }
}
