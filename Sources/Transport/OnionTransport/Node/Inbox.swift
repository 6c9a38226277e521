import NIOCore

/// A stream was read by two tasks at once.
public enum InboxError: Error, Hashable, Sendable {
    case concurrentConsumers
}

/// An event-loop-confined queue between the circuit (producer, on the loop) and an async consumer,
/// with watermarks so the producer can stop the sender (withhold SENDMEs) instead of buffering without
/// bound.
final class Inbox<Element>: @unchecked Sendable {
    private let eventLoop: EventLoop
    private let size: (Element) -> Int
    /// Joins buffered elements so that one consumer hop takes everything waiting (byte streams: one
    /// ByteBuffer per pull instead of one 498-byte cell per event-loop round trip).
    private let merge: ((inout Element, Element) -> Void)?
    private let highWatermark: Int
    private let lowWatermark: Int
    private var items = CircularBuffer<Element>()
    private var buffered = 0
    private var terminal: Error??  // nil: open; .some(nil): finished cleanly; .some(error): failed
    private var waiter: EventLoopPromise<Element?>?
    private(set) var isAboveHighWatermark = false
    /// Called on the loop when the buffer crosses the high (true) or back below the low (false) watermark.
    var onPressure: ((Bool) -> Void)?

    init(eventLoop: EventLoop, highWatermark: Int, lowWatermark: Int,
         merge: ((inout Element, Element) -> Void)? = nil, size: @escaping (Element) -> Int) {
        self.eventLoop = eventLoop
        self.merge = merge
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
        self.size = size
    }

    var isFinished: Bool { self.terminal != nil }

    func push(_ element: Element) {
        guard self.terminal == nil else { return }
        if let waiter = self.waiter {
            self.waiter = nil
            waiter.succeed(element)
            return
        }
        self.items.append(element)
        self.buffered += self.size(element)
        if !self.isAboveHighWatermark && self.buffered > self.highWatermark {
            self.isAboveHighWatermark = true
            self.onPressure?(true)
        }
    }

    /// No more elements: the consumer gets what is buffered, then nil (or `error`).
    func finish(_ error: Error? = nil) {
        guard self.terminal == nil else { return }
        self.terminal = .some(error)
        if let waiter = self.waiter {
            self.waiter = nil
            if let error { waiter.fail(error) } else { waiter.succeed(nil) }
        }
        self.onPressure = nil
    }

    /// Next element; call on the loop.
    func pull() -> EventLoopFuture<Element?> {
        if var element = self.items.popFirst() {
            if let merge = self.merge {
                while let next = self.items.popFirst() { merge(&element, next) }
            }
            self.buffered -= self.size(element)
            if self.isAboveHighWatermark && self.buffered <= self.lowWatermark {
                self.isAboveHighWatermark = false
                self.onPressure?(false)
            }
            return self.eventLoop.makeSucceededFuture(element)
        }
        if let terminal = self.terminal {
            if let error = terminal { return self.eventLoop.makeFailedFuture(error) }
            return self.eventLoop.makeSucceededFuture(nil)
        }
        // Two tasks iterating one stream at once is a caller bug; refuse it rather than trap.
        guard self.waiter == nil else { return self.eventLoop.makeFailedFuture(InboxError.concurrentConsumers) }
        let promise = self.eventLoop.makePromise(of: Element?.self)
        self.waiter = promise
        return promise.futureResult
    }

    /// Everything buffered (at least one element), in order; nil once finished. Call on the loop.
    /// A consumer of many small elements (one relay message per cell) pays one event-loop round trip
    /// per batch instead of one per element.
    func pullAll() -> EventLoopFuture<[Element]?> {
        guard self.merge == nil, let first = self.items.popFirst() else {
            return self.pull().map { $0.map { [$0] } }
        }
        var batch = [first]
        batch.reserveCapacity(self.items.count + 1)
        while let next = self.items.popFirst() { batch.append(next) }
        self.buffered = 0
        if self.isAboveHighWatermark {
            self.isAboveHighWatermark = false
            self.onPressure?(false)
        }
        return self.eventLoop.makeSucceededFuture(batch)
    }

    func next() async throws -> Element? {
        try await self.eventLoop.flatSubmit { self.pull() }.get()
    }

    func nextBatch() async throws -> [Element]? {
        try await self.eventLoop.flatSubmit { self.pullAll() }.get()
    }
}
