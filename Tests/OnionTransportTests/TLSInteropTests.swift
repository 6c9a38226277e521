import Foundation
import NetBasics
import NIOCore
import NIOPosix
import OnionTransport
import TestSupport
import Testing

/// Our TLS against a third-party implementation: the `openssl` CLI's s_server and s_client, on
/// 127.0.0.1, over TLS 1.2 and 1.3.
@Suite struct TLSInteropTests {
    static let versions = ["-tls1_2", "-tls1_3"]

    /// Our client → `openssl s_server -rev` (which answers each line reversed).
    @Test(arguments: versions)
    func ourClientToOpenSSLServer(version: String) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let cert = try TestCertificate.shared()
        let dir = try TemporaryDirectory("tls-s_server")
        try cert.write(to: dir.url)
        let port = freePort()
        let server = try ChildProcess("openssl", ["s_server", "-accept", "127.0.0.1:\(port)", "-key", "key.pem",
                                                  "-cert", "cert.pem", "-rev", "-naccept", "1", version],
                                      directory: dir.url, name: "s_server")
        defer { server.stop() }
        try await server.waitForLog(containing: "ACCEPT", timeout: .seconds(20))

        let line = "hello over a tor link\n"
        let (client, peer) = try await connectTLSClient(group: group, port: Int(port), context: try TLSContext.client()) { loop in
            TLSTestPeer(eventLoop: loop, expected: line.utf8.count)
        }
        try await client.writeAndFlush(ByteBuffer(string: line))
        let echoed = try await peer.received.futureResult.get(within: 20, "s_server's reversed line")
        #expect(String(buffer: echoed) == String(line.dropLast().reversed()) + "\n")

        let event = try await peer.handshake.futureResult.get(within: 5, "handshake")
        #expect(event.peerCertificateDER == cert.certificateDER)
        #expect(event.protocolVersion == (version == "-tls1_2" ? "TLSv1.2" : "TLSv1.3"))
        try await client.close()
    }

    /// `openssl s_client` → our server: bytes both ways, the certificate it saw, and its
    /// keying-material exporter against ours.
    @Test(arguments: versions)
    func openSSLClientToOurServer(version: String) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let cert = try TestCertificate.shared()
        let ping = "ping from openssl\n", pong = "pong from swift\n"
        let server = try await TLSTestServer(group: group, context: try cert.serverContext()) { loop in
            let peer = TLSTestPeer(eventLoop: loop, expected: ping.utf8.count)
            peer.reply = ByteBuffer(string: pong)
            peer.closeAfterReply = true // close_notify ends s_client
            return peer
        }

        let label = "EXPORTER-peersm-interop"
        let dir = try TemporaryDirectory("tls-s_client")
        let result = try await runProcess(
            "openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-ign_eof", version,
                        "-keymatexport", label, "-keymatexportlen", "32"],
            stdin: ping, in: dir.url, timeout: .seconds(30))
        #expect(result.status == 0, "s_client failed: \(result.stderr)")
        #expect(result.stdout.contains(pong))

        let peer = try await server.peer(0)
        let got = try await peer.received.futureResult.get(within: 5, "s_client's bytes")
        #expect(String(buffer: got) == ping)
        let event = try await peer.handshake.futureResult.get(within: 5, "handshake")
        #expect(event.protocolVersion == (version == "-tls1_2" ? "TLSv1.2" : "TLSv1.3"))

        // Link policy as a third party sees it: no session ticket (s_client prints one that a
        // default s_server issues under TLS 1.2), no compression.
        #expect(!result.stdout.contains("TLS session ticket:"))
        #expect(result.stdout.contains("Compression: NONE"))

        // s_client prints the server certificate it received and the exporter output (computed
        // without a context, as its -keymatexport does).
        #expect(result.stdout.contains(cert.certificatePEM.trimmingCharacters(in: .whitespacesAndNewlines)))
        let printed = try #require(result.stdout.split(separator: "\n")
            .first { $0.contains("Keying material:") }?
            .split(separator: " ").last.map(String.init))
        let ours = try await peer.channel.eventLoop.submit {
            try event.exporter.export(label: label, context: nil, length: 32)
        }.get()
        #expect(printed == Hex.encode(ours, uppercase: true))
        // …and an export with a context differs (TLS 1.2: RFC 5705 distinguishes none from empty).
        let withContext = try await peer.channel.eventLoop.submit {
            try event.exporter.export(label: label, context: [1, 2, 3], length: 32)
        }.get()
        #expect(withContext != ours)
        await server.close()
    }
}

extension TLSInteropTests {
    /// `s_client -reconnect` reconnects five times offering the session; a default s_server
    /// resumes it under TLS 1.2 ("Reused"), ours must not (no session cache, no tickets).
    @Test func openSSLClientCannotResume() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let ping = "ping\n"
        let server = try await TLSTestServer(group: group, context: try TestCertificate.shared().serverContext()) { loop in
            let peer = TLSTestPeer(eventLoop: loop, expected: ping.utf8.count)
            peer.reply = ByteBuffer(string: "pong\n")
            peer.closeAfterReply = true
            return peer
        }
        let dir = try TemporaryDirectory("tls-reconnect")
        let result = try await runProcess(
            "openssl", ["s_client", "-connect", "127.0.0.1:\(server.port)", "-reconnect", "-ign_eof", "-tls1_2"],
            stdin: ping, in: dir.url, timeout: .seconds(30))
        #expect(result.status == 0, "s_client failed: \(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("New, TLSv1.2") }.count == 6)
        #expect(!lines.contains { $0.hasPrefix("Reused,") })
        #expect(result.stdout.contains("pong"))
        await server.close()
    }
}

struct ProcessResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs a tool with `stdin` as its input (then EOF), collecting its output; kills it after `timeout`.
func runProcess(_ tool: String, _ arguments: [String], stdin: String, in directory: URL,
                timeout: Duration) async throws -> ProcessResult {
    guard let exe = ChildProcess.which(tool) else { throw TestSupportError.toolMissing(tool) }
    let outURL = directory.appendingPathComponent("\(tool).out"), errURL = directory.appendingPathComponent("\(tool).err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: exe)
    process.arguments = arguments
    process.currentDirectoryURL = directory
    let input = Pipe()
    process.standardInput = input
    process.standardOutput = try FileHandle(forWritingTo: outURL)
    process.standardError = try FileHandle(forWritingTo: errURL)
    try process.run()
    input.fileHandleForWriting.write(Data(stdin.utf8))
    try input.fileHandleForWriting.close()
    let deadline = ContinuousClock.now + timeout
    while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
        throw TestTimeout(what: "\(tool) \(arguments.joined(separator: " "))")
    }
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus,
                         stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}
