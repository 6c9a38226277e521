// TorCells: a pure codec for the Tor link and relay cell formats (tor-spec §3, §6).
//
// Layers, bottom to top:
//   ChannelCellDecoder / ChannelCellEncoder   framing of fixed and variable-length channel cells
//   ChannelCell + ChannelMessage               a cell's command and payload, parsed per command
//   RelayCellBody                              the 509-byte RELAY payload, with in-place header access
//   RelayCell + RelayMessage                   the decrypted relay header and the per-command body
//
// The module does no I/O, reads no clock and does no cryptography: relay payloads arrive here
// already decrypted, and certificates stay raw bytes. Every decoding entry point throws `CellError`
// on malformed input and never traps.
