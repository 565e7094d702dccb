"""The catalog's schema: ordered migration steps, one per released change.

Step i brings the schema from version i to i + 1 (``PRAGMA user_version``); ``SqliteCatalog`` runs
the steps a card lacks when it opens it.  Never edit a released step; append a new one.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE card (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE images (
        image_id TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        mime TEXT NOT NULL,
        capture_time REAL,
        metadata TEXT NOT NULL,
        thumbnail BLOB NOT NULL,
        thumbnail_source TEXT,
        original_where TEXT NOT NULL CHECK (original_where IN ('local', 'dispersed', 'absent')),
        thumbnail_at REAL,
        original_at REAL,
        wrapped_key BLOB,
        UNIQUE (origin, seq)
    );
    CREATE TABLE transfers (
        peer TEXT NOT NULL,
        image_id TEXT NOT NULL,
        state TEXT NOT NULL,
        max_side INTEGER,
        quality INTEGER,
        PRIMARY KEY (peer, image_id)
    );
    CREATE TABLE dispersion (
        image_id TEXT NOT NULL,
        holder TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (image_id, holder)
    );
    CREATE TABLE held (
        image_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        size INTEGER NOT NULL,
        stored_at REAL NOT NULL
    );
    CREATE TABLE reservations (image_id TEXT PRIMARY KEY, size INTEGER NOT NULL);
    CREATE TABLE smaller (
        image_id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        stored_at REAL NOT NULL
    );
    CREATE TABLE partials (
        image_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        length INTEGER NOT NULL,
        PRIMARY KEY (image_id, kind)
    );
    """,
    # 2: our own user's decisions get a table of their own (they were transfer rows keyed by
    # this device's own id); existing ones move over.
    """
    CREATE TABLE decisions (
        image_id TEXT PRIMARY KEY,
        decision TEXT NOT NULL CHECK (decision IN ('requested', 'refused')),
        max_side INTEGER,
        quality INTEGER,
        decided_at REAL NOT NULL
    );
    INSERT INTO decisions (image_id, decision, max_side, quality, decided_at)
        SELECT image_id, state, max_side, quality, 0 FROM transfers
        WHERE peer = (SELECT value FROM card WHERE key = 'device_id')
          AND state IN ('requested', 'refused');
    DELETE FROM transfers WHERE peer = (SELECT value FROM card WHERE key = 'device_id');
    """,
    # 3: originals travel to holders sealed with a per-picture key (issue 7).  The owner keeps
    # each key beside its dispersion list; a holder records the digest of what it holds
    # (originals held before sealing were plaintext: their digest is their id).
    """
    CREATE TABLE picture_keys (
        image_id TEXT PRIMARY KEY,
        key BLOB NOT NULL CHECK (length(key) = 32),
        sealed_size INTEGER,  -- with the digest, once the original was first sealed
        sealed_digest TEXT
    );
    ALTER TABLE held ADD COLUMN digest TEXT;
    UPDATE held SET digest = image_id;
    """,
    # 4: a movie's strip of keyframe thumbnails (FIG. 15-16), kept with its picture; the
    # first frame is the poster (also the picture's thumbnail).  Older cards have no movies
    # with strips: the table starts empty.
    """
    CREATE TABLE strip_frames (
        image_id TEXT NOT NULL,
        position INTEGER NOT NULL CHECK (position >= 0),
        time REAL NOT NULL,
        byte_offset INTEGER,  -- where the keyframe's packet starts in the movie file
        kind TEXT NOT NULL CHECK (kind IN ('interval', 'scene')),
        jpeg BLOB NOT NULL,
        PRIMARY KEY (image_id, position)
    );
    """,
    # 5: the editor's marks (issue 19), one row per picture and field with the stamp of its
    # last change, so that marks from two devices merge by last writer wins (storage.marks);
    # and the labels of the eight colour classes, stamped alike.
    """
    CREATE TABLE marks (
        image_id TEXT NOT NULL,
        field TEXT NOT NULL,
        value TEXT NOT NULL,  -- canonical JSON (storage.marks.encode_value)
        changed_at REAL NOT NULL,
        device TEXT NOT NULL,
        PRIMARY KEY (image_id, field)
    );
    CREATE TABLE color_labels (
        class INTEGER PRIMARY KEY CHECK (class BETWEEN 1 AND 8),
        label TEXT NOT NULL,
        changed_at REAL NOT NULL,
        device TEXT NOT NULL
    );
    """,
    # 6: a smaller copy is dropped once its original is here, unless the user keeps it
    # (issue 17); copies received before this step were never kept on purpose.
    """
    ALTER TABLE smaller ADD COLUMN kept INTEGER NOT NULL DEFAULT 0 CHECK (kept IN (0, 1));
    """,
)
