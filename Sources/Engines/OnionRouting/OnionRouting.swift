// OnionRouting: sans-I/O state machines for Tor-protocol channels, circuits and streams.
//
// Nothing here does I/O or reads a clock: inputs are decoded cells and owner events, outputs are
// actions the transport layer (OnionTransport) performs. Channel/ holds the link handshake; Circuits/:
//
//   FlowControl        PackageWindow / DeliverWindow, CircuitPackageWindow (authenticated SENDME v1
//                      digests), CircuitDeliverWindow, ApplicationCommands.flowControl (DATA, bulk count)
//   CircuitMultiplexer circuit-ID halves per channel role, the per-channel circuit table
//   ClientCircuit      OP: CREATE2/CREATE_FAST then EXTEND2 per hop, streams (BEGIN/DATA/END, any relay
//                      command incl. the application's), windows; ClientCircuitMultiplexer routes a channel's cells
//   OnionRelay         OR: every circuit through this relay across its channels: CREATE2/CREATE_FAST
//                      and teardown (OnionRelay.swift), forwarding both ways (+Forwarding), EXTEND2 →
//                      `.openChannel` (+Extend), exit streams → `.connect` (+ExitStreams), application
//                      hook (`.application` / `sendApplicationMessage`, +ApplicationStreams) for the
//                      configured `ApplicationCommands`; OnionRelayConfiguration, RelayAction
//   AddressPolicy      exit and extend policies ("accept 127.0.0.1:*"; default reject)
//   CircuitFailure     the log-worthy reason that goes with every DESTROY/END we send
//
// The owner feeds `receive(cell…)` and its own events (channel opened/closed, TCP connected, bytes read,
// backpressure), then performs each returned action in order.
