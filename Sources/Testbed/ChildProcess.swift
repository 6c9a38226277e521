import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum TestbedError: Error, CustomStringConvertible {
    case toolMissing(String)
    case timeout(String)
    case exited(String, Int32, log: String)

    public var description: String {
        switch self {
        case .toolMissing(let t): return "\(t) is not installed (scripts/deps installs it)"
        case .timeout(let what): return "timed out: \(what)"
        case .exited(let what, let code, let log): return "\(what) exited with \(code); log:\n\(log)"
        }
    }
}

/// A third-party program started by a test (tor, aria2c, a python seeder…). Its output goes to a
/// log file in `directory`; it is killed when stopped or when the object goes away, so a failing
/// test leaves no stray peers behind.
public final class ChildProcess: @unchecked Sendable {
    public let name: String
    public let logURL: URL
    private let process = Process()

    /// Finds an executable on PATH (and the usual sbin/bin directories).
    public static func which(_ tool: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    public init(_ tool: String, _ arguments: [String], directory: URL,
                environment: [String: String] = [:], name: String? = nil) throws {
        guard let exe = tool.hasPrefix("/") ? tool : Self.which(tool) else { throw TestbedError.toolMissing(tool) }
        self.name = name ?? (tool as NSString).lastPathComponent
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        logURL = directory.appendingPathComponent("\(self.name).log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try Self.withDefaultSignalMask { try process.run() }
    }

    /// The test runner's threads block SIGTERM/SIGINT, and a spawned child inherits the spawning
    /// thread's mask: tor and the seeders would then ignore a polite stop. Spawn with them unblocked.
    public static func withDefaultSignalMask<T>(_ body: () throws -> T) rethrows -> T {
        var unblock = sigset_t(), previous = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGTERM)
        sigaddset(&unblock, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &unblock, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        return try body()
    }

    public var isRunning: Bool { process.isRunning }
    public var pid: Int32 { process.processIdentifier }
    /// The exit status once it has ended (meaningless while `isRunning`).
    public var exitStatus: Int32 { process.terminationStatus }
    public var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Waits until `predicate` holds on the log (e.g. "Bootstrapped 100%"), failing early if the process dies.
    public func waitForLog(containing needle: String, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if log.contains(needle) { return }
            if !process.isRunning { throw TestbedError.exited(name, process.terminationStatus, log: log) }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestbedError.timeout("\(name) never logged \"\(needle)\"")
    }

    /// SIGTERM, then SIGKILL after a grace period.
    public func stop(grace: Duration = .seconds(3)) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }

    deinit { stop(grace: .milliseconds(500)) }
}

/// Runs a short command to completion and returns its standard output; throws on a non-zero exit.
@discardableResult
public func runTool(_ tool: String, _ arguments: [String], in directory: URL? = nil) throws -> String {
    let r = try runCommand(tool, arguments, in: directory)
    guard r.status == 0 else {
        throw TestbedError.exited("\(tool) \(arguments.joined(separator: " "))", r.status, log: r.err)
    }
    return r.out
}

/// What a finished command printed, and its exit status.
public struct CommandResult: Sendable, CustomStringConvertible {
    public var status: Int32
    public var out: String
    public var err: String
    public var description: String { "exit \(status)\nstdout: \(out)\nstderr: \(err)" }
}

/// Runs a short command to completion, whatever its exit status (for tests of failures).
public func runCommand(_ tool: String, _ arguments: [String], in directory: URL? = nil,
                       environment: [String: String] = [:]) throws -> CommandResult {
    guard let exe = tool.hasPrefix("/") ? tool : ChildProcess.which(tool) else { throw TestbedError.toolMissing(tool) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = arguments
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    if let directory { p.currentDirectoryURL = directory }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try ChildProcess.withDefaultSignalMask { try p.run() }
    // Drain stderr while stdout is read: a tool that fills one pipe while we block on the other
    // would otherwise wait for us forever.
    let errorRead = DispatchGroup()
    nonisolated(unsafe) var errData = Data()
    DispatchQueue.global().async(group: errorRead) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    errorRead.wait()
    p.waitUntilExit()
    return CommandResult(status: p.terminationStatus, out: String(decoding: data, as: UTF8.self),
                         err: String(decoding: errData, as: UTF8.self))
}
