"""
The first byte of a connection to a TLS port: a handshake goes on to TLS,
anything else is told it is speaking plain HTTP to an HTTPS server.
"""

from __future__ import annotations

from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from txregistry.web.channel import _TLS_HANDSHAKE


class _TLSOnly(ProtocolWrapper):
    """
    Hands a connection that starts with a TLS handshake record to the TLS
    protocol it wraps; answers any other with registry:2's (Go's) 400 and
    closes it, rather than taking a request line for a broken ClientHello.
    """

    _peeked = False
    _refused = False

    def dataReceived(self, data: bytes) -> None:
        if not self._peeked:
            self._peeked = True
            if not data.startswith(_TLS_HANDSHAKE):
                self._refused = True
                assert self.transport is not None
                self.transport.write(
                    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
                )
                self.transport.loseConnection()
        if not self._refused:
            super().dataReceived(data)


class TLSOnlyFactory(WrappingFactory):
    """
    Wraps the factory of a TLS protocol (a C{TLSMemoryBIOFactory}) so that
    plain HTTP sent to it gets an answer, at once, instead of a handshake
    that waits for the rest of a ClientHello until the client gives up.
    """

    protocol = _TLSOnly
    noisy = False
