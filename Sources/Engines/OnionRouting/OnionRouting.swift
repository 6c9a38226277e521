// OnionRouting: sans-I/O state machines for Tor-protocol channels, circuits and streams.
//
// Circuits/ (this engineer): flow control (`PackageWindow`, `DeliverWindow`, `CircuitPackageWindow`
// with authenticated SENDMEs), circuit-ID allocation and per-channel tables (`CircuitMultiplexer`),
// the client circuit (`ClientCircuit`, `ClientCircuitMultiplexer`), the relay side (`OnionRelay`: CREATE2,
// CREATE_FAST, forwarding, EXTEND2, exit streams, the Peersm application hook) and `AddressPolicy`.
// Channel/ holds the link handshake. Nothing here does I/O or reads a clock: inputs are decoded cells
// and owner events, outputs are actions the transport layer (OnionTransport) performs.
