"""The card: content-addressed originals, the SQLite catalog, thumbnails, metadata, import."""
