print("peersm: not built yet")
