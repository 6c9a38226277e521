import Foundation
import Testbed
#if canImport(Glibc)
import Glibc
#endif

public enum TorControlError: Error, CustomStringConvertible {
    case connect(UInt16, Int32)
    case io(String)
    case refused(String)

    public var description: String {
        switch self {
        case .connect(let port, let errno): return "cannot connect to tor's ControlPort 127.0.0.1:\(port) (errno \(errno))"
        case .io(let why): return "tor control connection: \(why)"
        case .refused(let reply): return "tor control refused: \(reply)"
        }
    }
}

/// A tor's byte counters (`GETINFO traffic/read traffic/written`).
public struct TorTraffic: Sendable, Equatable {
    public var read: UInt64
    public var written: UInt64
    public init(read: UInt64, written: UInt64) {
        self.read = read
        self.written = written
    }
}

/// The few control-port questions tests ask a tor of a `TorTestNetwork` (control-spec.txt): one
/// connection per call, `AUTHENTICATE` with no secret (the harness sets `CookieAuthentication 0`
/// and no password), then `GETINFO`. Loopback only, answers in milliseconds: plain blocking
/// sockets with a receive timeout.
public enum TorControl {
    /// `GETINFO key…` on the tor whose ControlPort is `port`: the values by key (single-line values;
    /// what tests read are counters such as `traffic/written`).
    public static func getInfo(port: UInt16, _ keys: [String], timeout: Duration = .seconds(5)) throws -> [String: String] {
        let fd = try connect(port: port, timeout: timeout)
        defer { close(fd) }
        try send(fd, "AUTHENTICATE\r\n")
        let auth = try readReply(fd)
        guard auth.last?.hasPrefix("250") == true else { throw TorControlError.refused(auth.joined(separator: " | ")) }
        try send(fd, "GETINFO \(keys.joined(separator: " "))\r\n")
        let reply = try readReply(fd)
        guard reply.last?.hasPrefix("250 ") == true else { throw TorControlError.refused(reply.joined(separator: " | ")) }
        var values: [String: String] = [:]
        for line in reply where line.hasPrefix("250-") {
            let pair = line.dropFirst(4).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { values[String(pair[0])] = String(pair[1]) }
        }
        try? send(fd, "QUIT\r\n")
        return values
    }

    /// Bytes the tor has read and written on all its connections (`traffic/read`, `traffic/written`).
    /// Loopback connections count because `TestingTorNetwork 1` sets `CountPrivateBandwidth 1`.
    public static func traffic(port: UInt16) throws -> TorTraffic {
        let info = try getInfo(port: port, ["traffic/read", "traffic/written"])
        guard let read = info["traffic/read"].flatMap(UInt64.init), let written = info["traffic/written"].flatMap(UInt64.init) else {
            throw TorControlError.io("no traffic counters in \(info)")
        }
        return TorTraffic(read: read, written: written)
    }

    private static func connect(port: UInt16, timeout: Duration) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TorControlError.connect(port, errno) }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let error = errno
            close(fd)
            throw TorControlError.connect(port, error)
        }
        return fd
    }

    private static func send(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TorControlError.io("send failed (errno \(errno))") }
            sent += n
        }
    }

    /// Lines of one reply: up to and including the line whose status code is followed by a space.
    private static func readReply(_ fd: Int32) throws -> [String] {
        var lines: [String] = []
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                let text = String(decoding: line, as: UTF8.self)
                lines.append(text)
                if text.count >= 4, Array(text.utf8)[3] == UInt8(ascii: " ") { return lines }
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw TorControlError.io(n == 0 ? "closed by tor" : "recv failed or timed out (errno \(errno))") }
            pending += buffer[0..<n]
        }
    }
}
