"""Who signed an action, and whether its nonce may be used (hyperliquid-api.md section 3).

The signature is the SDK's L1 scheme: keccak over msgpack(action) + nonce + vault +
expiresAfter, wrapped in an EIP-712 ``Agent`` message. The local venue always verifies with
``source="b"`` (the SDK signs that way for every base URL but mainnet's), recovering the
signer's address; an address the venue does not know gets Hyperliquid's own refusal.

Nonces are per signer: the venue keeps the 100 highest; a new one must be unused, above the
smallest kept one once 100 are kept, and within (now - 2 days, now + 1 day) in milliseconds of
the *wall* clock (the SDK signs with ``time.time()``, whatever the simulated clock says).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any

from hyperliquid.utils.signing import recover_agent_or_user_from_l1_action

NONCES_KEPT = 100
NONCE_PAST_MS = 2 * 86_400_000
NONCE_FUTURE_MS = 86_400_000


class AuthError(ValueError):
    """The whole action is refused; the text is what the venue answers."""


def recover_signer(body: dict[str, Any]) -> str:
    """The lower-case address that signed ``body`` (an ``/exchange`` request)."""
    try:
        action, nonce, sig = body["action"], body["nonce"], body["signature"]
        vault, expires = body.get("vaultAddress"), body.get("expiresAfter")
        if not isinstance(nonce, int) or isinstance(nonce, bool) or not 0 <= nonce < 2**64:
            raise AuthError(f"Invalid nonce: {nonce!r}")
        if expires is not None and (not isinstance(expires, int) or not 0 <= expires < 2**64):
            raise AuthError(f"Invalid expiresAfter: {expires!r}")
        signature = {"r": sig["r"], "s": sig["s"], "v": int(sig["v"])}
        address = recover_agent_or_user_from_l1_action(action, signature, vault, nonce, expires, False)
    except AuthError:
        raise
    except Exception as exc:  # any malformed field: the digest cannot be recomputed
        raise AuthError(f"Invalid signature: {type(exc).__name__}") from None
    return str(address).lower()


class NonceBook:
    """The 100-highest rule, per signer."""

    def __init__(self, wall_ms: Callable[[], int] | None = None) -> None:
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._kept: dict[str, list[int]] = {}  # min-heap of the highest nonces
        self._sets: dict[str, set[int]] = {}

    def use(self, signer: str, nonce: int) -> None:
        """Record ``nonce`` for ``signer`` or raise :class:`AuthError` with the venue's text."""
        now = self._wall_ms()
        if not now - NONCE_PAST_MS < nonce < now + NONCE_FUTURE_MS:
            raise AuthError(f"Invalid nonce: nonce {nonce} is outside the allowed window around {now}")
        heap = self._kept.setdefault(signer, [])
        seen = self._sets.setdefault(signer, set())
        if nonce in seen:
            raise AuthError(f"Invalid nonce: duplicate nonce {nonce}")
        if len(heap) >= NONCES_KEPT:
            if nonce <= heap[0]:
                raise AuthError(f"Invalid nonce: nonce {nonce} is not above the smallest of the last {NONCES_KEPT}, {heap[0]}")
            seen.discard(heapq.heappushpop(heap, nonce))
        else:
            heapq.heappush(heap, nonce)
        seen.add(nonce)
