"""
Serving TLS as C{http.tls} says: its settings, read from their files at
start-up, and the first byte of each connection looked at, so that a
handshake goes on to TLS and anything else is told it is speaking plain
HTTP to an HTTPS server.

pyOpenSSL (the tls extra) is imported only when TLS is configured.
"""

from __future__ import annotations

import re

from twisted.internet.interfaces import IOpenSSLContextFactory, IProtocolFactory
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from txregistry.config import TLS, ConfigError
from txregistry.web.channel import TLS_HANDSHAKE


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
            if not data.startswith(TLS_HANDSHAKE):
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


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from None


_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def contextFactory(tls: TLS) -> IOpenSSLContextFactory:
    """
    The TLS settings that C{tls} describes, its files read now.

    @raise ConfigError: if pyOpenSSL is missing or a file cannot be used.
    """
    try:
        # Imported here: pyOpenSSL is the tls extra's, not needed otherwise.
        from OpenSSL import SSL, crypto
        from twisted.internet import ssl
    except ImportError:
        raise ConfigError("http.tls: TLS needs pyOpenSSL (pip install 'txregistry[tls]')") from None

    def certificates(key: str, path: str) -> list[ssl.Certificate]:
        # A file may hold a chain (or, for CAs, a bundle): every certificate in it.
        blocks = _PEM_CERTIFICATE.findall(_read(key, path))
        try:
            if blocks:
                return [ssl.Certificate.loadPEM(block) for block in blocks]
        except crypto.Error:
            pass
        raise ConfigError(f"{key}: {path} holds no PEM certificate that can be read")

    chain = certificates("http.tls.certificate", tls.certificate)
    keyPEM = _read("http.tls.key", tls.key)
    if b"ENCRYPTED" in keyPEM:
        # OpenSSL would ask for its passphrase on the terminal.
        raise ConfigError(
            f"http.tls.key: {tls.key} is encrypted; give it unencrypted (registry:2 takes no passphrase)"
        )
    try:
        keyPair = ssl.KeyPair.load(keyPEM, crypto.FILETYPE_PEM)
    except crypto.Error:
        raise ConfigError(f"http.tls.key: {tls.key} holds no PEM private key that can be read") from None
    if not chain[0].getPublicKey().matches(keyPair):
        raise ConfigError(f"http.tls.key: {tls.key} is not the key of the certificate in {tls.certificate}")
    authorities = [
        certificate
        for index, path in enumerate(tls.clientCAs)
        for certificate in certificates(f"http.tls.clientcas[{index}]", path)
    ]
    options = ssl.CertificateOptions(
        privateKey=keyPair.original,
        certificate=chain[0].original,
        extraCertChain=[certificate.original for certificate in chain[1:]],
        # With a trust root, a client must present a certificate it signed.
        trustRoot=ssl.trustRootFromCertificates(authorities) if authorities else None,
        raiseMinimumTo={"tls1.2": ssl.TLSVersion.TLSv1_2, "tls1.3": ssl.TLSVersion.TLSv1_3}[tls.minimumTLS],
        acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(":".join(tls.ciphers)),
    )
    try:
        # Made now, so that what OpenSSL refuses (a key too small for its
        # security level) stops start-up.
        options.getContext()
    except SSL.Error as e:
        reason = "; ".join(str(error[2]) for error in e.args[0]) if e.args and e.args[0] else e
        raise ConfigError(f"http.tls.certificate: {tls.certificate} cannot be used: {reason}") from None
    return options


def behindTLS(options: IOpenSSLContextFactory, factory: IProtocolFactory) -> IProtocolFactory:
    """
    C{factory} behind TLS on a plain stream endpoint (what C{ssl:} endpoints
    do, but with the first byte looked at before the handshake).
    """
    from twisted.protocols.tls import TLSMemoryBIOFactory

    return TLSOnlyFactory(TLSMemoryBIOFactory(options, False, factory))
