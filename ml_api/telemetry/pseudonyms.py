"""User ids in events: a keyed pseudonym, never the raw id (unless LOG_RAW_USER_ID).

``user.hash`` is the first 16 hex characters of HMAC-SHA-256(USER_HASH_KEY, user_id). An
unkeyed hash of a guessable id (an e-mail, a sequential number) is reversed by hashing
every candidate; without the key nobody outside the gateway can compute a pseudonym, so
nobody can look one up either. The same key gives the same pseudonym on every worker and
host, which is what Kibana's distinct counts need; a new key gives every user a new one.
"""

import hashlib
import hmac
from typing import Any

from ml_api.config import ConfigError

PSEUDONYM_HEX = 16
MIN_KEY_LENGTH = 16


class UserPseudonyms:
    """The ``user`` fields of an event, for one key."""

    def __init__(self, key: str, log_raw_user_id: bool = False) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"USER_HASH_KEY must be at least {MIN_KEY_LENGTH} characters (`make run` generates one into "
                "LOCAL_SECRETS_FILE when it is empty; see README, 'Pseudonymous user ids')")
        # The keyed state is computed once; each pseudonym copies it (about half the cost of hmac.new).
        self._keyed = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
        self._log_raw = log_raw_user_id

    def pseudonym(self, user_id: str) -> str:
        mac = self._keyed.copy()
        mac.update(user_id.encode("utf-8"))
        return mac.hexdigest()[:PSEUDONYM_HEX]

    def fields(self, user_id: str) -> dict[str, Any]:
        """``{"hash": …}``, plus ``"id"`` where LOG_RAW_USER_ID allows it."""
        hashed = self.pseudonym(user_id)
        return {"hash": hashed, "id": user_id} if self._log_raw else {"hash": hashed}
