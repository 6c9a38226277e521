import Crypto
import Facilitator
import FacilitatorNode  // LoopbackOnionNetwork ⇄ FacilitatorService conformances (the in-memory front)
import Foundation
import NIOCore
import OnionRouting
import PeersmCircuits
import PeersmProtocol
import Requester

/// Deterministic bytes (SplitMix64) so a mismatch anywhere is visible.
func testBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var out = [UInt8]()
    out.reserveCapacity(count + 8)
    while out.count < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        withUnsafeBytes(of: z) { out.append(contentsOf: $0) }
    }
    return Array(out.prefix(count))
}

/// An in-memory `ContentSource`: files by hash_name, delivered in pieces, optionally slowly. Names it
/// does not know never resolve (like an infohash nobody seeds), so the facilitator's deadline decides.
struct MemoryContentSource: ContentSource {
    var files: [HashName: [UInt8]]
    var pieceSize = 64 << 10
    var delayPerPiece: Duration = .zero
    var progressWords: [ProgressState] = [.torrent, .start]

    func open(_ name: HashName, readFrom: UInt64?, progress: @escaping @Sendable (ProgressState) async -> Void) async throws -> any ContentFile {
        for word in progressWords { await progress(word) }
        guard let bytes = files[name] else {
            try await Task.sleep(for: .seconds(3600))
            throw CancellationError()
        }
        return MemoryFile(bytes: bytes, pieceSize: pieceSize, delay: delayPerPiece)
    }
}

struct MemoryFile: ContentFile {
    let bytes: [UInt8]
    let pieceSize: Int
    let delay: Duration
    var size: UInt64 { UInt64(bytes.count) }
    var mimeType: String { "application/octet-stream" }

    func read(_ range: Range<UInt64>) async throws -> AsyncThrowingStream<ByteBuffer, Error> {
        var offset = Int(range.lowerBound)
        let end = Int(range.upperBound)
        let (bytes, piece, delay) = (self.bytes, pieceSize, self.delay)
        return AsyncThrowingStream(unfolding: {
            guard offset < end else { return nil }
            if delay > .zero { try await Task.sleep(for: delay) }
            let n = min(piece, end - offset)
            defer { offset += n }
            return ByteBuffer(bytes: bytes[offset..<offset + n])
        })
    }

    func close() async {}
}

/// Wraps the network's exit side and flips one bit in the data of the `target`-th DB_DATA.
final class BitFlippingTransport: FacilitatorTransport, @unchecked Sendable {
    let inner: LoopbackOnionNetwork
    let target: Int
    private let lock = NSLock()
    private var seen = 0
    init(_ inner: LoopbackOnionNetwork, flipping target: Int) {
        self.inner = inner
        self.target = target
    }

    func send(circuit: RelayCircuitID, streamID: UInt16, command: PeersmRelayCommand, body: ByteBuffer) {
        var body = body
        if command == .dbData {
            lock.lock()
            seen += 1
            let hit = seen == target
            lock.unlock()
            if hit, body.readableBytes > PeersmWire.dataHeaderLength {
                let index = body.readerIndex + PeersmWire.dataHeaderLength + 7
                body.setInteger(body.getInteger(at: index, as: UInt8.self)! ^ 0x10, at: index)
            }
        }
        inner.send(circuit: circuit, streamID: streamID, command: command, body: body)
    }
}

/// A facilitator behind a 3-relay loopback network, with a requester ready to use it.
struct LoopbackRig {
    let network: LoopbackOnionNetwork
    let service: FacilitatorService
    let key: Curve25519.Signing.PrivateKey

    init<C: Clock<Duration>>(source: any ContentSource, configuration: FacilitatorConfiguration = FacilitatorConfiguration(),
                             clock: C = ContinuousClock(),
                             transport: ((LoopbackOnionNetwork) -> any FacilitatorTransport)? = nil) throws {
        network = try LoopbackOnionNetwork(relayCount: 3)
        key = Curve25519.Signing.PrivateKey()
        service = FacilitatorService(source: source, signingKey: key, transport: transport?(network) ?? network,
                                     configuration: configuration, clock: clock)
        network.attach(service)
    }

    func requester(_ configure: (inout FetchOptions) -> Void = { _ in }) -> Requester {
        var options = FetchOptions()
        configure(&options)
        return Requester(circuits: network, options: options)
    }

    func stop() async {
        await service.shutdown()
        network.shutdown()
    }
}

func scratchFile(_ name: String = "out") -> URL {
    URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("peersm-fac-\(name)-\(UUID().uuidString)")
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
