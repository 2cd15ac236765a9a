"""
The HTTP connection of a registry's own site.
"""

from __future__ import annotations

import re

from twisted.web.http import HTTPChannel

# The first byte of every TLS record that starts a handshake.
TLS_HANDSHAKE = b"\x16"

# An RFC 3986 host (a registered name, an IPv4 address or a bracketed IPv6
# one) and an optional port: what may go into the URLs of Location headers.
_HOST = re.compile(rb"(?:[A-Za-z0-9._~%!$&'()*+,;=-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")


def isHost(value: bytes) -> bool:
    """
    Whether C{value} is a host[:port] that may go into a URL we answer with.
    """
    return _HOST.fullmatch(value) is not None


_PHRASES = {400: "Bad Request", 414: "URI Too Long", 431: "Request Header Fields Too Large"}

# The largest length a Go server (registry:2) takes, an int64.
_MAX_CONTENT_LENGTH = 2**63 - 1


class RegistryChannel(HTTPChannel):
    """
    An L{HTTPChannel} that turns TLS away at once on a plain HTTP port, and
    answers a request it cannot take with a whole response, as registry:2
    (Go's net/http) does, before any resource sees it.

    Container clients (skopeo, containerd, docker) try HTTPS first and fall
    back to plain HTTP for an insecure registry only once the TLS handshake
    fails; a plain server that waits for a request line that a ClientHello
    never ends makes every client stall until its handshake timeout.
    """

    _firstData = True
    _refused = False

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            # What follows a refused request is not parsed: it could only be
            # taken for requests of its own.
            return
        if self._firstData:
            self._firstData = False
            if data.startswith(TLS_HANDSHAKE):
                assert self.transport is not None
                self.transport.write(
                    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTPS request to an HTTP server.\n"
                )
                self.transport.loseConnection()
                return
        super().dataReceived(data)

    def headerReceived(self, line: bytes) -> bool:
        if line[:1] not in b"HhCc":
            # Neither Host nor Content-Length: most headers, at no cost.
            return bool(super().headerReceived(line))
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"host":
            # The Host goes into the Location of answers: one that is no
            # host[:port] would make them point elsewhere, or be malformed.
            if self.requests[-1].requestHeaders.hasHeader(b"host"):
                return self._refuse(400, "several Host headers")
            if not isHost(value):
                return self._refuse(400, "malformed Host header")
        elif name == b"content-length":
            # HTTPChannel takes any run of digits, however long.
            if not (value.isdigit() and len(value) <= 19 and int(value) <= _MAX_CONTENT_LENGTH):
                return self._refuse(400, "bad Content-Length")
        return bool(super().headerReceived(line))

    def _send100Continue(self) -> None:
        # Private, as the only place to say it: a request dispatched while
        # its headers were being read may already have its final answer, and
        # a 100 after that would be taken for the next response. Without
        # the 100, the client need not send its body: none is waited for.
        request = self.requests[-1] if self.requests else None
        if request is not None and request.startedWriting:
            notComing = getattr(request, "bodyNotComing", None)
            if notComing is not None:
                notComing()
            return
        super()._send100Continue()

    def lineLengthExceeded(self, line: bytes) -> None:
        # HTTPChannel keeps _receivedHeaderSize (a documented but private
        # attribute) at 0 until a line of the request has arrived whole.
        if self._receivedHeaderSize == 0:
            self._refuse(414, "request line too long")
        else:
            self._refuse(431)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # A private hook, the only one: HTTPChannel calls it for every
        # request it cannot parse, with a bare status line for an answer.
        if self._receivedHeaderSize > self.totalHeadersSize:
            self._refuse(431)
        else:
            self._refuse(400)

    def _refuse(self, status: int, reason: str | None = None) -> bool:
        """
        Answer C{status} and close the connection; C{False}, for
        L{headerReceived} to return.
        """
        if self._refused:
            return False
        self._refused = True
        phrase = f"{status} {_PHRASES[status]}"
        body = (f"{phrase}: {reason}" if reason else phrase).encode()
        assert self.transport is not None
        self.transport.write(
            f"HTTP/1.1 {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        self.loseConnection()
        return False
