// The onion node runtime: real relays and a real client made of the sans-I/O state machines.
//
//   link pipeline:  socket ⇄ [WebSocket bridge] ⇄ TLSLinkHandler ⇄ LinkHandler (ChannelStateMachine)
//                          ⇄ OnionLink ⇄ owner (OnionRelayServer: OnionRelay / OnionClient: ClientCircuitMultiplexer)
//   exit streams:   OnionRelayServer ⇄ ExitStream (NIO TCP, autoRead off) ⇄ destination
//
// Handlers are thin: bytes ⇄ cells ⇄ state machine, and every protocol decision (handshake, CREATE2,
// EXTEND2, exit policy, windows, SENDMEs, DESTROY/END) is taken by a state machine in OnionRouting.
// Each relay and each client confines its state to one event loop (the circuit state machine spans all
// of its links), so there are no locks; public async entry points hop onto that loop.
//
// Backpressure: flow-control windows bound relayed and buffered cells per circuit (1000) and stream
// (500). An exit stops reading its TCP socket while cells wait for window, and withholds stream SENDMEs
// while its socket is not writable; the client withholds them while its reader lags (`Inbox`), and
// paces writers on the stream's send queue.
