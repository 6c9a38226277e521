import Foundation

/// The path of a product built beside the test bundle (.build/<config>/NAME), nil if it is not built.
/// Tests that run a real executable (`facilitatord`, `peersm`) need `swift build` to have made it.
public func builtExecutable(_ name: String) -> String? {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let candidate = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name).path
    return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
}
