import NetBasics
import Testing

@Suite struct HostPortTests {
    @Test func splitsHostAndPort() {
        func parse(_ s: String) -> String? { HostPort.parse(s).map { "\($0.host) \($0.port)" } }
        #expect(parse("127.0.0.1:6881") == "127.0.0.1 6881")
        #expect(parse("[::1]:80") == "::1 80")
        #expect(parse("::1:80") == "::1 80", "the port is after the last ':'")
        #expect(parse("router.example:65535") == "router.example 65535")
        for bad in ["host", ":1", "h:0", "h:65536", "h:-1", "h:+1x", "[]:1", "a b:1", "h:", ""] {
            #expect(parse(bad) == nil, "\(bad)")
        }
    }
}
