import Foundation

/// Polls `condition` until it holds or `timeout` passes (on the real clock): for an event another
/// task brings about, where a fixed sleep could be outlasted by a loaded machine.
public func eventually(_ timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}
