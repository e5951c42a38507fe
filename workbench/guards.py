"""Request guards in front of the Dash app: Host header, body size, widget value shapes.

- ``HostAndSizeGuard`` (WSGI middleware, every route): a Host header that is neither an IP
  address nor one of the configured names (``ServerConfig.host_names``) gets HTTP 400, so a
  page on another site whose name was rebound to this address (DNS rebinding) cannot read
  or drive it; a body
  declared larger than ``max_request_bytes`` gets HTTP 413 naming the limit, before anything
  reads it. Flask's MAX_CONTENT_LENGTH catches bodies of undeclared length (``too_large``).
- ``check_callback`` (a Flask before_request hook on Dash's callback route): the browser's
  widgets send values of known shapes (a text box: text or a number; a checklist: a list of
  option values), so a value of another shape, or text longer than ``max_field_chars``, is
  refused with HTTP 400 and a message naming the widget, before any callback parses it.

Messages echo at most ``ECHO_CHARS`` characters of what was sent.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable

from dash import dcc
from flask import Response, request

from . import ids
from .config import ANY_HOST, ServerConfig

ECHO_CHARS = 60  # characters of a refused value or host quoted back
CALLBACK_ROUTE = "/_dash-update-component"
SCALARS = (str, int, float, bool, type(None))


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was when cut."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _megabytes(n: int) -> str:
    return f"{n / 1e6:g} MB"


def host_name(header: str) -> str:
    """The name part of a Host header ("[::1]:8050" -> "::1", "a.b:80" -> "a.b"), lower case."""
    h = (header or "").strip().lower()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    if h.count(":") == 1:
        return h.split(":", 1)[0]
    return h


def host_refusal(header: str, allowed: tuple[str, ...]) -> str | None:
    """Why a request with this Host header is refused, or None when it may be served. An IP
    address is always served: DNS rebinding needs a name the attacker controls, and a page
    opened at an address has that address as its origin."""
    if ANY_HOST in allowed:
        return None
    name = host_name(header)
    if name and name in allowed:
        return None
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    return (
        f"Host {clip(header or '(none)')!r} is not a name of this server (allowed: "
        f"{', '.join(allowed)}). The server's administrator can allow it with "
        f"--allowed-host or SLOWMODE_ALLOWED_HOSTS."
    )


def size_refusal(length: int, limit: int) -> str:
    return (
        f"The request body ({_megabytes(length)}) is larger than this server's limit of "
        f"{_megabytes(limit)} (max_request_bytes)."
    )


class HostAndSizeGuard:
    """WSGI middleware: 400 for a Host header not allowed, 413 for a declared body too large."""

    def __init__(self, app: Callable, config: ServerConfig):
        self.app = app
        self.allowed = config.host_names
        self.limit = config.max_request_bytes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        header = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        refused = host_refusal(header, self.allowed)
        if refused:
            return _plain(start_response, "400 Bad Request", refused)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _plain(start_response, "400 Bad Request", "Content-Length is not a number.")
        if length > self.limit:
            return _plain(
                start_response, "413 Request Entity Too Large", size_refusal(length, self.limit)
            )
        return self.app(environ, start_response)


def _plain(start_response: Callable, status: str, text: str) -> list[bytes]:
    body = (text + "\n").encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def too_large(config: ServerConfig) -> Callable:
    """Flask error handler of 413 (a body of undeclared length over MAX_CONTENT_LENGTH)."""

    def handler(_err):
        text = (
            f"The request body is larger than this server's limit of "
            f"{_megabytes(config.max_request_bytes)} (max_request_bytes)."
        )
        return Response(text + "\n", status=413, mimetype="text/plain")

    return handler


# ---- widget values -----------------------------------------------------------------------------
def _key(cid) -> str:
    return json.dumps(cid, sort_keys=True, separators=(",", ":")) if isinstance(cid, dict) else cid


def widget_kinds(layout) -> dict[str, str]:
    """{component id key: shape} of the page's value widgets: "text" (dcc.Input: text or a
    number), "choice" (RadioItems, single Dropdown: one option value), "choices" (Checklist,
    multi Dropdown: a list of option values); the session store: "token"."""
    kinds = {ids.SESSION: "token"}
    for comp in _walk(layout):
        cid = getattr(comp, "id", None)
        if cid is None:
            continue
        if isinstance(comp, dcc.Input):
            kinds[_key(cid)] = "text"
        elif isinstance(comp, dcc.Checklist) or (
            isinstance(comp, dcc.Dropdown) and getattr(comp, "multi", False)
        ):
            kinds[_key(cid)] = "choices"
        elif isinstance(comp, (dcc.RadioItems, dcc.Dropdown)):
            kinds[_key(cid)] = "choice"
    return kinds


def _walk(comp):
    yield comp
    children = getattr(comp, "children", None)
    if children is None or isinstance(children, (str, int, float)):
        return
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            yield from _walk(child)


def _shape_ok(kind: str, value) -> bool:
    if kind == "token":
        return value is None or (isinstance(value, str) and len(value) <= 200)
    if kind == "choices":
        return isinstance(value, SCALARS) or (
            isinstance(value, list) and all(isinstance(v, SCALARS) for v in value)
        )
    return isinstance(value, SCALARS)  # "text", "choice"


_WHAT = {
    "text": "text or a number",
    "choice": "one of its options",
    "choices": "a list of its options",
    "token": "a session token",
}


def value_refusal(kinds: dict[str, str], items, max_chars: int) -> str | None:
    """Why the callback inputs/states ``items`` (Dash's request format) are refused: a value
    widget's value of a shape no browser widget sends, or text over ``max_chars``; None when
    fine. Other properties (clicks, stores, an upload's contents) are not checked here."""
    for item in items or ():
        if isinstance(item, list):  # an ALL/MATCH pattern: one entry per component
            refused = value_refusal(kinds, item, max_chars)
            if refused:
                return refused
            continue
        if not isinstance(item, dict):
            return "Callback request is malformed (an input is not an object)."
        cid, prop, value = item.get("id"), item.get("property"), item.get("value")
        kind = kinds.get(_key(cid)) if isinstance(cid, (str, dict)) else None
        name = clip(cid.get("name", _key(cid)) if isinstance(cid, dict) else cid)
        if not kind or prop not in ("value", "data"):
            continue  # not a value widget (buttons, stores, the upload's file contents)
        if not _shape_ok(kind, value):
            return f"Not accepted: {name} must be {_WHAT[kind]}, got a {type(value).__name__}."
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str) and len(text) > max_chars:
                return (
                    f"Not accepted: {name} holds {len(text):,} characters; the limit is "
                    f"{max_chars:,} (max_field_chars)."
                )
    return None


def callback_guard(layout, config: ServerConfig) -> Callable[[], Response | None]:
    """A Flask before_request hook refusing Dash callback requests whose widget values are
    not what the page's widgets send (``value_refusal``)."""
    kinds = widget_kinds(layout)

    def check() -> Response | None:
        if request.method != "POST" or not request.path.endswith(CALLBACK_ROUTE):
            return None
        body = request.get_json(silent=True)  # cached: Dash reads the same parsed body
        if not isinstance(body, dict):
            return Response("Callback request is not a JSON object.\n", 400, mimetype="text/plain")
        items = [*(body.get("inputs") or []), *(body.get("state") or [])]
        refused = value_refusal(kinds, items, config.max_field_chars)
        if refused:
            return Response(refused + "\n", 400, mimetype="text/plain")
        return None

    return check
