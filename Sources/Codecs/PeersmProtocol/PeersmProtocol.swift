// PeersmProtocol module.
