// OnionTransport: thin NIO transport for Tor links. It moves bytes; the protocol lives in OnionRouting.
//
//   TCP link:        [socket] ⇄ TLSLinkHandler ⇄ (cell handlers)
//   WebSocket link:  [socket] ⇄ HTTP upgrade → WebSocket frames ⇄ WebSocketByteStreamHandler
//                             ⇄ TLSLinkHandler ⇄ (cell handlers)          (WebSocketLink sets it up)
//
// TLSLinkHandler drives a sans-I/O TLSEngine (OpenSSL through CShims/COpenSSL/cossl_tls.c, for the
// RFC 5705 exporter that AUTHENTICATE type 3 needs) and announces TLSHandshakeCompleted with the
// peer's certificate and the exporter.
