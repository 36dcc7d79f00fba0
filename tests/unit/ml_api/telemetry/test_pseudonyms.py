"""user.hash is keyed: the same on every worker for one key, unknowable without it."""

import hashlib
import hmac

import pytest

from ml_api.config import ConfigError
from ml_api.telemetry.pseudonyms import UserPseudonyms

KEY = "a-key-of-some-length-0123"


def test_the_pseudonym_is_hmac_sha256_of_the_user_id_under_the_key() -> None:
    expected = hmac.new(KEY.encode(), "u-42".encode(), hashlib.sha256).hexdigest()[:16]
    users = UserPseudonyms(KEY)
    assert users.pseudonym("u-42") == expected == UserPseudonyms(KEY).pseudonym("u-42")  # another worker
    assert users.pseudonym("u-42") == expected, "the keyed state is copied, never consumed"


def test_an_unkeyed_dictionary_does_not_find_it() -> None:
    candidates = {hashlib.sha256(f"user{n}@example.com".encode()).hexdigest()[:16] for n in range(1000)}
    assert UserPseudonyms(KEY).pseudonym("user7@example.com") not in candidates
    assert UserPseudonyms(KEY).pseudonym("u") != UserPseudonyms(KEY + "-rotated").pseudonym("u")


def test_raw_ids_only_where_allowed_and_no_short_key() -> None:
    assert UserPseudonyms(KEY).fields("u-1").keys() == {"hash"}
    assert UserPseudonyms(KEY, log_raw_user_id=True).fields("u-1")["id"] == "u-1"
    with pytest.raises(ConfigError, match="USER_HASH_KEY"):
        UserPseudonyms("")
