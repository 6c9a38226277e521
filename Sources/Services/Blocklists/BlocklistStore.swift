import Foundation
import GRDB
import NetBasics

/// What the store knows about one imported list.
public struct ListInfo: Hashable, Sendable {
    public var name: String
    public var source: String
    public var format: BlocklistFormat
    public var gzipped: Bool
    public var importedAt: Date
    public var refreshedAt: Date
    /// Valid lines read from the source.
    public var entryCount: Int
    /// Stored ranges after merging overlaps.
    public var rangeCount: Int
    public var ipv4Addresses: UInt64
    public var ipv6Ranges: Int
    public var badLines: Int
    public var allowedLines: Int
}

/// A static-list range that holds an address: the list and its label say why.
public struct ListMatch: Hashable, Sendable {
    public var list: String
    public var source: String
    public var range: IPRange
    public var label: String
}

/// SQLite persistence (GRDB): lists with their source and refresh time, their merged ranges, and
/// detected spies with reasons and expiry. Addresses are 16-byte big-endian BLOBs, so SQLite's
/// memcmp order is numeric order and one index answers "the range starting at or below this IP".
public final class BlocklistStore: Sendable {
    public let path: String
    let db: any DatabaseWriter

    /// Opens (creating if needed) the database at `path` and applies pending migrations. WAL mode
    /// (GRDB's DatabasePool): the CLI can read and write while the daemon holds the file open.
    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.foreignKeysEnabled = true
        config.label = "blocklists"
        config.busyMode = .timeout(10)  // another process (CLI or daemon) writing: wait, don't fail
        db = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(db)
    }

    /// A private in-memory database (tests, dry runs).
    public init() throws {
        path = ":memory:"
        var config = Configuration()
        config.foreignKeysEnabled = true
        db = try DatabaseQueue(configuration: config)
        try Self.migrator.migrate(db)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: lists, ranges, spies") { db in
            try db.create(table: "meta") { t in
                t.primaryKey("key", .text)
                t.column("value", .blob).notNull()
            }
            try db.create(table: "list") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("name", .text).notNull().unique()
                t.column("source", .text).notNull()
                t.column("format", .text).notNull()
                t.column("gzipped", .boolean).notNull()
                t.column("importedAt", .datetime).notNull()
                t.column("refreshedAt", .datetime).notNull()
                t.column("entryCount", .integer).notNull()
                t.column("rangeCount", .integer).notNull()
                t.column("ipv4Addresses", .integer).notNull()
                t.column("ipv6Ranges", .integer).notNull()
                t.column("badLines", .integer).notNull()
                t.column("allowedLines", .integer).notNull()
            }
            try db.create(table: "range") { t in
                t.column("listId", .integer).notNull().references("list", onDelete: .cascade)
                t.column("first", .blob).notNull()
                t.column("last", .blob).notNull()
                t.column("label", .text).notNull()
            }
            try db.create(index: "range_by_list_first", on: "range", columns: ["listId", "first"])
            try db.create(table: "spy") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("address", .blob).notNull()
                t.column("port", .integer)
                t.column("reason", .text).notNull()
                t.column("detail", .text).notNull()
                t.column("torrentTag", .text).notNull()
                t.column("detectedAt", .datetime).notNull()
                t.column("expiresAt", .datetime).notNull()
                t.uniqueKey(["address", "reason", "torrentTag"])
            }
            try db.create(index: "spy_by_expiry", on: "spy", columns: ["expiresAt"])
        }
        return m
    }

    // MARK: change generation

    /// Bumped by every write, so a daemon notices what another process (the CLI) changed.
    public func generation() throws -> Int64 {
        try db.read { db in try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'generation'") ?? 0 }
    }

    static func bumpGeneration(_ db: Database) throws {
        try db.execute(sql: """
            INSERT INTO meta(key, value) VALUES ('generation', 1)
            ON CONFLICT(key) DO UPDATE SET value = value + 1
            """)
    }

    // MARK: installation salt

    /// 32 random bytes made once per database: the salt of every `TorrentTag`, so that the same
    /// torrent is recognisable across detections here but not across installations.
    public func salt() throws -> [UInt8] {
        try db.write { db in
            if let data = try Data.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'torrent-salt'") {
                return [UInt8](data)
            }
            var rng = SystemRandomNumberGenerator()
            let salt = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('torrent-salt', ?)", arguments: [Data(salt)])
            return salt
        }
    }

    // MARK: lists

    /// Stores `entries` (already merged) as list `name`, replacing its previous ranges in one
    /// transaction: readers see the old list or the new one, never half of it. A re-import keeps
    /// the first import time and updates the refresh time.
    @discardableResult
    public func saveList(name: String, source: String, parsed: ParsedBlocklist, merged: [BlocklistEntry], now: Date) throws -> ListInfo {
        try db.write { db in
            let previous = try Row.fetchOne(db, sql: "SELECT id, importedAt FROM list WHERE name = ?", arguments: [name])
            let importedAt: Date = previous?["importedAt"] ?? now
            let v4 = merged.lazy.filter(\.range.isIPv4).reduce(UInt64(0)) { $0 &+ $1.range.addressCount }
            let v6 = merged.lazy.filter { !$0.range.isIPv4 }.count
            let info = ListInfo(name: name, source: source, format: parsed.format, gzipped: parsed.wasGzipped,
                                importedAt: importedAt, refreshedAt: now, entryCount: parsed.entries.count,
                                rangeCount: merged.count, ipv4Addresses: v4, ipv6Ranges: v6,
                                badLines: parsed.issues.count, allowedLines: parsed.allowedLines)
            let id: Int64
            let values: StatementArguments = [
                source, parsed.format.rawValue, parsed.wasGzipped, importedAt, now, info.entryCount, info.rangeCount,
                Int64(clamping: v4), v6, info.badLines, info.allowedLines,
            ]
            if let previous, let oldID: Int64 = previous["id"] {
                id = oldID
                try db.execute(sql: "DELETE FROM range WHERE listId = ?", arguments: [id])
                try db.execute(sql: """
                    UPDATE list SET source = ?, format = ?, gzipped = ?, importedAt = ?, refreshedAt = ?, entryCount = ?,
                    rangeCount = ?, ipv4Addresses = ?, ipv6Ranges = ?, badLines = ?, allowedLines = ? WHERE id = ?
                    """, arguments: values + [id])
            } else {
                try db.execute(sql: """
                    INSERT INTO list(source, format, gzipped, importedAt, refreshedAt, entryCount, rangeCount,
                    ipv4Addresses, ipv6Ranges, badLines, allowedLines, name) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
                    """, arguments: values + [name])
                id = db.lastInsertedRowID
            }
            // Multi-row INSERTs: per-statement overhead, not SQLite, dominated one-row inserts.
            let batch = 64
            let rowSQL = "(?, ?, ?, ?)"
            let full = try db.cachedStatement(sql: "INSERT INTO range(listId, first, last, label) VALUES "
                                              + repeatElement(rowSQL, count: batch).joined(separator: ","))
            var start = 0
            while start < merged.count {
                let chunk = merged[start..<min(start + batch, merged.count)]
                var values: [(any DatabaseValueConvertible)?] = []
                values.reserveCapacity(chunk.count * 4)
                for e in chunk {
                    values += [id, Data(e.range.first.bytes), Data(e.range.last.bytes), e.label] as [(any DatabaseValueConvertible)?]
                }
                let statement = chunk.count == batch ? full : try db.makeStatement(
                    sql: "INSERT INTO range(listId, first, last, label) VALUES "
                        + repeatElement(rowSQL, count: chunk.count).joined(separator: ","))
                statement.setUncheckedArguments(StatementArguments(values))
                try statement.execute()
                start += chunk.count
            }
            try Self.bumpGeneration(db)
            return info
        }
    }

    public func lists() throws -> [ListInfo] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM list ORDER BY name").map(Self.listInfo)
        }
    }

    public func list(named name: String) throws -> ListInfo? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM list WHERE name = ?", arguments: [name]).map(Self.listInfo)
        }
    }

    /// Removes a list and its ranges; false when there was none of that name.
    @discardableResult
    public func removeList(named name: String) throws -> Bool {
        try db.write { db in
            try db.execute(sql: "DELETE FROM list WHERE name = ?", arguments: [name])
            let removed = db.changesCount > 0
            if removed { try Self.bumpGeneration(db) }
            return removed
        }
    }

    /// Every stored range of every list (or of one list), in address order, with its list name.
    public func entries(list name: String? = nil) throws -> [(list: String, entry: BlocklistEntry)] {
        try db.read { db in
            let sql = """
                SELECT list.name, range.first, range.last, range.label FROM range JOIN list ON list.id = range.listId
                \(name == nil ? "" : "WHERE list.name = ?") ORDER BY range.first, list.name
                """
            let rows = try Row.fetchCursor(db, sql: sql, arguments: name.map { [$0] } ?? [])
            var out: [(String, BlocklistEntry)] = []
            while let row = try rows.next() {
                out.append((row[0], BlocklistEntry(range: try Self.range(row[1], row[2]), label: row[3])))
            }
            return out
        }
    }

    /// All static ranges, for building the enforced union.
    public func allRanges() throws -> [IPRange] {
        try db.read { db in
            let rows = try Row.fetchCursor(db, sql: "SELECT first, last FROM range")
            var out: [IPRange] = []
            while let row = try rows.next() { out.append(try Self.range(row[0], row[1])) }
            return out
        }
    }

    /// The ranges of each list that hold `address` (ranges within one list are disjoint, so the one
    /// starting closest below the address is the only candidate per list).
    public func matches(_ address: IPAddress) throws -> [ListMatch] {
        try db.read { db in
            let key = Data(address.bytes)
            let rows = try Row.fetchAll(db, sql: """
                SELECT list.name, list.source, r.first, r.last, r.label FROM list
                JOIN range r ON r.rowid = (SELECT rowid FROM range WHERE listId = list.id AND first <= ?
                                           ORDER BY first DESC LIMIT 1)
                WHERE r.last >= ? ORDER BY list.name
                """, arguments: [key, key])
            return try rows.map { row in
                ListMatch(list: row[0], source: row[1], range: try Self.range(row[2], row[3]), label: row[4])
            }
        }
    }

    // MARK: spies

    /// Records detections. A repeat of the same (address, reason, torrent) refreshes its time,
    /// detail and expiry (the later expiry wins) instead of adding a row.
    public func record(_ detections: [Detection]) throws {
        guard !detections.isEmpty else { return }
        try db.write { db in
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO spy(address, port, reason, detail, torrentTag, detectedAt, expiresAt) VALUES (?,?,?,?,?,?,?)
                ON CONFLICT(address, reason, torrentTag) DO UPDATE SET port = excluded.port, detail = excluded.detail,
                  detectedAt = excluded.detectedAt, expiresAt = max(expiresAt, excluded.expiresAt)
                """)
            for d in detections {
                try upsert.execute(arguments: [Data(d.address.bytes), d.port.map { Int($0) }, d.reason.rawValue, d.detail,
                                               d.torrent.hex, d.detectedAt, d.expiresAt])
            }
            try Self.bumpGeneration(db)
        }
    }

    /// Detections still in force at `now` (optionally only those for one address), newest first.
    public func spies(activeAt now: Date, address: IPAddress? = nil) throws -> [Detection] {
        try db.read { db in
            var sql = "SELECT * FROM spy WHERE expiresAt > ?"
            var args: StatementArguments = [now]
            if let address { sql += " AND address = ?"; args += [Data(address.bytes)] }
            return try Row.fetchAll(db, sql: sql + " ORDER BY detectedAt DESC, address", arguments: args).map { row in
                let addressData: Data = row["address"]
                guard let ip = IPAddress(bytes: addressData), let reason = SpyReason(rawValue: row["reason"]) else {
                    throw DatabaseError(message: "malformed spy row \(row)")
                }
                let port: Int? = row["port"]
                return Detection(address: ip, port: port.map { UInt16(clamping: $0) }, reason: reason, detail: row["detail"],
                                 detectedAt: row["detectedAt"], torrent: TorrentTag(hex: row["torrentTag"]),
                                 expiresAt: row["expiresAt"])
            }
        }
    }

    /// Deletes expired detections; returns how many.
    @discardableResult
    public func purgeExpiredSpies(now: Date) throws -> Int {
        try db.write { db in
            try db.execute(sql: "DELETE FROM spy WHERE expiresAt <= ?", arguments: [now])
            let purged = db.changesCount
            if purged > 0 { try Self.bumpGeneration(db) }
            return purged
        }
    }

    // MARK: row decoding

    static func range(_ first: Data, _ last: Data) throws -> IPRange {
        guard let a = IPAddress(bytes: first), let b = IPAddress(bytes: last), a <= b, a.isIPv4 == b.isIPv4 else {
            throw DatabaseError(message: "malformed range row")
        }
        return IPRange(unchecked: a, b)
    }

    static func listInfo(_ row: Row) throws -> ListInfo {
        guard let format = BlocklistFormat(rawValue: row["format"]) else { throw DatabaseError(message: "unknown list format in \(row)") }
        let v4: Int64 = row["ipv4Addresses"]
        return ListInfo(name: row["name"], source: row["source"], format: format, gzipped: row["gzipped"],
                        importedAt: row["importedAt"], refreshedAt: row["refreshedAt"], entryCount: row["entryCount"],
                        rangeCount: row["rangeCount"], ipv4Addresses: UInt64(max(0, v4)), ipv6Ranges: row["ipv6Ranges"],
                        badLines: row["badLines"], allowedLines: row["allowedLines"])
    }
}
