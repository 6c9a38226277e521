import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Loopback addresses of a test's own, so that suites running at once never share one (peers are
/// counted, blocked and convicted by address). All of 127.0.0.0/8 is loopback on Linux; these come
/// from 127.<1 + pid % 200>.0.1 on, the process id keeping two test processes in one namespace apart.
public enum Loopback {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handedOut: UInt32 = 0   // guarded by `lock`
    private static let base: UInt32 = (127 << 24) | (UInt32(1 + getpid() % 200) << 16)

    /// A fresh address, never handed out before in this process (skipping .0 and .255 endings).
    public static func address() -> String {
        let n: UInt32 = lock.withLock {
            handedOut += 1
            return handedOut
        }
        let value = base + (n / 254) << 8 + n % 254 + 1
        return "127.\((value >> 16) & 0xff).\((value >> 8) & 0xff).\(value & 0xff)"
    }

    /// `count` distinct fresh addresses (e.g. a blocked seeder and an allowed one).
    public static func addresses(_ count: Int) -> [String] { (0..<count).map { _ in address() } }
}

/// Ports `freePort` has handed out, so that two tests asking at once never get the same one.
private let portsLock = NSLock()
nonisolated(unsafe) private var portsHandedOut: Set<String> = []   // "host:port", guarded by `portsLock`

/// A TCP port on `host` that was free a moment ago (bind to port 0, read it, close) and that this
/// process has not handed out before.
public func freePort(host: String = "127.0.0.1") -> UInt16 {
    while true {
        let port = unusedPort(host: host)
        let fresh = portsLock.withLock { portsHandedOut.insert("\(host):\(port)").inserted }
        if fresh || port == 0 { return port }
    }
}

private func unusedPort(host: String) -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    inet_pton(AF_INET, host, &addr.sin_addr)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: addr.sin_port)
}

/// Waits until something accepts TCP connections on host:port.
public func waitForTCP(host: String = "127.0.0.1", port: UInt16, timeout: Duration = .seconds(30)) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(fd)
        if rc == 0 { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestbedError.timeout("nothing listens on \(host):\(port)")
}
