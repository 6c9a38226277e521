/// `host:port` text as configs and magnet links write endpoints: the port after the last ':', an
/// IPv6 host in brackets (`[::1]:6881`, brackets dropped). Not resolved, not judged.
public enum HostPort {
    /// nil when the port is not 1…65535, or the host is empty or holds whitespace.
    public static func parse(_ text: some StringProtocol) -> (host: String, port: UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0 else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty, !host.contains(where: \.isWhitespace) else { return nil }
        return (String(host), port)
    }
}
