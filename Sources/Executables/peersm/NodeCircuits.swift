import OnionRouting
import Requester

/// Circuits over real TLS links to the relays named on the command line. The TLS node runtime
/// (Transport/OnionTransport/Node: `OnionClient`) is being written on another branch; until it is
/// merged this returns nil and `peersm fetch` says so.
func makeNodeCircuitProvider(_ hops: [CircuitHop]) -> (any CircuitProvider)? {
    nil
}
