import FacilitatorNode
import Foundation
import Logging
import TestSupport
import Testing

/// The node in this process: parts up in order, a bind failure named and undone, stop in reverse.
@Suite(.serialized) struct FacilitatorNodeTests {
    static func settings(_ dir: TemporaryDirectory, relayPort: Int) -> FacilitatorNodeSettings {
        var s = FacilitatorNodeSettings()
        s.dataDirectory = dir.url.appendingPathComponent("data").path
        s.blocklistDatabase = dir.url.appendingPathComponent("blocklists.sqlite").path
        s.relayPort = relayPort
        // swift-metrics is bootstrapped once per process, and the blocklist tests own it here.
        s.metricsListen = nil
        return s
    }

    @Test(.privateNetwork)
    func startsStopsAndNamesABusyRelayPort() async throws {
        let dir = try TemporaryDirectory("facilitator-node")
        let port = Int(freePort())
        let node = try await FacilitatorNode.start(Self.settings(dir, relayPort: port), logger: Logger(label: "test"))
        let spec = try #require(node.relaySpec)
        #expect(spec.hasPrefix("127.0.0.1:\(port):"), "\(spec)")
        #expect(node.metrics == nil && node.metricsURL == nil)

        // The same port again: the relay step fails, by name, after engine and blocklists were up.
        let other = try TemporaryDirectory("facilitator-node-busy")
        await #expect {
            _ = try await FacilitatorNode.start(Self.settings(other, relayPort: port), logger: Logger(label: "test"))
        } throws: { error in
            "\(error)".hasPrefix("cannot start the relay on 127.0.0.1:\(port): ")
        }
        await node.shutdown()
        await node.shutdown()  // once only

        // The identity persists: a restart on the same data directory is the same relay.
        let again = try await FacilitatorNode.start(Self.settings(dir, relayPort: port), logger: Logger(label: "test"))
        #expect(again.relaySpec == spec)
        await again.shutdown()
    }
}
