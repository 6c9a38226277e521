// OnionRouting module.
