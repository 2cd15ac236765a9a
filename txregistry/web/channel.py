"""
The HTTP connection of a registry's own site.
"""

from __future__ import annotations

from twisted.web.http import HTTPChannel

# The first byte of every TLS record that starts a handshake.
_TLS_HANDSHAKE = b"\x16"


class RegistryChannel(HTTPChannel):
    """
    An L{HTTPChannel} that turns TLS away at once on a plain HTTP port.

    Container clients (skopeo, containerd, docker) try HTTPS first and fall
    back to plain HTTP for an insecure registry only once the TLS handshake
    fails; a plain server that waits for a request line that a ClientHello
    never ends makes every client stall until its handshake timeout.
    """

    _firstData = True

    def dataReceived(self, data: bytes) -> None:
        if self._firstData:
            self._firstData = False
            if data.startswith(_TLS_HANDSHAKE):
                assert self.transport is not None
                self.transport.write(
                    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTPS request to an HTTP server.\n"
                )
                self.transport.loseConnection()
                return
        super().dataReceived(data)
