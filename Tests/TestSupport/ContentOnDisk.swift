import Foundation

/// "Relayed content never touches disk", checked on the directories a facilitator or daemon writes:
/// the regular files under `directories` (recursively, hidden ones too) that contain a 64-byte
/// sample of `content`, taken every `stride` bytes and at its end. Test content is seeded random
/// bytes, so a sample turns up only where the content itself was written. Empty means none.
public func filesHoldingContent(_ content: Data, under directories: [URL], stride step: Int = 16 << 10) -> [String] {
    let sampleSize = 64
    guard content.count >= sampleSize else { return [] }
    let offsets = Array(Swift.stride(from: 0, to: content.count - sampleSize, by: step)) + [content.count - sampleSize]
    let samples = offsets.map { content.subdata(in: $0..<$0 + sampleSize) }
    var found: [String] = []
    for directory in directories {
        guard let walk = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey]) else { continue }
        for case let url as URL in walk {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true,
                  let data = try? Data(contentsOf: url), data.count >= sampleSize else { continue }
            if samples.contains(where: { data.range(of: $0) != nil }) { found.append(url.path) }
        }
    }
    return found.sorted()
}
