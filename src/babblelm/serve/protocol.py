"""The HTTP/1.1 protocol under the application: uvicorn's h11 protocol with a deadline per request and
OpenAI-shaped answers to what never reaches the application (malformed HTTP, a request sent too slowly)."""

from __future__ import annotations

import http
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .schema import error_body


def raw_error(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, for use below the application."""
    body = json.dumps(error_body(status, message)).encode()
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body



class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol where each request must arrive in full within `timeout` seconds of the connection's
    start, the previous response or the request's first byte. Past that, a connection that sent part of a request
    is answered 408 and closed, an idle one is closed. Malformed HTTP is answered 400 in OpenAI's error shape."""

    def __init__(self, *args, timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.timeout, self.deadline = timeout, None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._arm()  # the first byte of a new request
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self.transport.write(raw_error(400, "malformed HTTP/1.1 request: expected a request line, headers and a "
                                             "body framed by Content-Length or chunked encoding"))
        self.transport.close()

    def _arm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = self.loop.call_later(self.timeout, self._expire)

    def _expire(self) -> None:
        if self.transport.is_closing() or self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return  # the request arrived in full: its response is the application's business
        partial = self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]
        if partial and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no response started
            message = f"the request did not arrive in full within {self.timeout:g} seconds"
            self.transport.write(raw_error(408, message))
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application's reads see a disconnect; its writes go nowhere
            self.cycle.message_event.set()
        self.transport.close()
