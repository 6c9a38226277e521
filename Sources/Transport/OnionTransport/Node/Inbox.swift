import NIOCore

/// An event-loop-confined queue between the circuit (producer, on the loop) and an async consumer,
/// with watermarks so the producer can stop the sender (withhold SENDMEs) instead of buffering without
/// bound.
final class Inbox<Element>: @unchecked Sendable {
    private let eventLoop: EventLoop
    private let size: (Element) -> Int
    private let highWatermark: Int
    private let lowWatermark: Int
    private var items = CircularBuffer<Element>()
    private var buffered = 0
    private var terminal: Error??  // nil: open; .some(nil): finished cleanly; .some(error): failed
    private var waiter: EventLoopPromise<Element?>?
    private(set) var isAboveHighWatermark = false
    /// Called on the loop when the buffer crosses the high (true) or back below the low (false) watermark.
    var onPressure: ((Bool) -> Void)?

    init(eventLoop: EventLoop, highWatermark: Int, lowWatermark: Int, size: @escaping (Element) -> Int) {
        self.eventLoop = eventLoop
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
        if let element = self.items.popFirst() {
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
        precondition(self.waiter == nil, "one consumer at a time")
        let promise = self.eventLoop.makePromise(of: Element?.self)
        self.waiter = promise
        return promise.futureResult
    }

    func next() async throws -> Element? {
        try await self.eventLoop.flatSubmit { self.pull() }.get()
    }
}
