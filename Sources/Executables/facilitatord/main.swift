print("facilitatord: not built yet")
