import NetBasics
import Foundation
import Logging
import NIOCore
import NIOPosix
import OnionRouting
import TorCells
import TorCrypto

// Links: accepted on the ORPort, or opened for EXTEND2 (reusing an open link to the same identity).
extension OnionRelayServer {
    func acceptLink(_ channel: Channel) throws {
        guard !self.isShutDown else { throw ChannelError.ioOnClosedChannel }
        guard self.links.count < self.configuration.maximumLinks else {
            self.logger.warning("refusing a link: \(self.links.count) links held (maximumLinks)")
            throw OnionRelayServerError.tooManyLinks
        }
        let endpoint = ChannelEndpoint.responder(self.configuration.keys)
        let link = OnionLink(id: self.links.allocateChannelID(), endpoint: endpoint, delegate: self)
        self.links.add(link)
        try channel.pipeline.syncOperations.addHandlers(try OnionLink.pipeline(
            tls: self.tlsServer, endpoint: endpoint, localAddresses: self.localNetinfoAddresses,
            handshakeTimeout: self.configuration.linkHandshakeTimeout))
        try channel.pipeline.syncOperations.addHandler(link)
    }

    var localNetinfoAddresses: [NetinfoAddress] {
        IPv4Address(self.configuration.host).map { [.ipv4($0)] } ?? []
    }

    /// EXTEND2 asked for a link to `target`.
    func openChannel(_ target: ExtendTarget, for circuit: RelayCircuitID) {
        if let id = self.links.openLink(to: target) {
            self.perform(self.relay.extendChannelReady(circuit, channel: id))
            return
        }
        if self.links.waitForPendingLink(to: target.rsaIdentity, circuit: circuit) { return }
        let link = OnionLink(
            id: self.links.allocateChannelID(),
            endpoint: .relayInitiator(
                self.configuration.keys,
                expecting: ExpectedPeerIdentity(rsaIdentity: target.rsaIdentity, ed25519Identity: target.ed25519Identity)),
            delegate: self)
        self.links.addPending(link, to: target.rsaIdentity, for: circuit)
        let host = "\(target.address)"
        self.logger.debug("extending to \(host):\(target.port) \(target.rsaIdentity) on \(link.id)")
        OnionLinkConnector.connect(host: host, port: Int(target.port), link: link, on: self.eventLoop,
                                   timeout: self.configuration.exitConnectTimeout,
                                   handshakeTimeout: self.configuration.linkHandshakeTimeout,
                                   localAddresses: self.localNetinfoAddresses)
            .whenFailure { error in
                // The link never became active: it reports nothing itself.
                self.eventLoop.assertInEventLoop()
                self.linkFailedBeforeOpen(link, error: error)
            }
    }

    func linkFailedBeforeOpen(_ link: OnionLink, error: Error) {
        let (wasHeld, failed) = self.links.remove(link)
        guard wasHeld else { return }
        self.logger.debug("link \(link.id) failed: \(error)")
        for circuit in failed { self.perform(self.relay.extendChannelFailed(circuit)) }
    }
}

extension OnionRelayServer: OnionLinkDelegate {
    func linkOpened(_ link: OnionLink, peer: ChannelPeer) {
        self.relay.channelOpened(link.id, role: link.role, peerIdentity: link.peerIdentity)
        for circuit in self.links.opened(link) { self.perform(self.relay.extendChannelReady(circuit, channel: link.id)) }
    }

    func link(_ link: OnionLink, received cell: ChannelCell) {
        self.perform(self.relay.receive(cell, on: link.id))
    }

    func link(_ link: OnionLink, writable: Bool) {
        // Links whose circuits forward into this one stop reading while it cannot take more (it was
        // already paused itself by OnionLink). Resuming resumes every link, as the circuits may have
        // changed meanwhile.
        if writable {
            for other in self.links.links.values { other.setReadBlocked(by: link.id, false) }
        } else {
            for channel in self.relay.linkedChannels(link.id) { self.links[channel]?.setReadBlocked(by: link.id, true) }
        }
    }

    func linkClosed(_ link: OnionLink, error: Error?) {
        let failed = self.links.remove(link).failedExtends
        for other in self.links.links.values { other.setReadBlocked(by: link.id, false) }
        if let error { self.logger.debug("link \(link.id) closed: \(error)") }
        for circuit in failed { self.perform(self.relay.extendChannelFailed(circuit)) }
        self.perform(self.relay.channelClosed(link.id))
    }
}
