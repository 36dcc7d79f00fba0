"""Flask's JSON responses through orjson: the same documents, encoded several times faster.

Every response of the API goes through ``app.json``; orjson encodes it several times
faster than Flask's default provider (the standard library's encoder; ``make bench``
prints what a request costs). Types orjson would write differently from Flask (dates as HTTP dates, dataclasses,
Decimal, UUID) and anything it refuses (lone surrogates) go through Flask's own encoder,
so what clients receive does not change, except that non-ASCII text arrives as UTF-8
rather than as ``\\u`` escapes (the same JSON).
"""

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

OPTIONS = (
    orjson.OPT_NON_STR_KEYS  # {1: ...} becomes {"1": ...}, as the standard library does
    | orjson.OPT_PASSTHROUGH_DATETIME  # to DefaultJSONProvider.default: HTTP dates, as Flask writes them
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


class OrjsonProvider(DefaultJSONProvider):
    """Compact, unsorted-by-default JSON via orjson; Flask's encoder where they would differ."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:  # indent, separators...: what only the standard library does
            return super().dumps(obj, **kwargs)
        return self._encode(obj, 0).decode("utf-8")

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(obj)  # indented for people reading it
        return self._app.response_class(self.encode_body(obj), mimetype=self.mimetype)

    def encode_body(self, obj: Any) -> bytes:
        """A response body's bytes, exactly as ``response`` writes them (compact)."""
        return self._encode(obj, orjson.OPT_APPEND_NEWLINE)

    def _encode(self, obj: Any, option: int) -> bytes:
        option |= OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)
        try:
            return orjson.dumps(obj, default=self.default, option=option)
        except TypeError:  # e.g. a lone surrogate, which the standard library escapes
            text = super().dumps(obj, separators=(",", ":"))
            return (text + "\n" if option & orjson.OPT_APPEND_NEWLINE else text).encode("utf-8")
