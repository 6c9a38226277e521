import Foundation
import Testbed

extension PrivateNetwork {
    /// Why a peer-starting test is skipped here (for `.enabled(if:)` comments and logs).
    public static let skipReason: Comment =
        "needs a private network namespace: run through scripts/test (unshare -n, loopback only)"
}

#if canImport(Testing)
import Testing
public typealias Comment = Testing.Comment
#else
public typealias Comment = String
#endif
