// TorCrypto module.
