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
        let client = try await OnionClient.connect(to: first, on: eventLoopGroup.next(), timeout: buildTimeout)
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
        var iterator = stream.makeAsyncIterator()
        let inbound = AsyncThrowingStream<DBInbound, Error>(unfolding: {
            do {
                guard let message = try await iterator.next() else { return nil }
                return DBInbound(command: message.command.rawValue, body: message.body)
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
