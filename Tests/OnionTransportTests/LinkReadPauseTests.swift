import NIOCore
import NIOEmbedded
import OnionRouting
@testable import OnionTransport
import Testing

/// OnionLink stops reading while a link its cells produce output for cannot take more, so replies
/// and forwarded cells that no window limits do not pile up in NIO's outbound buffer.
@Suite struct LinkReadPauseTests {
    /// Counts the reads that reach the head of the pipeline (the socket).
    final class ReadCounter: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = Any
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    func makeLink() throws -> (EmbeddedChannel, OnionLink, ReadCounter) {
        let counter = ReadCounter()
        let link = OnionLink(id: ChannelID(7), endpoint: .client(expecting: ExpectedPeerIdentity(rsaIdentity: nil)), delegate: nil)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(link)
        return (channel, link, counter)
    }

    @Test func readsPauseWhileTheLinkItselfIsNotWritable() throws {
        let (channel, _, counter) = try makeLink()
        channel.read()
        #expect(counter.reads == 1)
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        channel.read()
        channel.read()
        #expect(counter.reads == 1, "read while the peer does not take our writes")
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(counter.reads == 2, "the held read was not issued on writability")
        channel.read()
        #expect(counter.reads == 3)
    }

    @Test func readsPauseWhileAnyBlockingLinkIsNotWritable() throws {
        let (channel, link, counter) = try makeLink()
        link.setReadBlocked(by: ChannelID(1), true)
        link.setReadBlocked(by: ChannelID(2), true)
        channel.read()
        #expect(counter.reads == 0)
        link.setReadBlocked(by: ChannelID(1), false)
        #expect(counter.reads == 0, "another link still blocks")
        link.setReadBlocked(by: ChannelID(2), false)
        #expect(counter.reads == 1)
        link.setReadBlocked(by: ChannelID(2), false)  // resuming twice issues nothing more
        #expect(counter.reads == 1)
    }
}
