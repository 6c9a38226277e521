import Foundation
import TOMLKit

/// A config the daemon refuses, with the message an operator sees: "FILE: KEY must be …",
/// "FILE: unknown key KEY (known: …)".
public struct ConfigError: Error, CustomStringConvertible {
    public var message: String
    /// The file it came from, when it came from one.
    public var file: String?

    public init(_ message: String) { self.message = message }
    init(key: String, expected: String) { self.init("\(key) must be \(expected)") }

    public var description: String { file.map { "\($0): \(message)" } ?? message }
}

/// The TOML config file, read and written through `ConfigTable`.
public enum ConfigFile {
    /// The settings of the file at `path`; the defaults when `path` is nil.
    public static func load(path: String?) throws -> FacilitatorNodeSettings {
        guard let path else {
            let settings = FacilitatorNodeSettings()
            try settings.validate()
            return settings
        }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigError("cannot read \(path): \(error.localizedDescription)")
        }
        return try parse(text, file: path)
    }

    /// Reads TOML text: unknown keys and values of the wrong kind or out of range are refused by
    /// name, then the cross-key checks of `FacilitatorNodeSettings.validate()` run.
    public static func parse(_ text: String, file: String = "config") throws -> FacilitatorNodeSettings {
        do {
            let root: TOMLTable
            do { root = try TOMLTable(string: text) } catch { throw ConfigError("\(error)") }
            var settings = FacilitatorNodeSettings()
            let sectionNames = ConfigTable.sections.map(\.name).filter { !$0.isEmpty }
            try checkKnown(root, ConfigTable.keys(in: "").map(\.name) + sectionNames, prefix: "")
            for section in ConfigTable.sections {
                let table: TOMLTable
                if section.name.isEmpty {
                    table = root
                } else {
                    guard let value = root[section.name] else { continue }
                    guard let t = value.table else { throw ConfigError(key: section.name, expected: "a table") }
                    try checkKnown(t, ConfigTable.keys(in: section.name).map(\.name), prefix: section.name + ".")
                    table = t
                }
                for key in ConfigTable.keys(in: section.name) {
                    guard let value = table[key.name] else { continue }
                    do {
                        try key.write(&settings, try typed(value, as: key))
                    } catch let rejected as ConfigKey.Rejected {
                        throw ConfigError(key: key.path, expected: rejected.expected)
                    }
                }
            }
            try settings.validate()
            return settings
        } catch var error as ConfigError {
            error.file = file
            throw error
        }
    }

    private static func checkKnown(_ table: TOMLTable, _ known: [String], prefix: String) throws {
        for key in table.keys where !known.contains(key) {
            throw ConfigError("unknown key \(prefix)\(key) (known: \(known.joined(separator: ", ")))")
        }
    }

    /// The TOML value as the key's kind, or the "must be" error naming the key.
    private static func typed(_ value: TOMLValueConvertible, as key: ConfigKey) throws -> ConfigValue {
        let wrongKind = ConfigError(key: key.path, expected: key.expectedKind)
        switch key.kind {
        case .string:
            guard let s = value.string else { throw wrongKind }
            return .string(s)
        case .choice(let allowed):
            guard let s = value.string else { throw wrongKind }
            guard allowed.contains(s) else {
                throw ConfigError(key: key.path, expected: "one of \(allowed.map(ConfigValue.quote).joined(separator: ", "))")
            }
            return .string(s)
        case .bool:
            guard let b = value.bool else { throw wrongKind }
            return .bool(b)
        case .int(let range):
            guard let i = value.int, range.contains(i) else { throw wrongKind }
            return .int(i)
        case .strings:
            guard let array = value.array else { throw wrongKind }
            return .strings(try array.map { guard let s = $0.string else { throw wrongKind }; return s })
        }
    }

    /// Every key with the value in effect, as TOML (`facilitatord run --print-config`). An unset
    /// key shows what it resolves to (the blocklist database's path).
    public static func effective(_ settings: FacilitatorNodeSettings) -> String {
        var lines: [String] = []
        for section in ConfigTable.sections {
            if !section.name.isEmpty { lines.append("[\(section.name)]") }
            for key in ConfigTable.keys(in: section.name) {
                lines.append("\(key.name) = \(key.effectiveValue(in: settings))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The sample file: every key at its default with its doc (`etc/facilitatord.toml`, printed by
    /// `facilitatord config sample`). A key unset by default is shown commented out.
    public static func sample() -> String {
        let defaults = FacilitatorNodeSettings()
        let column = 33
        func comment(_ text: String) -> [String] { text.split(separator: "\n", omittingEmptySubsequences: false).map { "# \($0)" } }
        var lines = comment(ConfigTable.header)
        for section in ConfigTable.sections {
            lines.append("")
            if !section.name.isEmpty { lines.append("[\(section.name)]") }
            if let doc = section.doc { lines += comment(doc) }
            for key in ConfigTable.keys(in: section.name) {
                if let note = key.note {
                    if lines.last?.isEmpty == false { lines.append("") }
                    lines += comment(note)
                }
                let assignment: String
                if let value = key.value(in: defaults) {
                    assignment = "\(key.name) = \(value)"
                } else {
                    assignment = "# \(key.name) = \(key.example ?? .string(""))"
                }
                let docLines = key.doc.isEmpty ? [] : key.doc.split(separator: "\n", omittingEmptySubsequences: false)
                guard let first = docLines.first else { lines.append(assignment); continue }
                let pad = max(column, assignment.count + 3)
                lines.append(assignment.padding(toLength: pad, withPad: " ", startingAt: 0) + "# \(first)")
                for more in docLines.dropFirst() {
                    lines.append(String(repeating: " ", count: pad) + "# \(more)")
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
