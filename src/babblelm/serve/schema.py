"""What a completion request may hold, checked before any work starts: the body as a JSON object (UTF-8,
each key once) and `CompletionRequest`, whose fields have strict types (no strings for numbers, no booleans or
floats for integers, no NaN or Infinity) and refuse unknown names. A refusal is a `Refused` (status, message
naming the field or place, param), answered in OpenAI's error shape `error_body`."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError


class Refused(Exception):
    """A request refused with `status` (4xx, or 5xx for the server's own failures) and a one-line message."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_body(status: int, message: str, param: str | None = None) -> dict:
    """OpenAI's error shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _unicode(value: Any, expected: str, item: int | None = None) -> str:
    """`value` if it is a string of valid Unicode (no unpaired surrogates: tokenizers refuse them)."""
    at = "" if item is None else f" (item {item})"
    if not isinstance(value, str):
        got = "" if item is None else f" (item {item} is {json_kind(value)})"
        raise PydanticCustomError("item_type" if got else "string_type", "Input should be {expected}{got}",
                                  {"expected": expected, "got": got})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("unicode", "Input should be valid Unicode, without unpaired surrogates{at}",
                                  {"at": at}) from None
    return value


def _text(value: Any) -> str:
    return _unicode(value, "a string")


def _text_or_texts(value: Any) -> str | list[str]:
    """A string or a list of strings, each valid Unicode."""
    expected = "a string or a list of strings"
    if isinstance(value, list):
        return [_unicode(v, expected, item=i) for i, v in enumerate(value)]
    return _unicode(value, expected)


Text = Annotated[str, PlainValidator(_text)]
TextOrTexts = Annotated[str | list[str], PlainValidator(_text_or_texts)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The `/v1/completions` body: strict types, and unknown fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    model: Text | None = None
    prompt: TextOrTexts
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    stop: TextOrTexts | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    seed: int | None = Field(None, ge=0, le=2**64 - 1)
    echo: bool = False
    user: Text | None = None


def parse_request(body: bytes) -> CompletionRequest:
    """The body as a `CompletionRequest`, else `Refused` (400) naming the fields that are wrong."""
    try:
        return CompletionRequest.model_validate(json_object(body))
    except ValidationError as err:
        raise Refused(400, *_describe(err.errors())) from None


def stop_strings(req: CompletionRequest) -> list[str]:
    return [req.stop] if isinstance(req.stop, str) else list(req.stop or [])


def json_object(body: bytes) -> dict:
    """The body as a JSON object (UTF-8, no duplicate keys), else 400 saying what is wrong. NaN and Infinity parse
    here, and every field refuses them."""
    if not body.strip():
        raise Refused(400, "request body is empty; expected a JSON object")
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as err:
        raise Refused(400, f"request body is not valid UTF-8 ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise Refused(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, integers of over 4300 digits, _no_duplicates
        raise Refused(400, f"request body is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise Refused(400, f"request body must be a JSON object, got {json_kind(data)}")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"key {key[:100]!r} appears more than once in an object; expected each key once")
        seen.add(key)
    return dict(pairs)


def json_kind(value: Any) -> str:
    """How a JSON value reads in a message: `true`, `null`, `-1`, `a 400-digit number`, `a string`, `an array`..."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 24 else f"a {len(text)}-digit number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


_SAYS_WHAT_IT_GOT = {"missing", "extra_forbidden", "item_type", "unicode"}  # error types whose message is enough


def _describe(errors: list[dict]) -> tuple[str, str | None]:
    """Pydantic errors as one line, `field: problem (got ...); ...`, and the first field."""
    def where(loc) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"

    def one(e: dict) -> str:
        got = "" if e["type"] in _SAYS_WHAT_IT_GOT else f" (got {json_kind(e['input'])})"
        return f"{where(e['loc'])}: {e['msg']}{got}"

    text = "; ".join(one(e) for e in errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
    loc = errors[0]["loc"] if errors else ()
    return text, str(loc[0]) if loc else None
