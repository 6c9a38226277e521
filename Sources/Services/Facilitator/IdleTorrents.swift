import Foundation
import TorrentEngine

/// What queries leave behind for the query that usually follows, by engine name: an info query's
/// torrent hold (`engine.open`), or a finished data query's parked range stream. Bounded so that
/// idle torrents cannot crowd out live queries: at most one hold per name and one parked stream per
/// name and position (requesters fetching the same torrent at once each continue their own), at
/// most `capacity` in all (the oldest goes first when a new one needs the slot), and `evictOldest`
/// lets a query that the engine refused for lack of room (`tooManyTorrents`) free one and retry.
/// Each entry also expires after its linger time, on `clock` (a test's own clock drives it without
/// sleeping). Thread-safe.
final class IdleTorrents: @unchecked Sendable {
    // @unchecked: all state is guarded by `lock`.
    enum Item {
        case hold(TorrentID)
        case parked(RangeReader)
    }
    private struct Entry {
        var name: String
        var item: Item
        var serial: UInt64
        var isHold: Bool { if case .hold = item { true } else { false } }
        /// Whether `other` takes this entry's place: the same name's hold, or its stream parked at the same position.
        func isReplaced(by other: Entry) -> Bool {
            guard name == other.name else { return false }
            switch (item, other.item) {
            case (.hold, .hold): return true
            case (.parked(let mine), .parked(let theirs)): return mine.position == theirs.position
            default: return false
            }
        }
    }

    let capacity: Int
    /// Gives an evicted or expired hold back to the engine.
    private let closeHold: @Sendable (TorrentID) async -> Void
    /// Starts a linger on the clock now and gives what waits for its end.
    private let startLinger: @Sendable (Duration) -> @Sendable () async -> Void
    private let lock = NSLock()
    /// Oldest first; short (at most `capacity`).
    private var entries: [Entry] = []
    private var serial: UInt64 = 0

    init<C: Clock<Duration>>(capacity: Int, clock: C = ContinuousClock(),
                             closeHold: @escaping @Sendable (TorrentID) async -> Void) {
        self.capacity = max(0, capacity)
        // The deadline is read at the put, not when the waiting task starts.
        self.startLinger = { linger in
            let deadline = clock.now.advanced(by: linger)
            return { try? await clock.sleep(until: deadline, tolerance: nil) }
        }
        self.closeHold = closeHold
    }

    var count: Int { lock.withLock { entries.count } }

    /// Whether an info query's hold of `name` is kept; if so its linger restarts (the caller then
    /// needs no hold of its own).
    func refreshHold(_ name: String, for linger: Duration) -> Bool {
        let mine: UInt64? = lock.withLock {
            guard let index = entries.firstIndex(where: { $0.name == name && $0.isHold }) else { return nil }
            var entry = entries.remove(at: index)
            serial += 1
            entry.serial = serial
            entries.append(entry)  // now the newest
            return serial
        }
        guard let mine else { return false }
        expire(mine, after: linger)
        return true
    }

    /// Keeps an info query's hold for `linger`. A hold of the same name already kept is given back.
    func putHold(_ name: String, _ id: TorrentID, for linger: Duration) {
        put(Entry(name: name, item: .hold(id), serial: 0), for: linger)
    }

    /// Gives back the hold of `name` to its caller (whose own stream now holds the torrent).
    func takeHold(_ name: String) -> TorrentID? {
        guard case .hold(let id)? = remove(where: { $0.name == name && $0.isHold }) else { return nil }
        return id
    }

    /// Parks a data query's stream for `linger`. A stream of the same name already parked at the
    /// same position is ended; streams parked elsewhere in the file belong to other requesters.
    func park(_ name: String, _ reader: RangeReader, for linger: Duration) {
        put(Entry(name: name, item: .parked(reader), serial: 0), for: linger)
    }

    func takeParked(_ name: String, at position: UInt64) -> RangeReader? {
        let taken = remove { entry in
            guard entry.name == name, case .parked(let reader) = entry.item else { return false }
            return reader.position == position
        }
        guard case .parked(let reader)? = taken else { return nil }
        return reader
    }

    /// Ends the parked stream of `name`, if any.
    func dropParked(_ name: String) {
        _ = remove(where: { $0.name == name && !$0.isHold })
    }

    /// Frees the oldest entry (for a live query the engine has no room for). False if none was left.
    func evictOldest() async -> Bool {
        let victim: Entry? = lock.withLock { entries.isEmpty ? nil : entries.removeFirst() }
        guard let victim else { return false }
        await release([victim])
        return true
    }

    private func put(_ new: Entry, for linger: Duration) {
        guard capacity > 0 else {
            Task { await self.release([new]) }
            return
        }
        let (victims, mine): ([Entry], UInt64) = lock.withLock {
            var victims: [Entry] = []
            if let index = entries.firstIndex(where: { $0.isReplaced(by: new) }) {
                victims.append(entries.remove(at: index))
            }
            while entries.count >= capacity { victims.append(entries.removeFirst()) }
            serial += 1
            var entry = new
            entry.serial = serial
            entries.append(entry)
            return (victims, serial)
        }
        if !victims.isEmpty { Task { await self.release(victims) } }
        expire(mine, after: linger)
    }

    private func expire(_ serial: UInt64, after linger: Duration) {
        let lingerEnds = startLinger(linger)
        Task {
            await lingerEnds()
            let gone: Entry? = self.lock.withLock {
                guard let index = self.entries.firstIndex(where: { $0.serial == serial }) else { return nil }
                return self.entries.remove(at: index)
            }
            if let gone { await self.release([gone]) }
        }
    }

    private func remove(where match: (Entry) -> Bool) -> Item? {
        lock.withLock {
            guard let index = entries.firstIndex(where: match) else { return nil }
            return entries.remove(at: index).item
        }
    }

    /// Holds go back to the engine; a parked reader is dropped here, outside the lock, which ends
    /// its engine stream.
    private func release(_ victims: [Entry]) async {
        for victim in victims {
            if case .hold(let id) = victim.item { await closeHold(id) }
        }
    }
}
