"""
registry:2's config.yml and environment overrides, and how start-up
treats configurations it cannot use.
"""

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from txregistry.config import (
    S3,
    TLS,
    Config,
    ConfigError,
    Filesystem,
    Htpasswd,
    InMemory,
    Proxy,
    Storage,
    StorageCheck,
    Upstream,
    isPrivate,
    listenEndpoint,
    loadConfig,
    parseConfig,
    parseDuration,
    parseSize,
)
from txregistry.service import registryOf

# Debian's docker-registry package ships this as /etc/docker/registry/config.yml,
# REGISTRY2_OPEN with REGISTRY2_AUTH.
REGISTRY2_OPEN = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""
REGISTRY2_AUTH = """\
auth:
  htpasswd:
    realm: basic-realm
    path: /etc/docker/registry
"""
REGISTRY2_DEFAULT = REGISTRY2_OPEN + REGISTRY2_AUTH


def test_no_file_is_the_embedded_default() -> None:
    config = parseConfig(None, environ={})
    assert config.storage.backend == Filesystem("registry-data")
    assert config.http.listen == ("tcp:5000",)
    assert config.warnings == ()


def test_registry2_default_file() -> None:
    config = parseConfig(REGISTRY2_OPEN, environ={})
    assert config.storage.backend == Filesystem("/var/lib/docker-registry")
    assert config.storage.deleteEnabled
    assert config.http.listen == ("tcp:5000",)
    assert config.http.headers == {"X-Content-Type-Options": ("nosniff",)}
    unsupported = {w.split()[2] for w in config.warnings}
    assert unsupported == set()
    assert config.health.storageDriver == StorageCheck(
        enabled=True, interval=timedelta(seconds=10), threshold=3
    )


def test_supported_keys() -> None:
    config = parseConfig(
        """
version: 0.1
log:
  level: debug
  accesslog:
    disabled: true
storage:
  inmemory:
  maintenance:
    readonly:
      enabled: true
    uploadpurging:
      enabled: true
      age: 1h30m
      interval: 10m
      dryrun: true
http:
  addr: 127.0.0.1:5001
  host: https://registry.example.test
""",
        environ={},
    )
    assert config.warnings == ()
    assert config.storage.backend == InMemory()
    assert config.storage.readOnly
    assert config.storage.uploadPurging.age == timedelta(hours=1, minutes=30)
    assert config.storage.uploadPurging.interval == timedelta(minutes=10)
    assert config.storage.uploadPurging.dryRun
    assert config.http.listen == ("tcp:5001:interface=127.0.0.1",)
    assert config.log.level == "debug"
    assert not config.log.accessLog


def test_environment_overrides() -> None:
    environ = {
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/from/env",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        "REGISTRY_HTTP_ADDR": "[::1]:6000",
        "REGISTRY_LOG_LEVEL": "warn",
        "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE": "2h",
        "UNRELATED": "x",
    }
    config = parseConfig(REGISTRY2_OPEN, environ)
    assert config.storage.backend == Filesystem("/from/env")
    assert config.storage.deleteEnabled is True
    assert config.http.listen == (r"tcp6:6000:interface=\:\:1",)
    assert config.log.level == "warn"
    assert config.storage.uploadPurging.age == timedelta(hours=2)


def test_environment_parent_before_child() -> None:
    environ = {
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/child",
        "REGISTRY_STORAGE": "filesystem",
    }
    text = "version: 0.1\nstorage:\n  inmemory: {}\n  delete:\n    enabled: true\n"
    config = parseConfig(text, environ)
    # REGISTRY_STORAGE replaced the driver (keeping delete), then its child
    # set the root, whatever order the environment lists them in.
    assert config.storage.backend == Filesystem("/child")
    assert config.storage.deleteEnabled


def test_environment_without_file() -> None:
    config = parseConfig(None, {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/srv/registry"})
    assert config.storage.backend == Filesystem("/srv/registry")


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 0.1\nstorage: [\n", "config: not valid YAML at line"),
        ("- a\n- b\n", "config: expected a mapping"),
        ("storage:\n  inmemory:\n", "version: missing"),
        ("version: 0.2\nstorage:\n  inmemory:\n", "version: only version 0.1"),
        ("version: 0.1\n", "storage: no storage driver"),
        (
            "version: 0.1\nstorage:\n  inmemory:\n  filesystem:\n    rootdirectory: /x\n",
            "storage: exactly one storage driver",
        ),
        (
            "version: 0.1\nstorage:\n  azure:\n    accountname: a\n",
            "storage.azure: this storage driver is not supported yet",
        ),
        ("version: 0.1\nstorage:\n  s3:\n    region: x\n", "storage.s3.bucket: the bucket"),
        ("version: 0.1\nstorage:\n  s3:\n    bucket: b\n", "storage.s3.region: missing"),
        (
            "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n    chunksize: 1000\n",
            "storage.s3.chunksize: must be at least 5242880",
        ),
        (
            "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n    accesskey: a\n",
            "storage.s3.accesskey: give both",
        ),
        (
            "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n    v4auth: false\n",
            "storage.s3.v4auth: only SigV4",
        ),
        ("version: 0.1\nstorage:\n  floppy: {}\n", "storage.floppy: unknown storage driver"),
        (
            "version: 0.1\nstorage:\n  inmemory:\n  delete:\n    enabled: sure\n",
            "storage.delete.enabled: expected true or false, got 'sure'",
        ),
        (
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: 5\n",
            "storage.filesystem.rootdirectory: expected a string, got 5",
        ),
        ("version: 0.1\nstorage:\n  inmemory:\nhttp:\n  addr: nowhere\n", "http.addr:"),
        ("version: 0.1\nstorage:\n  inmemory:\nhttp: [1]\n", "http: expected a mapping"),
        ("version: 0.1\nstorage:\n  inmemory:\nlog:\n  level: loud\n", "log.level: expected one of"),
        (
            "version: 0.1\nstorage:\n  inmemory:\n  maintenance:\n    uploadpurging:\n      age: forever\n",
            "storage.maintenance.uploadpurging.age: 'forever' is not a duration",
        ),
    ],
)
def test_bad_configurations(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parseConfig(text, environ={})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text, environ, message",
    [
        (
            "auth:\n  token:\n    realm: https://auth.example.test/token\n",
            {},
            "auth.token.service: required",
        ),
        ("auth:\n  token:\n    realm: r\n    service: s\n", {}, "auth.token.issuer: required"),
        ("auth: silly\n", {}, "auth.silly: not supported"),
        # A kind beside an empty or null key is still a kind.
        ("auth:\n  ~: {}\n  htpasswd:\n    realm: r\n    path: p\n", {}, "auth.None: not supported"),
        ('auth:\n  "": {}\n', {}, "auth.'': not supported"),
        ("auth:\n  htpasswd:\n    path: p\n  silly: {}\n", {}, "auth.silly: not supported"),
        ("", {"REGISTRY_AUTH_HTPASSWD_REALM": "basic-realm"}, "auth.htpasswd.path: required"),
        ("auth:\n  htpasswd:\n    path: p\n", {}, "auth.htpasswd.realm: required"),
        ("auth:\n  htpasswd:\n", {}, "auth.htpasswd.realm: required"),
        ("", {"REGISTRY_AUTH": "silly"}, "auth.silly: not supported"),
        ("auth: silly\n", {"REGISTRY_AUTH_SILLY_REALM": "r"}, "auth.silly: not supported"),
    ],
)
def test_security_we_lack_stops_start_up(text: str, environ: dict[str, str], message: str) -> None:
    """
    A configuration that asks for authentication txregistry does not have,
    or for htpasswd without what it needs, is refused rather than served
    open.
    """
    with pytest.raises(ConfigError) as caught:
        parseConfig("version: 0.1\nstorage: {inmemory: {}}\n" + text, environ)
    assert str(caught.value).startswith(message)
    assert "refusing to" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_tls() -> None:
    config = parseConfig(
        "version: 0.1\nstorage: {inmemory: {}}\nhttp:\n  addr: 127.0.0.1:5443\n  tls:\n"
        "    certificate: /c.pem\n    key: /k.pem\n    clientcas: [/ca1.pem, /ca2.pem]\n"
        "    minimumtls: tls1.3\n    ciphersuites:\n      - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
        "      - TLS_AES_128_GCM_SHA256\n      - TLS_RSA_WITH_AES_256_CBC_SHA\n",
        environ={},
    )
    assert config.http.listen == ("tcp:5443:interface=127.0.0.1",)
    # TLS 1.3's suites are always on: only TLS 1.2's are named to OpenSSL.
    assert config.http.tls == TLS(
        certificate="/c.pem",
        key="/k.pem",
        clientCAs=("/ca1.pem", "/ca2.pem"),
        minimumTLS="tls1.3",
        ciphers=("ECDHE-RSA-AES128-GCM-SHA256", "AES256-SHA"),
    )
    assert config.warnings == ()


def test_tls_defaults_and_environment() -> None:
    environ = {"REGISTRY_HTTP_TLS_CERTIFICATE": "/c.pem", "REGISTRY_HTTP_TLS_KEY": "/k.pem"}
    config = parseConfig("version: 0.1\nstorage: {inmemory: {}}\n", environ)
    assert config.http.tls == TLS(certificate="/c.pem", key="/k.pem")
    # registry:2's defaults: TLS 1.2 and up, ECDHE with AEAD only.
    assert config.http.tls.minimumTLS == "tls1.2"
    assert config.http.tls.ciphers == (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    )
    # An empty list is registry:2's default too; an empty section is no TLS.
    empty = parseConfig(
        "version: 0.1\nstorage: {inmemory: {}}\nhttp:\n  tls:\n    certificate: /c\n    key: /k\n"
        "    ciphersuites: []\n",
        environ={},
    )
    assert empty.http.tls is not None and empty.http.tls.ciphers == config.http.tls.ciphers
    assert parseConfig("version: 0.1\nstorage: {inmemory: {}}\nhttp: {tls: {}}\n", {}).http.tls is None


_TLS = "http:\n  tls:\n    certificate: /c.pem\n    key: /k.pem\n"


@pytest.mark.parametrize(
    "text, environ, message",
    [
        (
            "http:\n  tls:\n    letsencrypt:\n      cachefile: /c\n",
            {},
            "http.tls.letsencrypt: certificates from Let's Encrypt (ACME) are not supported; "
            "give http.tls.certificate and http.tls.key",
        ),
        (_TLS + "    letsencrypt: {}\n", {}, "http.tls.letsencrypt: certificates from Let's Encrypt"),
        ("", {"REGISTRY_HTTP_TLS_LETSENCRYPT_EMAIL": "a@b"}, "http.tls.letsencrypt: certificates"),
        (
            _TLS + "    minimumtls: tls1.0\n",
            {},
            "http.tls.minimumtls: tls1.0 is insecure and not offered (tls1.2 or tls1.3)",
        ),
        (_TLS + "    minimumtls: tls1.1\n", {}, "http.tls.minimumtls: tls1.1 is insecure and not offered"),
        (_TLS + "    minimumtls: TLS12\n", {}, "http.tls.minimumtls: expected tls1.2 or tls1.3, got 'TLS12'"),
        (
            _TLS + "    ciphersuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_FAST]\n",
            {},
            "http.tls.ciphersuites[1]: unknown cipher suite 'TLS_FAST' (expected Go's names, such as "
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
        ),
        # OpenSSL's names are not registry:2's.
        (_TLS + "    ciphersuites: [ECDHE-RSA-AES128-GCM-SHA256]\n", {}, "http.tls.ciphersuites[0]: unknown"),
        (
            _TLS + "    ciphersuites: [TLS_RSA_WITH_3DES_EDE_CBC_SHA]\n",
            {},
            "http.tls.ciphersuites[0]: TLS_RSA_WITH_3DES_EDE_CBC_SHA is insecure and not offered",
        ),
        (
            _TLS + "    ciphersuites: [TLS_AES_128_GCM_SHA256]\n",
            {},
            "http.tls.ciphersuites: names no TLS 1.2 cipher suite; name one, or set http.tls.minimumtls "
            "to tls1.3",
        ),
        (_TLS + "    ciphersuites: TLS_AES_128_GCM_SHA256\n", {}, "http.tls.ciphersuites: expected a list"),
        (
            _TLS + "    clientca: [/ca.pem]\n",
            {},
            "http.tls.clientca: unknown TLS key "
            "(known: certificate, key, clientcas, minimumtls, ciphersuites)",
        ),
        ("", {"REGISTRY_HTTP_TLS_SKIPVERIFY": "true"}, "http.tls.skipverify: unknown TLS key"),
        (_TLS + "    clientcas: /ca.pem\n", {}, "http.tls.clientcas: expected a list"),
        (_TLS + "    clientcas: [{a: b}]\n", {}, "http.tls.clientcas[0]: expected the path of a PEM file"),
        (
            "http:\n  tls:\n    key: /k.pem\n",
            {},
            "http.tls.certificate: missing; TLS needs a certificate and its key (PEM files)",
        ),
        ("http:\n  tls:\n    minimumtls: tls1.2\n", {}, "http.tls.certificate: missing"),
        ("http:\n  tls:\n    certificate: /c.pem\n", {}, "http.tls.key: missing"),
    ],
)
def test_tls_we_cannot_do_as_asked_stops_start_up(text: str, environ: dict[str, str], message: str) -> None:
    """
    A TLS setting we would ignore could leave TLS weaker than asked for.
    """
    with pytest.raises(ConfigError) as caught:
        parseConfig("version: 0.1\nstorage: {inmemory: {}}\n" + text, environ)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_empty_auth_is_no_authentication() -> None:
    # registry:2 too serves an auth section without a kind open.
    config = parseConfig("version: 0.1\nstorage: {inmemory: {}}\nauth: {}\n", environ={})
    assert config.warnings == ()


@pytest.mark.parametrize(
    "section, warning",
    [
        (
            "http:\n  adr: :5000\n",
            "config key http.adr is not supported and is ignored (did you mean http.addr?)",
        ),
        (
            "storage:\n  filesystem:\n    rootdir: /x\n",
            "config key storage.filesystem.rootdir is not supported and is ignored "
            "(did you mean storage.filesystem.rootdirectory?)",
        ),
        ("lgo:\n  level: info\n", "config key lgo is not supported and is ignored (did you mean log?)"),
        ("redis: {}\n", "config key redis is not supported yet and is ignored"),
    ],
)
def test_unknown_keys_suggest_the_nearest_known_one(section: str, warning: str) -> None:
    storage = "" if section.startswith("storage") else "storage: {inmemory: {}}\n"
    config = parseConfig("version: 0.1\n" + storage + section, environ={})
    assert config.warnings == (warning,)


def test_left_out_keys_take_the_schema_defaults() -> None:
    config = parseConfig(
        "version: 0.1\nstorage:\n  filesystem: {}\nproxy:\n  remoteurl: https://a.test\n", environ={}
    )
    assert config == Config(storage=Storage(backend=Filesystem()), proxy=Proxy((Upstream("https://a.test"),)))
    s3 = parseConfig("version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n", environ={})
    assert s3.storage.backend == S3(bucket="b", region="r")


def test_s3_like_minio_on_a_nas() -> None:
    config = parseConfig(
        """
version: 0.1
storage:
  s3:
    accesskey: AKIAEXAMPLE
    secretkey: example-secret
    region: us-east-1
    regionendpoint: nas.example.test:9000
    bucket: registry
    rootdirectory: /docker-registry
    secure: false
    chunksize: 20971520
  redirect:
    disable: true
""",
        environ={"REGISTRY_STORAGE_S3_BUCKET": "other-bucket"},
    )
    s3 = config.storage.backend
    assert isinstance(s3, S3)
    assert s3.bucket == "other-bucket"
    assert s3.endpointURL() == "http://nas.example.test:9000"
    assert s3.forcePathStyle
    assert s3.rootDirectory == "/docker-registry"
    assert s3.chunkSize == 20 * 1024 * 1024
    assert config.warnings == ()
    assert not s3.redirect


@pytest.mark.parametrize(
    "lines, redirect",
    [
        (["region: eu-west-1"], True),
        (["regionendpoint: http://192.168.1.20:9000"], False),
        (["regionendpoint: http://minio:9000"], False),
        (["regionendpoint: https://objects.example.com"], True),
        (["regionendpoint: http://10.0.0.5:9000", "redirectendpoint: https://objects.example.com"], True),
        (["region: eu-west-1", "REDIRECT_DISABLE"], False),
        (["regionendpoint: http://127.0.0.1:9000", "REDIRECT_ENABLE"], True),
    ],
)
def test_s3_redirect_defaults(lines: list[str], redirect: bool) -> None:
    s3 = [line for line in lines if not line.startswith("REDIRECT")]
    text = "version: 0.1\nstorage:\n  s3:\n    bucket: b\n" + "".join(f"    {line}\n" for line in s3)
    if "REDIRECT_DISABLE" in lines or "REDIRECT_ENABLE" in lines:
        text += f"  redirect:\n    disable: {'true' if 'REDIRECT_DISABLE' in lines else 'false'}\n"
    config = parseConfig(text, environ={})
    assert isinstance(config.storage.backend, S3)
    assert config.storage.backend.redirect is redirect
    assert config.warnings == ()


def test_private_endpoints() -> None:
    for endpoint in (
        "http://127.0.0.1:9000",
        "10.1.2.3",
        "http://[fd00::1]:9000",
        "http://nas.local",
        "minio:9000",
    ):
        assert isPrivate(endpoint), endpoint
    for endpoint in ("https://s3.eu-west-1.amazonaws.com", "http://8.8.8.8:9000", "objects.example.com"):
        assert not isPrivate(endpoint), endpoint


def test_s3_on_aws() -> None:
    config = parseConfig("version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: eu-west-1\n", environ={})
    assert isinstance(config.storage.backend, S3)
    assert config.storage.backend.endpointURL() == "https://s3.eu-west-1.amazonaws.com"
    assert not config.storage.backend.forcePathStyle


def test_durations() -> None:
    assert parseDuration("168h") == timedelta(hours=168)
    assert parseDuration("1h30m10s") == timedelta(hours=1, minutes=30, seconds=10)
    assert parseDuration("1.5s") == timedelta(seconds=1.5)
    assert parseDuration("250ms") == timedelta(milliseconds=250)
    for bad in ("", "h", "10", "1d", "1h 2m"):
        with pytest.raises(ValueError):
            parseDuration(bad)


def test_listen_endpoints() -> None:
    assert listenEndpoint(":5000") == "tcp:5000"
    assert listenEndpoint("0.0.0.0:443") == "tcp:443:interface=0.0.0.0"
    assert listenEndpoint("localhost:5000") == "tcp:5000:interface=127.0.0.1"
    assert listenEndpoint("/run/registry.sock", "unix") == "unix:/run/registry.sock"
    for bad in ("5000", "host:", ":99999", "example.com:5000"):
        with pytest.raises(ValueError):
            listenEndpoint(bad)


def run(*args: str, cwd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60
    )


START_COMMANDS = [
    [os.path.join(os.path.dirname(sys.executable), "twistd"), "-n", "--pidfile=", "registry"],
    [sys.executable, "-m", "txregistry.cli", "serve"],
]


@pytest.mark.parametrize("command", START_COMMANDS)
def test_bad_config_stops_start_up_with_one_line(command: list[str], tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "config.yml")
    with open(path, "w") as f:
        f.write("version: 0.1\nstorage:\n  inmemory:\n  filesystem:\n    rootdirectory: /x\n")
    result = run(*command, "--config", path, cwd=str(tmp_path))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "storage: exactly one storage driver must be configured, found inmemory, filesystem" in output
    assert "Traceback" not in output


def test_unreadable_config_file(tmp_path: object) -> None:
    result = run(sys.executable, "-m", "txregistry.cli", "serve", "/no/such/config.yml", cwd=str(tmp_path))
    assert result.returncode != 0
    assert "config: cannot read /no/such/config.yml" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", START_COMMANDS)
def test_port_in_use_stops_start_up_with_one_line(command: list[str], tmp_path: object) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(*command, "--listen", f"tcp:{port}:interface=127.0.0.1", cwd=str(tmp_path))
    assert result.returncode == 1
    # twistd logs what is written to stderr, so look at both streams.
    output = result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use\n" in output
    assert "Traceback" not in output


PROXY = """\
version: 0.1
storage:
  inmemory:
proxy:
  remoteurl: https://registry-1.docker.io
  username: me
  password: secret
  ttl: 24h
  maxsize: 50GiB
  upstreams:
    - name: ghcr.io
      remoteurl: https://ghcr.io/
      ttl: 1h
"""


def test_proxy_section() -> None:
    config = parseConfig(PROXY, environ={})
    assert config.warnings == ()
    proxy = config.proxy
    assert proxy is not None
    assert proxy.default is not None
    assert (proxy.default.remoteURL, proxy.default.username, proxy.default.password) == (
        "https://registry-1.docker.io",
        "me",
        "secret",
    )
    assert proxy.default.ttl == timedelta(hours=24)
    ghcr = proxy.named("ghcr.io")
    assert ghcr is not None and ghcr.remoteURL == "https://ghcr.io" and ghcr.ttl == timedelta(hours=1)
    assert proxy.maxSize == 50 * 1024**3
    for text, size in (("200GB", 200 * 1000**3), ("20g", 20 * 1000**3), ("512MiB", 512 * 1024**2), ("7", 7)):
        assert parseSize("proxy.maxsize", text) == size
    assert (proxy.revalidate, proxy.allowPush) == (timedelta(seconds=10), False)
    assert parseConfig("version: 0.1\nstorage: {inmemory: {}}\n", environ={}).proxy is None


def test_proxy_from_the_environment() -> None:
    config = parseConfig(
        "version: 0.1\nstorage: {inmemory: {}}\n",
        environ={
            "REGISTRY_PROXY_REMOTEURL": "http://127.0.0.1:5001",
            "REGISTRY_PROXY_TTL": "2h",
            "REGISTRY_PROXY_ALLOWPUSH": "true",
        },
    )
    assert config.proxy is not None and config.proxy.default is not None
    assert config.proxy.default.ttl == timedelta(hours=2)
    assert config.proxy.allowPush


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("proxy:\n  ttl: 1h\n", "proxy.remoteurl: a proxy needs an upstream"),
        ("proxy:\n  remoteurl: registry-1.docker.io\n", "proxy.remoteurl: expected a registry's URL"),
        ("proxy:\n  remoteurl: https://ghcr.io/v2/x\n", "proxy.remoteurl: expected a registry's URL"),
        ("proxy:\n  remoteurl: https://a.io\n  username: me\n", "give both username and password"),
        ("proxy:\n  remoteurl: https://a.io\n  ttl: soon\n", "proxy.ttl:"),
        ("proxy:\n  remoteurl: https://a.io\n  maxsize: lots\n", "proxy.maxsize: expected a size"),
        (
            "proxy:\n  upstreams:\n    - name: Bad/Name\n      remoteurl: https://a.io\n",
            "proxy.upstreams[0].name",
        ),
        ("proxy:\n  upstreams:\n    - name: a.io\n", "proxy.upstreams[0].remoteurl: the upstream"),
        (
            "proxy:\n  upstreams:\n    - {name: a.io, remoteurl: 'https://a.io'}\n"
            "    - {name: a.io, remoteurl: 'https://b.io'}\n",
            "proxy.upstreams[1].name: 'a.io' names two upstreams",
        ),
        (
            "proxy:\n  upstreams:\n    - {name: a.io, remote: 'https://a.io'}\n",
            "proxy.upstreams[0].remote: unknown",
        ),
        ("proxy:\n  remoteurl: https://a.io\n  evictioninterval: 0s\n", "proxy.evictioninterval: must be"),
        (
            "proxy:\n  username: me\n  upstreams:\n    - {name: a.io, remoteurl: 'https://a.io'}\n",
            "proxy.username: goes with proxy.remoteurl",
        ),
    ],
)
def test_bad_proxy_sections(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parseConfig("version: 0.1\nstorage: {inmemory: {}}\n" + section, environ={})
    assert message in str(raised.value)


def test_htpasswd() -> None:
    """
    registry:2's own configuration, with its htpasswd users, is taken as it
    is; the path may come from the environment; a pull-through cache may
    be behind it too.
    """
    config = parseConfig(REGISTRY2_DEFAULT, environ={})
    assert config.auth == Htpasswd(realm="basic-realm", path="/etc/docker/registry")
    assert not [w for w in config.warnings if "key auth" in w]
    config = parseConfig(REGISTRY2_DEFAULT, environ={"REGISTRY_AUTH_HTPASSWD_PATH": "/run/users"})
    assert config.auth == Htpasswd(realm="basic-realm", path="/run/users")
    config = parseConfig(REGISTRY2_DEFAULT + "proxy:\n  remoteurl: https://a.test\n", environ={})
    assert config.auth == Htpasswd(realm="basic-realm", path="/etc/docker/registry")
    assert config.proxy is not None


def test_blob_descriptor_cache() -> None:
    """
    registry:2's storage.cache: inmemory is what txregistry always does,
    with the size it is given (0, registry:2's unbounded, is our bound).
    """
    base = "version: 0.1\nstorage:\n  inmemory: {}\n  cache:\n"
    config = parseConfig(base + "    blobdescriptor: inmemory\n    blobdescriptorsize: 500\n", environ={})
    assert (config.storage.blobDescriptors, config.warnings) == (500, ())
    config = parseConfig(base + "    blobdescriptor: inmemory\n    blobdescriptorsize: 0\n", environ={})
    assert config.storage.blobDescriptors == Storage().blobDescriptors
    assert parseConfig(base + "    layerinfo: inmemory\n", environ={}).warnings == ()
    registry = registryOf(
        parseConfig(base + "    blobdescriptor: inmemory\n    blobdescriptorsize: 7\n", environ={})
    )
    assert registry.blobSizes.maxBytes == 7


@pytest.mark.parametrize(
    "cache, message",
    [
        ("    blobdescriptor: redis\n", "storage.cache.blobdescriptor: redis is not supported"),
        ("    blobdescriptor: memcached\n", "storage.cache.blobdescriptor: expected inmemory or redis"),
        ("    blobdescriptorsize: -1\n", "storage.cache.blobdescriptorsize: must be 0 or more"),
        ("    blobdescriptorsize: many\n", "storage.cache.blobdescriptorsize: expected an integer"),
    ],
)
def test_blob_descriptor_caches_we_lack(cache: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parseConfig("version: 0.1\nstorage:\n  inmemory: {}\n  cache:\n" + cache, environ={})
    assert str(caught.value).startswith(message), caught.value


def test_the_fleet_example() -> None:
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    environ = {"REGISTRY_PROXY_FLEET_ADVERTISE": "http://10.0.0.5:5000"}
    config = loadConfig(os.path.join(examples, "fleet.yml"), environ)
    assert config.warnings == ()
    assert config.proxy is not None and config.proxy.fleet is not None
    assert config.proxy.fleet.advertise == "http://10.0.0.5:5000"
    assert config.proxy.allowPush
    assert config.http.secret
