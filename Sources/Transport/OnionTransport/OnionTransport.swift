// OnionTransport module.
