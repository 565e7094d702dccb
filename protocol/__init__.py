"""cammesh wire protocol, sans-IO: messages, codec, connection state, scheduler, node logic.

Nothing here touches sockets, threads, clocks, files or the global random;
time arrives as an argument, randomness as an injected ``random.Random`` and
storage through :class:`protocol.store.Store`.
"""
