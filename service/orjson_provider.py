"""Flask's JSON through orjson: a neighbour list encodes several times faster."""
from __future__ import annotations

import orjson
from flask.json.provider import DefaultJSONProvider

# Dates, datetimes and dataclasses go through Flask's own `default`, so they come out
# as Flask would write them; keys that are not strings are written as Flask would too.
OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
           | orjson.OPT_NON_STR_KEYS)


class OrjsonProvider(DefaultJSONProvider):
    """Compact JSON in UTF-8, keys in insertion order; Flask's encoder as the fallback."""

    sort_keys = False
    compact = True

    def _encode(self, obj) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=OPTIONS)
        except orjson.JSONEncodeError:
            # What orjson refuses (a string with a lone surrogate, an integer over 64
            # bits), the standard library may still write; it raises on the rest.
            return super().dumps(obj, separators=(",", ":")).encode()

    def dumps(self, obj, **kwargs) -> str:
        if kwargs:  # indent and the like: only the standard library knows them
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(self._encode(obj) + b"\n", mimetype=self.mimetype)
