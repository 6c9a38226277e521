import Foundation
import CTorrent
import Testing
import TestSupport
@testable import TorrentEngine

/// Pure parts: no session, no network.
struct TorrentPlanTests {
    @Test func torrentPiecePlanSlicesRangesInOrder() {
        // 10 pieces of 100 bytes, the last one 50: total 950.
        var plan = PiecePlan(pieceLength: 100, totalSize: 950, start: 150, end: 920)
        #expect(plan.firstPiece == 1 && plan.lastPiece == 9)
        #expect(plan.slice(of: 1) == 50..<100)
        #expect(plan.slice(of: 5) == 0..<100)
        #expect(plan.slice(of: 9) == 0..<20)
        #expect(plan.size(of: 9) == 50)
        #expect(plan.window(readAhead: 3) == 1..<4)
        var total = 0
        while !plan.isDone { total += plan.slice(of: plan.next).count; plan.advance() }
        #expect(total == 770)
        #expect(plan.window(readAhead: 3).isEmpty)

        let last = PiecePlan(pieceLength: 100, totalSize: 950, start: 900, end: 950)
        #expect(last.firstPiece == 9 && last.lastPiece == 9 && last.slice(of: 9) == 0..<50)
        let inside = PiecePlan(pieceLength: 100, totalSize: 950, start: 210, end: 230)
        #expect(inside.firstPiece == 2 && inside.lastPiece == 2 && inside.slice(of: 2) == 10..<30)
        let empty = PiecePlan(pieceLength: 100, totalSize: 950, start: 300, end: 300)
        #expect(empty.isDone)
        let tail = PiecePlan(pieceLength: 100, totalSize: 950, start: 0, end: 950)
        #expect(tail.window(readAhead: 100) == 0..<10)
    }

    @Test func torrentSourceParsesHashNames() throws {
        let hex = "EADE878421F4DF2BB8EF1CE8744DABBFC90BF191"
        #expect(try TorrentSource(hashName: hex) == .infoHash(hex.lowercased()))
        #expect(try TorrentSource(hashName: " magnet:?xt=urn:btih:\(hex)&dn=x ") == .magnet("magnet:?xt=urn:btih:\(hex)&dn=x"))
        for bad in ["", "xyz", String(hex.dropLast()), hex + "0", "magnet:?dn=only-a-name", "ftp://x"] {
            #expect(throws: TorrentEngineError.self) { try TorrentSource(hashName: bad) }
        }
    }

    @Test func torrentMagnetInfoHashHexAndBase32() throws {
        let hex = "eade878421f4df2bb8ef1ce8744dabbfc90bf191"
        #expect(try TorrentSource.btih("magnet:?dn=a&xt=urn:btih:\(hex.uppercased())") == hex)
        // The same hash in base32 (RFC 4648).
        #expect(try TorrentSource.btih("magnet:?xt=urn:btih:5LPIPBBB6TPSXOHPDTUHITNLX7EQX4MR") == hex)
        #expect(try TorrentSource.btih("magnet:?xt=urn:btmh:1220abcd") == nil)
    }

    /// The shared vectors (HashName.infohash answers them too): our reading, and libtorrent's own
    /// wherever a hash can be relied on.
    @Test func torrentMagnetVectorsMatchHashNameAndLibtorrent() throws {
        for (magnet, want) in MagnetVectors.all {
            let ours = (try? TorrentSource.btih(magnet)) ?? nil
            #expect(ours == want, "\(magnet)")
            if let want {
                var err = ct_error()
                var out = [CChar](repeating: 0, count: 41)
                #expect(ct_magnet_info_hash(magnet, &out, &err) == 0, "\(magnet)")
                #expect(String(cString: out) == want, "libtorrent reads \(magnet) otherwise")
                #expect(throws: Never.self) { try TorrentSource(hashName: magnet) }
            } else {
                var refused = false
                do { _ = try TorrentSource.btih(magnet) } catch { refused = true }
                if refused {
                    // A btih we cannot rely on: the engine refuses the link rather than fetch an unknown hash.
                    #expect(throws: TorrentEngineError.self, "\(magnet)") { try TorrentSource(hashName: magnet) }
                } else {
                    // We read no btih and do not refuse: libtorrent must not find a v1 hash either.
                    var err = ct_error()
                    var out = [CChar](repeating: 0, count: 41)
                    let rc = ct_magnet_info_hash(magnet, &out, &err)
                    #expect(rc != 0 || String(cString: out).isEmpty, "libtorrent finds \(String(cString: out)) in \(magnet)")
                }
            }
        }
    }

    @Test func torrentMIMETypesFromFileNames() {
        #expect(MIMEType.forFileName("dir/Movie.MP4") == "video/mp4")
        #expect(MIMEType.forFileName("a.webm") == "video/webm")
        #expect(MIMEType.forFileName("song.flac") == "audio/flac")
        #expect(MIMEType.forFileName("README") == "application/octet-stream")
        #expect(MIMEType.forFileName(".hidden") == "application/octet-stream")
        #expect(MIMEType.forFileName("x.unknownext") == "application/octet-stream")
    }

    @Test func torrentEndpointsParse() {
        #expect(TorrentEngine.parseEndpoint("127.0.0.1:6881") == PeerEndpoint(host: "127.0.0.1", port: 6881))
        #expect(TorrentEngine.parseEndpoint("[::1]:80") == PeerEndpoint(host: "::1", port: 80))
        #expect(TorrentEngine.parseEndpoint("host") == nil)
        #expect(TorrentEngine.parseEndpoint(":1") == nil)
        #expect(TorrentEngine.parseEndpoint("h:0") == nil)
    }
}
