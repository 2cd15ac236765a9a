"""
Start-up from the command line, as people meet it: what each command says
when it cannot start, under twistd (in the foreground and as a daemon) and
under C{txregistry serve}; its help and version; where its options go.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers import RegistryProcess, SyncClient, freePort, sha256

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
SERVE = [sys.executable, "-m", "txregistry.cli", "serve"]
FOREGROUND = {"serve": SERVE, "twistd": [TWISTD, "-n", "--pidfile=", "registry"]}


def run(
    command: list[str], cwd: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def without(modules: list[str], where: str) -> dict[str, str]:
    """
    An environment in which C{modules} cannot be imported, as when the
    package that has them is not installed.
    """
    os.makedirs(where, exist_ok=True)
    with open(os.path.join(where, "sitecustomize.py"), "w") as f:
        f.write("import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in modules))
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": where if not path else f"{where}{os.pathsep}{path}"}


def writeConfig(directory: str, text: str, name: str = "config.yml") -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


S3_CONFIG = (
    "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    regionendpoint: http://127.0.0.1:9\n"
    "    accesskey: a\n    secretkey: s\n"
)


def tlsConfig(directory: str, name: str, lines: str) -> str:
    text = f"version: 0.1\nstorage: {{inmemory: {{}}}}\nhttp:\n  tls:\n    {lines}\n"
    return writeConfig(directory, text, f"{name}.yml")


def htpasswdConfig(tmp: str, name: str, content: bytes | None) -> str:
    """
    A configuration with htpasswd users in the file C{name}, of C{content}
    (C{None}: no file).
    """
    path = os.path.join(tmp, name)
    if content is not None:
        with open(path, "wb") as f:
            f.write(content)
    text = f"version: 0.1\nstorage: {{inmemory: {{}}}}\nauth:\n  htpasswd:\n    realm: r\n    path: {path}\n"
    return writeConfig(tmp, text, name + ".yml")


def cannotStart(tmp: str, case: str) -> tuple[list[str], dict[str, str], str]:
    """
    The arguments, environment and one line of each start-up that cannot be.
    """
    afile = os.path.join(tmp, "a-file")
    open(afile, "w").close()
    return {
        "listen-not-an-endpoint": (
            ["--listen", "tcp:abc"],
            {},
            "txregistry: --listen tcp:abc: not a Twisted endpoint (invalid literal for int() with base 10: "
            "'abc'); give one such as tcp:5000:interface=127.0.0.1",
        ),
        "listen-a-port": (
            ["--listen", "5000"],
            {},
            "txregistry: --listen 5000: not a Twisted endpoint (Unknown endpoint type: '5000'); "
            "give one such as tcp:5000",
        ),
        "listen-tls-without-pyopenssl": (
            ["--listen", "ssl:0:privateKey=key.pem"],
            without(["OpenSSL"], os.path.join(tmp, "no-openssl")),
            "txregistry: --listen ssl:0:privateKey=key.pem: TLS needs pyOpenSSL "
            "(pip install 'txregistry[tls]')",
        ),
        "listen-tls-without-key": (
            ["--listen", "ssl:0:privateKey=/no/key.pem"],
            {},
            "txregistry: --listen ssl:0:privateKey=/no/key.pem: No such file or directory: /no/key.pem",
        ),
        "s3-without-botocore": (
            # Keys from the AWS environment: botocore finds them.
            [writeConfig(tmp, S3_CONFIG.replace("    accesskey: a\n    secretkey: s\n", ""), "s3.yml")],
            without(["botocore"], os.path.join(tmp, "no-botocore")),
            "txregistry: storage.s3: S3 storage needs the s3 extra (pip install 'txregistry[s3]')",
        ),
        "root-a-file": (
            ["--root", afile],
            {},
            f"txregistry: storage: cannot keep the registry in {afile}: not a directory; give a directory "
            "that can be created and written to (storage.filesystem.rootdirectory or --root)",
        ),
        "root-impossible": (
            ["--root", "/proc/nope"],
            {},
            "txregistry: storage: cannot keep the registry in /proc/nope: No such file or directory; "
            "give a directory",
        ),
        "auth": (
            [writeConfig(tmp, "version: 0.1\nstorage: {inmemory: {}}\nauth:\n  htpasswd: {}\n", "auth.yml")],
            {},
            "txregistry: auth.htpasswd.realm: required; refusing to start an open registry",
        ),
        "auth-from-the-environment": (
            [],
            {"REGISTRY_AUTH_TOKEN_REALM": "https://auth.example.test/token"},
            "txregistry: auth.token.service: required; refusing to start an open registry",
        ),
        "htpasswd-missing": (
            [htpasswdConfig(tmp, "missing", None)],
            {},
            f"txregistry: auth.htpasswd.path: {tmp}/missing: no such file (make it first: see the README)",
        ),
        "htpasswd-not-bcrypt": (
            [
                htpasswdConfig(
                    tmp, "sha", b"alice:$2y$04$" + b"a" * 53 + b"\n# a comment\n\nbob:{SHA}c2VjcmV0\n"
                )
            ],
            {},
            f"txregistry: auth.htpasswd.path: {tmp}/sha: line 4: only bcrypt hashes "
            "($2y$, $2b$, $2a$) are supported",
        ),
        "htpasswd-malformed": (
            [htpasswdConfig(tmp, "malformed", b"alice\n")],
            {},
            f"txregistry: auth.htpasswd.path: {tmp}/malformed: line 1 is not user:hash",
        ),
        "tls-missing-certificate": (
            [tlsConfig(tmp, "tls-missing-certificate", f"certificate: {tmp}/no.pem\n    key: {afile}")],
            {},
            f"txregistry: http.tls.certificate: cannot read {tmp}/no.pem: No such file or directory",
        ),
        "tls-without-pyopenssl": (
            [tlsConfig(tmp, "tls-without-pyopenssl", f"certificate: {tmp}/no.pem\n    key: {afile}")],
            without(["OpenSSL"], os.path.join(tmp, "no-openssl")),
            "txregistry: http.tls: TLS needs pyOpenSSL (pip install 'txregistry[tls]')",
        ),
        "tls-letsencrypt": (
            [tlsConfig(tmp, "tls-letsencrypt", "letsencrypt:\n      cachefile: /c")],
            {},
            "txregistry: http.tls.letsencrypt: certificates from Let's Encrypt (ACME) are not supported",
        ),
        "tls-1.0": (
            [tlsConfig(tmp, "tls-1.0", "certificate: c\n    key: k\n    minimumtls: tls1.0")],
            {},
            "txregistry: http.tls.minimumtls: tls1.0 is insecure and not offered",
        ),
        "tls-unknown-cipher-suite": (
            [tlsConfig(tmp, "tls-cipher", "certificate: c\n    key: k\n    ciphersuites: [TLS_X]")],
            {},
            "txregistry: http.tls.ciphersuites[0]: unknown cipher suite 'TLS_X'",
        ),
        "tls-and-listen-ssl": (
            [tlsConfig(tmp, "tls-and-listen-ssl", "certificate: c\n    key: k"), "--listen", "ssl:0"],
            {},
            "txregistry: --listen ssl:0: http.tls makes every listener TLS; listen with tcp: instead",
        ),
        "tls-unknown-key": (
            [tlsConfig(tmp, "tls-unknown-key", "certificate: c\n    key: k\n    verifyclient: false")],
            {},
            "txregistry: http.tls.verifyclient: unknown TLS key",
        ),
    }[case]


@pytest.mark.parametrize(
    "case",
    [
        "listen-not-an-endpoint",
        "listen-a-port",
        "listen-tls-without-pyopenssl",
        "listen-tls-without-key",
        "s3-without-botocore",
        "root-a-file",
        "root-impossible",
        "auth",
        "auth-from-the-environment",
        "htpasswd-missing",
        "htpasswd-not-bcrypt",
        "htpasswd-malformed",
        "tls-missing-certificate",
        "tls-without-pyopenssl",
        "tls-letsencrypt",
        "tls-1.0",
        "tls-unknown-cipher-suite",
        "tls-unknown-key",
        "tls-and-listen-ssl",
    ],
)
@pytest.mark.parametrize("command", ["serve", "twistd"])
def test_cannot_start_says_why_in_one_line(command: str, case: str, tmp_path: object) -> None:
    args, env, line = cannotStart(str(tmp_path), case)
    result = run([*FOREGROUND[command], *args], cwd=str(tmp_path), env=env)
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(line), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "listen, line",
    [
        ("tcp:99999", "cannot listen: bind(): port must be 0-65535."),
        ("unix:/proc/nope/registry.sock", "cannot listen: [Errno 2] No such file or directory"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "twistd"])
def test_cannot_listen_says_why_in_one_line(command: str, listen: str, line: str, tmp_path: object) -> None:
    result = run([*FOREGROUND[command], "--listen", listen, "--root", "store"], cwd=str(tmp_path))
    assert result.returncode != 0
    # twistd logs what is written to stderr once it has started logging.
    assert line in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def daemonPID(pidfile: str) -> int | None:
    """
    The PID in C{pidfile}, if that process is still the daemon that wrote it.
    """
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read()
    except (OSError, ValueError):
        return None
    return pid if pidfile.encode() in command else None


@contextmanager
def portInUse() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def test_daemon_on_a_busy_port_exits_and_removes_its_pidfile(tmp_path: object) -> None:
    pidfile = os.path.join(str(tmp_path), "twistd.pid")
    logfile = os.path.join(str(tmp_path), "twistd.log")
    with portInUse() as port:
        command = [TWISTD, f"--pidfile={pidfile}", f"--logfile={logfile}", "registry"]
        command += ["--listen", f"tcp:{port}:interface=127.0.0.1", "--root", os.path.join(str(tmp_path), "s")]
        try:
            result = run(command, cwd=str(tmp_path), timeout=20)
        finally:
            pid = daemonPID(pidfile)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not os.path.exists(pidfile)


def test_root_wins_over_s3_storage(tmp_path: object) -> None:
    """
    C{--root DIR} stores in DIR whatever storage the configuration names.
    """
    root = os.path.join(str(tmp_path), "store")
    process = RegistryProcess(root, writeConfig(str(tmp_path), S3_CONFIG))
    process.start()
    try:
        digest = SyncClient(process.port).pushBlob("r", b"content")
    finally:
        process.stop()
    hexdigest = digest.split(":")[1]
    path = os.path.join(root, "docker/registry/v2/blobs/sha256", hexdigest[:2], hexdigest, "data")
    with open(path, "rb") as f:
        assert f.read() == b"content"


@pytest.mark.parametrize("command", ["serve", "twistd"])
def test_options_may_follow_the_config(command: str, tmp_path: object) -> None:
    port = freePort()
    root = os.path.join(str(tmp_path), "store")
    config = writeConfig(str(tmp_path), "version: 0.1\nstorage: {inmemory: {}}\n")
    process = subprocess.Popen(
        [*FOREGROUND[command], config, "--listen", f"tcp:{port}:interface=127.0.0.1", "--root", root],
        cwd=str(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"exited with {process.returncode}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "never listened"
                time.sleep(0.05)
        digest = SyncClient(port).pushBlob("r", b"content")
    finally:
        process.terminate()
        process.wait(10)
    assert digest == sha256(b"content")
    assert os.path.isdir(os.path.join(root, "docker/registry/v2/repositories/r"))


def test_help_describes_the_commands(tmp_path: object) -> None:
    result = run([sys.executable, "-m", "txregistry.cli", "--help"], cwd=str(tmp_path))
    assert result.returncode == 0
    assert "serve" in result.stdout
    for option in ("--listen=", "--root=", "--config=", "--version"):
        assert option in result.stdout
    serve = run([*SERVE, "--help"], cwd=str(tmp_path))
    assert serve.returncode == 0 and "--listen=" in serve.stdout


def test_version(tmp_path: object) -> None:
    setup = run([sys.executable, "setup.py", "--version"], cwd=REPOSITORY)
    version = setup.stdout.splitlines()[-1]
    for command in (
        [sys.executable, "-m", "txregistry.cli", "--version"],
        [*SERVE, "--version"],
        [TWISTD, "registry", "--version"],
    ):
        result = run(command, cwd=str(tmp_path))
        assert (result.returncode, result.stdout) == (0, f"txregistry {version}\n")
