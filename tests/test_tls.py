"""
TLS from the configuration (registry:2's C{http.tls}), with real clients:
curl and skopeo verify the certificate, client certificates are demanded
where C{clientcas} says, C{minimumtls} and C{ciphersuites} hold, and plain
HTTP on the TLS port is answered with a 400 at once.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator

import attrs
import pytest

import txregistry
from tests.helpers import RegistryProcess

pytest.importorskip("OpenSSL", reason="TLS needs pyOpenSSL (pip install 'txregistry[tls]')")

from cryptography import x509  # noqa: E402  (pyOpenSSL's dependency)
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

CURL = shutil.which("curl")
SKOPEO = shutil.which("skopeo")


@attrs.frozen
class Files:
    """
    Throwaway PEM files: a CA, the server's certificate for 127.0.0.1 and its
    key, a client certificate the CA signed and one another CA signed; a
    server certificate an intermediate CA signed, in one file with the
    intermediate's, and a bundle of both CAs.
    """

    directory: str
    ca: str
    certificate: str
    key: str
    client: tuple[str, str]
    stranger: tuple[str, str]
    chain: str
    bundle: str


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write(path: str, certificate: x509.Certificate, key: object = None) -> str:
    with open(path, "wb") as f:
        if key is not None:
            f.write(
                key.private_bytes(  # type: ignore[attr-defined]
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        else:
            f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def _concatenate(path: str, certificates: list[x509.Certificate]) -> str:
    with open(path, "wb") as f:
        f.write(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    directory = str(tmp_path_factory.mktemp("tls"))

    def at(name: str) -> str:
        return os.path.join(directory, name)

    caKey = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("txregistry test CA", caKey, None, ca=True)
    otherKey = ec.generate_private_key(ec.SECP256R1())
    other = _issue("another CA", otherKey, None, ca=True)
    intermediate = _issue("txregistry intermediate CA", caKey, (ca, caKey), ca=True)
    # RSA, for the ECDHE-RSA cipher suites registry:2's documentation names.
    serverKey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = _issue("127.0.0.1", serverKey, (ca, caKey), server=True)

    def client(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _issue(name, key, issuer)
        return _write(at(f"{name}.cert"), certificate), _write(at(f"{name}.key"), certificate, key)

    return Files(
        directory=directory,
        ca=_write(at("ca.pem"), ca),
        certificate=_write(at("server.pem"), server),
        key=_write(at("server.key"), server, serverKey),
        client=client("client", (ca, caKey)),
        stranger=client("stranger", (other, otherKey)),
        chain=_concatenate(
            at("chain.pem"),
            [_issue("127.0.0.1", serverKey, (intermediate, caKey), server=True), intermediate],
        ),
        bundle=_concatenate(at("bundle.pem"), [other, ca]),
    )


class TLSRegistry(RegistryProcess):
    """
    C{txregistry serve} of a configuration that listens on C{http.addr}
    with C{http.tls}.
    """

    def __init__(self, root: str, tls: str) -> None:
        super().__init__(root)
        self.tls = tls
        self.base = f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        path = self.writeConfig()
        with open(path, "a") as f:
            f.write("  tls:\n" + "".join(f"    {line}\n" for line in self.tls.splitlines()))
        return [*super().command()[:4], path]


def tlsServing(
    tmp: str, files: Files, extra: str = "", certificate: str | None = None
) -> Iterator[TLSRegistry]:
    certificate = certificate or files.certificate
    process = TLSRegistry(
        os.path.join(tmp, "store"), f"certificate: {certificate}\nkey: {files.key}\n{extra}"
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def secured(files: Files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    yield from tlsServing(str(tmp_path_factory.mktemp("plain-tls")), files)


@pytest.fixture(scope="module")
def mutual(files: Files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    yield from tlsServing(str(tmp_path_factory.mktemp("mutual")), files, f"clientcas:\n  - {files.ca}")


def context(
    files: Files,
    client: tuple[str, str] | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    result = ssl.create_default_context(cafile=files.ca)
    if client is not None:
        result.load_cert_chain(*client)
    if maximum is not None:
        result.maximum_version = maximum
    if ciphers is not None:
        result.set_ciphers(ciphers)
    return result


def get(port: int, context: ssl.SSLContext, path: str = "/v2/") -> int:
    """
    The status of C{GET path} over TLS; raises if the handshake is refused.
    """
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


# What a refused handshake looks like to Python's client: an alert, or in
# TLS 1.3 (where the client finishes first) a connection reset or closed.
REFUSED = (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
def test_curl_verifies_the_certificate(secured: TLSRegistry, files: Files) -> None:
    assert CURL is not None
    command = [CURL, "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}"]
    result = subprocess.run(
        [*command, "--cacert", files.ca, f"{secured.base}/v2/"], capture_output=True, text=True, timeout=30
    )
    assert result.stdout == "200", result.stderr
    # Without the CA the certificate is not trusted: curl checked it.
    result = subprocess.run([*command, f"{secured.base}/v2/"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 60, result.stderr


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    assert SKOPEO is not None
    return subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=120)


def certDir(files: Files, name: str, client: tuple[str, str] | None = None) -> str:
    """
    A directory as skopeo's --cert-dir takes it: CAs in *.crt, a client's
    certificate and key in *.cert and *.key.
    """
    directory = os.path.join(files.directory, name)
    os.makedirs(directory, exist_ok=True)
    shutil.copy(files.ca, os.path.join(directory, "ca.crt"))
    if client is not None:
        shutil.copy(client[0], os.path.join(directory, "client.cert"))
        shutil.copy(client[1], os.path.join(directory, "client.key"))
    return directory


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")
def test_skopeo_copies_in_and_out_verifying_the_certificate(
    secured: TLSRegistry, files: Files, tmp_path: object
) -> None:
    from tests.test_skopeo import makeLayout

    source, back = os.path.join(str(tmp_path), "source"), os.path.join(str(tmp_path), "back")
    manifest = makeLayout(source, "1.0")
    image = f"docker://127.0.0.1:{secured.port}/tls/app:1.0"
    certs = certDir(files, "skopeo")
    copied = skopeo("copy", "--dest-tls-verify=true", f"--dest-cert-dir={certs}", f"oci:{source}:1.0", image)
    assert copied.returncode == 0, copied.stderr
    copied = skopeo("copy", "--src-tls-verify=true", f"--src-cert-dir={certs}", image, f"oci:{back}:1.0")
    assert copied.returncode == 0, copied.stderr
    for descriptor in manifest["layers"]:  # type: ignore[attr-defined]
        digest = descriptor["digest"].split(":")[1]
        with open(os.path.join(back, "blobs/sha256", digest), "rb") as f:
            assert f.read() == open(os.path.join(source, "blobs/sha256", digest), "rb").read()
    # Without the CA skopeo does not trust the registry.
    empty = os.path.join(str(tmp_path), "no-certificates")
    os.makedirs(empty)
    refused = skopeo("inspect", "--tls-verify=true", f"--cert-dir={empty}", image)
    assert refused.returncode != 0
    assert "certificate" in refused.stderr


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")
def test_skopeo_with_a_client_certificate(mutual: TLSRegistry, files: Files, tmp_path: object) -> None:
    from tests.test_skopeo import makeLayout

    source = os.path.join(str(tmp_path), "source")
    makeLayout(source, "1.0")
    image = f"docker://127.0.0.1:{mutual.port}/tls/app:1.0"
    withCertificate = certDir(files, "skopeo-client", files.client)
    copied = skopeo("copy", f"--dest-cert-dir={withCertificate}", f"oci:{source}:1.0", image)
    assert copied.returncode == 0, copied.stderr
    assert skopeo("inspect", f"--cert-dir={withCertificate}", image).returncode == 0
    refused = skopeo("inspect", f"--cert-dir={certDir(files, 'skopeo')}", image)
    assert refused.returncode != 0


def test_tls_12_with_registry2s_default_cipher_suites(secured: TLSRegistry, files: Files) -> None:
    assert get(secured.port, context(files, maximum=ssl.TLSVersion.TLSv1_2)) == 200
    # registry:2 offers only ECDHE with AEAD by default: no CBC.
    with pytest.raises(REFUSED):
        get(secured.port, context(files, maximum=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-SHA"))


def test_plain_http_on_the_tls_port_gets_400_at_once(secured: TLSRegistry) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", secured.port), timeout=5) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer == b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    # Closed by the server, not after a timeout.
    assert time.monotonic() - started < 2


def test_client_certificates_from_clientcas(mutual: TLSRegistry, files: Files) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        assert get(mutual.port, context(files, files.client, maximum=version)) == 200
        with pytest.raises(REFUSED):
            get(mutual.port, context(files, maximum=version))
        with pytest.raises(REFUSED):
            get(mutual.port, context(files, files.stranger, maximum=version))


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
def test_curl_with_and_without_a_client_certificate(mutual: TLSRegistry, files: Files) -> None:
    assert CURL is not None
    command = [CURL, "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", files.ca]
    url = f"{mutual.base}/v2/"
    result = subprocess.run(
        [*command, "--cert", files.client[0], "--key", files.client[1], url],
        timeout=30,
        capture_output=True,
        text=True,
    )
    assert result.stdout == "200", result.stderr
    result = subprocess.run([*command, url], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and result.stdout in ("", "000"), result


def test_a_chain_and_a_bundle_of_cas(files: Files, tmp_path: object) -> None:
    for process in tlsServing(str(tmp_path), files, f"clientcas: [{files.bundle}]", certificate=files.chain):
        # The client trusts only the root: the registry sends the intermediate.
        assert get(process.port, context(files, files.client)) == 200
        # Every CA of the bundle signs clients.
        assert get(process.port, context(files, files.stranger)) == 200
        with pytest.raises(REFUSED):
            get(process.port, context(files))


def test_minimum_tls_13(files: Files, tmp_path: object) -> None:
    for process in tlsServing(str(tmp_path), files, "minimumtls: tls1.3"):
        assert get(process.port, context(files)) == 200
        with pytest.raises(REFUSED):
            get(process.port, context(files, maximum=ssl.TLSVersion.TLSv1_2))


def test_cipher_suites_restrict_tls_12(files: Files, tmp_path: object) -> None:
    suites = "ciphersuites:\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  - TLS_AES_128_GCM_SHA256"
    for process in tlsServing(str(tmp_path), files, suites):
        tls12 = ssl.TLSVersion.TLSv1_2
        assert get(process.port, context(files, maximum=tls12, ciphers="ECDHE-RSA-AES128-GCM-SHA256")) == 200
        with pytest.raises(REFUSED):
            get(process.port, context(files, maximum=tls12, ciphers="ECDHE-RSA-AES256-GCM-SHA384"))
        # TLS 1.3's suites are not configurable, in Go as in OpenSSL.
        assert get(process.port, context(files)) == 200


@pytest.mark.parametrize(
    "tls, message",
    [
        ("certificate: {missing}\nkey: {key}", "http.tls.certificate: cannot read {missing}: No such file"),
        ("certificate: {cert}\nkey: {missing}", "http.tls.key: cannot read {missing}: No such file"),
        ("certificate: {cert}\nkey: {cert}", "http.tls.key: {cert} holds no PEM private key"),
        ("certificate: {key}\nkey: {key}", "http.tls.certificate: {key} holds no PEM certificate"),
        (
            "certificate: {cert}\nkey: {other}",
            "http.tls.key: {other} is not the key of the certificate in {cert}",
        ),
        ("certificate: {cert}\nkey: {key}\nclientcas: [{missing}]", "http.tls.clientcas[0]: cannot read"),
        ("certificate: {cert}\nkey: {key}\nclientcas: [{key}]", "http.tls.clientcas[0]: {key} holds no"),
    ],
)
def test_files_that_cannot_be_used_stop_start_up(
    files: Files, tls: str, message: str, tmp_path: object
) -> None:
    store = os.path.join(str(tmp_path), "store")
    names = {
        "cert": files.certificate,
        "key": files.key,
        "other": files.client[1],
        "missing": os.path.join(files.directory, "missing.pem"),
    }
    indented = "".join(f"    {line}\n" for line in tls.format(**names).splitlines())
    config = txregistry.parseConfig(
        f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {store}}}}}\nhttp:\n  tls:\n{indented}", {}
    )
    with pytest.raises(txregistry.ConfigError) as caught:
        txregistry.makeService(config)
    assert str(caught.value).startswith(message.format(**names)), caught.value
    assert "\n" not in str(caught.value)
    # Known before anything is made on disk.
    assert not os.path.exists(store)


def test_an_encrypted_key_stops_start_up(files: Files, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "encrypted.key")
    key = serialization.load_pem_private_key(open(files.key, "rb").read(), None)
    with open(path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
    config = txregistry.parseConfig(
        "version: 0.1\nstorage: {inmemory: {}}\n"
        f"http:\n  tls:\n    certificate: {files.certificate}\n    key: {path}\n",
        {},
    )
    with pytest.raises(txregistry.ConfigError) as caught:
        txregistry.makeService(config)
    assert str(caught.value) == (
        f"http.tls.key: {path} is encrypted; give it unencrypted (registry:2 takes no passphrase)"
    )


def test_a_key_openssl_refuses_stops_start_up(tmp_path: object) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    certificate = _issue("127.0.0.1", key, None, server=True)
    paths = _write(os.path.join(str(tmp_path), "c.pem"), certificate), os.path.join(str(tmp_path), "k.pem")
    _write(paths[1], certificate, key)
    from OpenSSL import SSL

    try:
        SSL.Context(SSL.TLS_SERVER_METHOD).use_certificate(certificate)
    except SSL.Error:
        pass
    else:
        pytest.skip("this OpenSSL's security level takes 1024-bit RSA keys")
    config = txregistry.parseConfig(
        f"version: 0.1\nstorage: {{inmemory: {{}}}}\nhttp:\n  tls:\n    certificate: {paths[0]}\n"
        f"    key: {paths[1]}\n",
        {},
    )
    with pytest.raises(txregistry.ConfigError) as caught:
        txregistry.makeService(config)
    assert str(caught.value) == f"http.tls.certificate: {paths[0]} cannot be used: ee key too small"
