"""The trio runtime: TLS, pairing, discovery, per-peer pumps and the ``cammesh`` command line."""
