import NIOCore
import Testing
@testable import TorCells

/// Seeded random inputs: every decoder must return a value or throw CellError, never trap.
/// Inputs are biased towards structure (real commands, plausible lengths, mutated valid cells)
/// so the parsers are exercised beyond their first length check.
@Suite("Robustness")
struct RobustnessTests {
    static let channelCommands: [UInt8] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 128, 129, 130, 131, 132, 99, 200]
    static let relayCommands: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 41, 42, 43, 44, 80, 81, 82, 83, 84, 85, 250]

    static func randomBytes(_ count: Int, _ rng: inout SplitMix64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            var word = rng.next()
            for _ in 0..<min(8, count - out.count) { out.append(UInt8(truncatingIfNeeded: word)); word >>= 8 }
        }
        return out
    }

    /// A payload that is random, or a valid one with some bytes flipped / cut short.
    static func fuzzedBody(valid: [UInt8], maxLength: Int, _ rng: inout SplitMix64) -> [UInt8] {
        switch rng.next() % 3 {
        case 0: return randomBytes(Int(rng.next() % UInt64(maxLength + 1)), &rng)
        case 1:
            var body = valid
            for _ in 0..<(1 + rng.next() % 4) where !body.isEmpty {
                body[Int(rng.next() % UInt64(body.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            return body
        default:
            return Array(valid.prefix(Int(rng.next() % UInt64(valid.count + 1))))
        }
    }

    static let sampleChannelBodies: [UInt8: [UInt8]] = [
        7: hex("000300040005"),
        8: hex("5F6F859C 06 10 00000000000000000000000000000001 02 04 04 7F000001 06 10 00000000000000000000000000000001"),
        10: hex("0002 0004 DEADBEEF"),
        11: hex("0004 DEADBEEF"),
        12: hex("00 02 0100 0200"),
        129: hex("02 04 0002 AABB 07 0001 CC"),
        130: hex("00DA5C085DEE4F3656710DA3B73652E48ACD5BAE608335FCA3FB6C4DEE104A51 0002 0001 0003"),
        131: hex("0003 0004 41555448"),
    ]

    static let sampleRelayBodies: [UInt8: [UInt8]] = [
        1: Array("[2001:db8::1]:22".utf8) + [0, 0, 0, 0, 3],
        3: hex("04 20010db8 00000000 00000000 0000f00b 00000200"),
        4: hex("00000000 06 20010db8 00000000 00000000 00001122 00000E10"),
        5: hex("01 0014 F01234989823478bcdefabcdef01234567890123"),
        14: hex("02 00 06 7F0000011388 03 20") + Array(repeating: 1, count: 32) + hex("0002 0004 DEADBEEF"),
        15: hex("0004 DEADBEEF"),
    ]

    @Test("Channel decoder: 100 000 seeded random streams, chunked at random")
    func channelDecoder() {
        var rng = SplitMix64(seed: 0xC0FFEE)
        var cellsSeen = 0, messagesParsed = 0, errors = 0
        for iteration in 0..<100_000 {
            var decoder = ChannelCellDecoder(circuitIDWidth: iteration % 2 == 0 ? .fourBytes : .twoBytes,
                                             maximumVariablePayloadLength: iteration % 3 == 0 ? 1024 : 65_535)
            var stream: [UInt8] = []
            // One to three cell-ish records: a header with a real or random command, then a body.
            for _ in 0..<(1 + rng.next() % 3) {
                let command = Self.channelCommands[Int(rng.next() % UInt64(Self.channelCommands.count))]
                stream += Self.randomBytes(decoder.circuitIDWidth.rawValue, &rng) + [command]
                let valid = Self.sampleChannelBodies[command] ?? Self.randomBytes(Int(rng.next() % 40), &rng)
                var body = Self.fuzzedBody(valid: valid, maxLength: 600, &rng)
                if ChannelCommand(command).isVariableLength {
                    let length = rng.next() % 8 == 0 ? UInt16(truncatingIfNeeded: rng.next()) : UInt16(body.count)
                    stream += [UInt8(length >> 8), UInt8(length & 0xFF)]
                } else {
                    body = padded(body)
                }
                stream += body
            }
            var input = stream[...]
            do {
                while !input.isEmpty {
                    let chunk = min(input.count, 1 + Int(rng.next() % 700))
                    decoder.append(ByteBuffer(bytes: input.prefix(chunk)))
                    input = input.dropFirst(chunk)
                    while case .cell(let cell) = try decoder.next() {
                        cellsSeen += 1
                        do {
                            _ = try cell.message()
                            messagesParsed += 1
                        } catch { errors += 1 }
                    }
                }
            } catch { errors += 1 }
        }
        // The mix must actually reach the message parsers, with both outcomes.
        #expect(cellsSeen > 100_000)
        #expect(messagesParsed > 50_000)
        #expect(errors > 10_000)
    }

    @Test("Relay decoders: 100 000 seeded random bodies and messages")
    func relayDecoders() {
        var rng = SplitMix64(seed: 0xBADC0DE)
        var parsed = 0, errors = 0
        for _ in 0..<100_000 {
            // Random 509-byte body through RelayCell(decoding:), with a plausible Length half the time.
            var raw = Self.randomBytes(509, &rng)
            if rng.next() % 2 == 0 {
                let length = UInt16(rng.next() % 520)
                raw[9] = UInt8(length >> 8); raw[10] = UInt8(length & 0xFF)
            }
            let command = Self.relayCommands[Int(rng.next() % UInt64(Self.relayCommands.count))]
            raw[0] = command
            do {
                let cell = try RelayCell(decoding: try RelayCellBody(ByteBuffer(bytes: raw)))
                _ = try cell.message()
                parsed += 1
            } catch { errors += 1 }

            // Structured-ish message bodies straight into RelayMessage.
            let valid = Self.sampleRelayBodies[command] ?? Self.randomBytes(Int(rng.next() % 30), &rng)
            let body = Self.fuzzedBody(valid: valid, maxLength: 498, &rng)
            do {
                let message = try RelayMessage(command: RelayCommand(command), body: ByteBuffer(bytes: body))
                parsed += 1
                // Whatever decodes must re-encode and decode to the same value.
                var out = ByteBuffer()
                try message.writeBody(into: &out)
                #expect(try RelayMessage(command: RelayCommand(command), body: out) == message)
            } catch { errors += 1 }
        }
        #expect(parsed > 50_000)
        #expect(errors > 10_000)
    }
}
