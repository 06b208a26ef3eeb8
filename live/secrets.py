"""The signing key for testnet/mainnet, from the environment or an encrypted keystore only.

The key is never printed, logged or put into an exception message: errors name the source
(variable or file) and what is wrong with it, never the value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

KEY_ENV = "HLMM_PRIVATE_KEY"
PASSWORD_ENV = "HLMM_KEYSTORE_PASSWORD"


class SecretError(ValueError):
    """The key could not be loaded; the message never contains key material."""


def load_wallet(keystore: str | None) -> LocalAccount:
    """The wallet from ``keystore`` (an encrypted JSON keystore, password in ``HLMM_KEYSTORE_PASSWORD``)
    if given, else from ``HLMM_PRIVATE_KEY`` (0x-prefixed 32-byte hex)."""
    if keystore is not None:
        path = Path(keystore)
        try:
            blob = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SecretError(f"keystore={str(path)!r}: cannot read an encrypted JSON keystore ({type(exc).__name__})") from None
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            raise SecretError(f"keystore={str(path)!r}: set {PASSWORD_ENV} to its password")
        try:
            key = Account.decrypt(blob, password)
        except (ValueError, KeyError, TypeError) as exc:
            raise SecretError(f"keystore={str(path)!r}: cannot decrypt ({type(exc).__name__}; wrong password?)") from None
        return Account.from_key(key)
    raw = os.environ.get(KEY_ENV)
    if not raw:
        raise SecretError(f"no key: set {KEY_ENV} or pass --keystore FILE")
    try:
        return Account.from_key(raw.strip())
    except (ValueError, TypeError) as exc:
        # the exception text of eth_account may quote the value: only its type is reported
        raise SecretError(f"{KEY_ENV}: not a valid private key ({type(exc).__name__})") from None
