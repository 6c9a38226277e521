import NIOCore
import NetBasics

// Addresses as cells carry them (network order). The types are NetBasics'.
extension ByteBuffer {
    @inlinable
    mutating func readIPv4(field: String) throws(CellError) -> IPv4Address {
        IPv4Address(rawValue: try readInteger(UInt32.self, field: field))
    }

    @inlinable
    mutating func readIPv6(field: String) throws(CellError) -> IPv6Address {
        let high = try readInteger(UInt64.self, field: field)
        let low = try readInteger(UInt64.self, field: field)
        return IPv6Address(high: high, low: low)
    }

    @inlinable
    mutating func writeIPv6(_ address: IPv6Address) {
        writeInteger(address.high)
        writeInteger(address.low)
    }
}
