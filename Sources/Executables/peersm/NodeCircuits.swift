import NIOPosix
import OnionRouting
import PeersmCircuits
import Requester

/// Circuits over real TLS links to the relays named on the command line (node runtime).
func makeNodeCircuitProvider(_ hops: [CircuitHop]) -> any CircuitProvider {
    OnionCircuitProvider(path: hops, eventLoopGroup: MultiThreadedEventLoopGroup.singleton)
}
