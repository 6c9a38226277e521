import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where a list comes from: a local file or an http(s) URL (the daemon refreshes from it).
public enum BlocklistSource: Sendable, Hashable, CustomStringConvertible {
    case file(String)
    case url(URL)

    /// `http://…`/`https://…` is a URL, `file://…` and anything else a path.
    public init(_ text: String) throws {
        let lower = text.lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            guard let url = URL(string: text), url.host != nil else {
                throw BlocklistError.fetch(source: text, reason: "not a valid URL")
            }
            self = .url(url)
        } else if lower.hasPrefix("file://"), let url = URL(string: text) {
            self = .file(url.standardizedFileURL.path)
        } else if lower.contains("://") {
            throw BlocklistError.fetch(source: text, reason: "only file paths and http(s) URLs are supported")
        } else {
            // Absolute, so that a refresh by the daemon (another working directory) finds it.
            self = .file(URL(fileURLWithPath: text).standardizedFileURL.path)
        }
    }

    public var description: String {
        switch self {
        case .file(let p): return p
        case .url(let u): return u.absoluteString
        }
    }

    /// A list name derived from the source: the file name without `.gz` and format extensions.
    public var defaultListName: String {
        var base: String
        switch self {
        case .file(let p): base = (p as NSString).lastPathComponent
        case .url(let u): base = u.lastPathComponent.isEmpty || u.lastPathComponent == "/" ? (u.host ?? "list") : u.lastPathComponent
        }
        for ext in [".gz", ".p2p", ".dat", ".txt", ".cidr", ".list"] where base.lowercased().hasSuffix(ext) && base.count > ext.count {
            base = String(base.dropLast(ext.count))
        }
        return base.isEmpty ? "list" : base
    }

    /// Format implied by the file name (qBittorrent picks its parser this way); nil = detect from content.
    public var impliedFormat: BlocklistFormat? {
        var name = description.lowercased()
        if name.hasSuffix(".gz") { name = String(name.dropLast(3)) }
        if name.hasSuffix(".p2p") { return .p2p }
        if name.hasSuffix(".dat") { return .dat }
        if name.hasSuffix(".cidr") { return .cidr }
        return nil
    }

    /// Reads the bytes (fetching over http(s) with FoundationNetworking), capped at the parser's size limit.
    public func load(timeout: TimeInterval = 60) async throws -> [UInt8] {
        switch self {
        case .file(let path):
            guard FileManager.default.fileExists(atPath: path) else {
                throw BlocklistError.fetch(source: path, reason: "no such file")
            }
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            if let size = attributes?[.size] as? Int, size > BlocklistParser.maxTextBytes {
                throw BlocklistError.tooLarge(source: path, limit: BlocklistParser.maxTextBytes)
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw BlocklistError.fetch(source: path, reason: "cannot read the file (permissions?)")
            }
            return [UInt8](data)
        case .url(let url):
            let config = URLSessionConfiguration.ephemeral
            config.timeoutIntervalForRequest = timeout
            config.timeoutIntervalForResource = timeout * 5
            let session = URLSession(configuration: config)
            defer { session.finishTasksAndInvalidate() }
            let (data, response): (Data, URLResponse)
            do {
                (data, response) = try await session.data(from: url)
            } catch {
                throw BlocklistError.fetch(source: url.absoluteString, reason: "download failed: \(error.localizedDescription)")
            }
            if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
                throw BlocklistError.fetch(source: url.absoluteString, reason: "server answered HTTP \(http.statusCode)")
            }
            if data.count > BlocklistParser.maxTextBytes {
                throw BlocklistError.tooLarge(source: url.absoluteString, limit: BlocklistParser.maxTextBytes)
            }
            return [UInt8](data)
        }
    }
}
