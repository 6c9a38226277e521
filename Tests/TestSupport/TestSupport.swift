// The tests see the testbed (child processes, loopback ports, seeders, the private-network check)
// through TestSupport, as before it moved out for the demo.
@_exported import Testbed

public typealias TestSupportError = TestbedError
