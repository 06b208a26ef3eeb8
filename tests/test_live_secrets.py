"""The key comes only from HLMM_PRIVATE_KEY or an encrypted keystore, and no error shows it."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from live.secrets import KEY_ENV, PASSWORD_ENV, SecretError, load_wallet


def test_key_from_environment(monkeypatch):
    acct = Account.create()
    monkeypatch.setenv(KEY_ENV, acct.key.hex())
    assert load_wallet(None).address == acct.address


def test_key_from_keystore(monkeypatch, tmp_path):
    acct = Account.create()
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(Account.encrypt(acct.key, "pw", kdf="pbkdf2", iterations=2)))
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert load_wallet(str(path)).address == acct.address
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(SecretError, match="cannot decrypt"):
        load_wallet(str(path))


def test_errors_never_contain_the_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(SecretError, match=KEY_ENV):
        load_wallet(None)
    bad = "0x" + "zz" * 32
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(SecretError) as info:
        load_wallet(None)
    assert "zz" not in str(info.value) and info.value.__cause__ is None
