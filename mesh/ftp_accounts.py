"""FTP accounts of a card: one per camera, each with a generated password kept as a salted hash.

``CARD/ftp-accounts.json`` (mode 0600) maps a user name to its scrypt salt and hash, the
photographer whose pictures it brings, and when it was made.  The password itself is
shown once, by ``cammesh ftp add``, and stored nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mesh.errors import MeshError
from mesh.identity import write_atomically
from storage.metadata import clean_text

ACCOUNTS_FILE = "ftp-accounts.json"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
RESERVED = frozenset({"anonymous", "ftp"})  # what FTP clients send for anonymous login
MAX_PHOTOGRAPHER = 64
# Letters and digits that read unambiguously on a camera's on-screen keyboard (no 0/o, 1/l).
ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    photographer: str | None
    salt: str  # hex
    hash: str  # hex, scrypt of the password
    created: float

    def verify(self, password: str) -> bool:
        return hmac.compare_digest(_hash(password, bytes.fromhex(self.salt)), self.hash)


def _hash(password: str, salt: bytes) -> str:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    ).hex()


def generate_password() -> str:
    """Three groups of five (about 75 bits), typed easily on a camera: ``k7mqx-3xpta-9vhrw``."""
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(5)) for _ in range(3))


def load_accounts(card: Path) -> dict[str, Account]:
    """The card's accounts by user name (none when the file does not exist)."""
    path = card / ACCOUNTS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise MeshError(f"{path} is not valid JSON ({exc}); restore it or remove it") from exc
    return {user: Account(**fields) for user, fields in doc.get("accounts", {}).items()}


def _save(card: Path, accounts: dict[str, Account]) -> None:
    doc = {"accounts": {user: asdict(a) for user, a in sorted(accounts.items())}}
    write_atomically(card / ACCOUNTS_FILE, json.dumps(doc, indent=1).encode(), mode=0o600)


def add_account(card: Path, user: str, *, photographer: str | None = None) -> str:
    """Create ``user`` and return its new password; MeshError if the name is bad or taken."""
    if not USER_NAME.fullmatch(user) or user.lower() in RESERVED:
        raise MeshError(
            f"{user!r} cannot be an FTP user: use 1-32 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (and not 'anonymous' or 'ftp')"
        )
    if not card.is_dir():
        raise MeshError(f"{card} is not a card folder (see `cammesh init`)")
    accounts = load_accounts(card)
    if user in accounts:
        raise MeshError(f"the FTP user {user!r} exists; `cammesh ftp remove` it first")
    name = (clean_text(photographer or "") or "")[:MAX_PHOTOGRAPHER]
    password = generate_password()
    salt = secrets.token_bytes(16)
    accounts[user] = Account(user, name or None, salt.hex(), _hash(password, salt), time.time())
    _save(card, accounts)
    return password


def remove_account(card: Path, user: str) -> None:
    accounts = load_accounts(card)
    if user not in accounts:
        raise MeshError(f"no FTP user {user!r} on {card} (see `cammesh ftp ls`)")
    del accounts[user]
    _save(card, accounts)
