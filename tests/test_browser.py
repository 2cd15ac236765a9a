"""
The web UI in a real browser: headless Chromium (Debian's C{chromium},
driven by Playwright) against registries in processes of their own on
loopback (a blocking Playwright call would stop an in-process reactor),
holding what the tests push. Every page is checked for what it renders,
its script for what it does (filtering, copying), and its console for
errors: a script the Content-Security-Policy refused, or one that failed.
Each page's screenshot is taken at 1280x800; with
C{TXREGISTRY_SCREENSHOTS=docs} they are written to C{docs/} (what the
README shows), else to a temporary directory, so that a test run leaves
the tree as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

import txregistry
from tests.helpers import RegistryProcess, SyncClient, SyncResponse, sha256
from tests.test_access import RULES, USERS, credentials
from tests.test_auth import REALM, entry, writeUsers
from tests.test_ui import (
    HOSTILE,
    LAYER,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    SBOM,
    SIGNATURE,
    UI,
    platformConfig,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need Playwright")
if shutil.which("chromium") is None:
    pytest.skip(
        "the browser tests need Debian's chromium (apt-get install chromium)", allow_module_level=True
    )

#: What the pull lines name: a fixed host keeps the screenshots alike.
HOST = "registry.example"
SCREENSHOTS = os.environ.get("TXREGISTRY_SCREENSHOTS") or tempfile.mkdtemp(prefix="txregistry-ui-")
VIEWPORT = {"width": 1280, "height": 800}
TAGS = [f"t{i:04d}" for i in range(2000)]
#: Each would set window.__xss, or open a dialog, if it ever ran.
PAYLOADS = [*HOSTILE, '"><img src=x onerror="window.__xss=1">', "<script>window.__xss=2</script>"]


class Pusher(SyncClient):
    """
    A blocking client that pushes OCI images, with C{headers} (credentials)
    on every request.
    """

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(port)
        self.headers = headers or {}

    def request(
        self, method: str, path: str, body: Any = b"", headers: dict[str, str] | None = None
    ) -> SyncResponse:
        return super().request(method, path, body, {**self.headers, **(headers or {})})

    def manifest(self, name: str, reference: str, manifest: dict[str, Any]) -> tuple[str, int]:
        body = json.dumps(manifest).encode()
        response = self.request(
            "PUT", f"/v2/{name}/manifests/{reference}", body, {"Content-Type": manifest["mediaType"]}
        )
        assert response.status == 201, response
        return sha256(body), len(body)

    def image(
        self, name: str, tag: str, config: dict[str, Any], layers: list[bytes], **extra: Any
    ) -> tuple[str, int]:
        configBody = json.dumps(config).encode()
        blobs = [(OCI_CONFIG, configBody)] + [(LAYER, layer) for layer in layers]
        described = [
            {"mediaType": kind, "digest": self.pushBlob(name, data), "size": len(data)}
            for kind, data in blobs
        ]
        return self.manifest(
            name,
            tag,
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": described[0],
                "layers": described[1:],
                **extra,
            },
        )

    def index(self, name: str, tag: str) -> str:
        children = []
        for architecture in ("amd64", "arm64"):
            digest, size = self.image(
                name, f"only-{architecture}", platformConfig("linux", architecture), [architecture.encode()]
            )
            children.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"os": "linux", "architecture": architecture},
                }
            )
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
        return self.manifest(name, tag, index)[0]

    def referrer(self, name: str, subject: tuple[str, int], artifactType: str, data: bytes) -> str:
        empty = {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": self.pushBlob(name, b"{}"),
            "size": 2,
        }
        layer = {"mediaType": artifactType, "digest": self.pushBlob(name, data), "size": len(data)}
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifactType,
            "config": empty,
            "layers": [layer],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]},
        }
        body = json.dumps(manifest).encode()
        return self.manifest(name, sha256(body), manifest)[0]


def started(root: str, config: str) -> RegistryProcess:
    path = os.path.join(os.path.dirname(root), os.path.basename(root) + ".yml")
    with open(path, "w") as f:
        f.write(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n{UI}{config}")
    server = RegistryProcess(root, config=path)
    server.start()
    return server


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: Any) -> Iterator[tuple[RegistryProcess, dict[str, Any]]]:
    """
    A registry holding an index of two platforms (C{app}), an image with a
    signature and an SBOM (C{tools/scanner}), 2,000 tags (C{big}), a few
    names to filter, and an image whose labels and annotations are markup
    (C{hostile}); with what was pushed.
    """
    server = started(str(tmp_path_factory.mktemp("browser") / "store"), f"http:\n  host: https://{HOST}\n")
    try:
        pusher = Pusher(server.port)
        held: dict[str, Any] = {"index": pusher.index("app", "v1")}
        subject = pusher.image("tools/scanner", "v2", platformConfig("linux", "amd64"), [b"s" * 4000])
        held["subject"] = subject[0]
        held["signature"] = pusher.referrer("tools/scanner", subject, SIGNATURE, b"signed")
        held["sbom"] = pusher.referrer("tools/scanner", subject, SBOM, b'{"spdxVersion": "SPDX-2.3"}')
        for name in ("team/api", "team/web", "other/db"):
            pusher.image(name, "v1", platformConfig("linux", "amd64"), [name.encode()])
        digest, _ = pusher.image("big", TAGS[0], platformConfig("linux", "amd64"), [b"big"])
        manifest = pusher.request("GET", f"/v2/big/manifests/{digest}").body
        with ThreadPoolExecutor(8) as pool:
            done = pool.map(
                lambda tag: (
                    pusher.request(
                        "PUT", f"/v2/big/manifests/{tag}", manifest, {"Content-Type": OCI_MANIFEST}
                    ).status
                ),
                TAGS[1:],
            )
            assert set(done) == {201}
        config = platformConfig("linux", "amd64")
        config["config"]["Labels"] = {f"label{i}": value for i, value in enumerate(PAYLOADS)}
        annotations = {f"note{i}": value for i, value in enumerate(PAYLOADS)}
        pusher.image("hostile", "v1", config, [b"x"], annotations=annotations)
        yield server, held
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
        # Root in a container: Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        yield launched
        launched.close()


class Viewer:
    """
    A browser tab on one registry, recording its console's errors, the
    scripts' exceptions and any dialog.
    """

    def __init__(self, browser: Browser, base: str, **options: Any) -> None:
        self.base = base
        self.context = browser.new_context(viewport=VIEWPORT, **options)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        # Every error counts: the UI names its icon, so none is missing.
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url')})")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> Page:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        return self.page

    def text(self) -> str:
        return self.page.inner_text("main")

    def rows(self, selector: str = "tbody tr") -> list[str]:
        return [row.get_attribute("data-name") or "" for row in self.page.locator(selector).all()]

    def visibleRows(self) -> list[str]:
        return [r.get_attribute("data-name") or "" for r in self.page.locator("tbody tr:visible").all()]

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=os.path.join(SCREENSHOTS, f"ui-{name}.png"))

    def assertQuiet(self) -> None:
        assert self.errors == [] and self.dialogs == []

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def viewer(browser: Browser, pushed: tuple[RegistryProcess, dict[str, Any]]) -> Iterator[Viewer]:
    viewer = Viewer(browser, pushed[0].base)
    yield viewer
    viewer.close()


def test_repositories_page_and_its_filter(viewer: Viewer) -> None:
    page = viewer.open("/ui/")
    names = ["app", "big", "hostile", "other/db", "team/api", "team/web", "tools/scanner"]
    assert viewer.rows() == names
    counts = {
        row.get_attribute("data-name"): row.locator("td").nth(1).inner_text()
        for row in page.locator("tbody tr").all()
    }
    assert counts["app"] == "3" and counts["big"] == "2000" and counts["tools/scanner"] == "1"
    app = page.locator('tbody tr[data-name="app"] td')
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", app.nth(2).inner_text())
    assert re.fullmatch(r"[\d.]+ (B|KiB|MiB)", app.nth(3).inner_text())
    viewer.screenshot("repositories")
    # As one types, by the script.
    page.fill("input[data-filter]", "team")
    assert viewer.visibleRows() == ["team/api", "team/web"]
    page.fill("input[data-filter]", "")
    assert viewer.visibleRows() == names
    # And sent, by the server.
    page.fill("input[data-filter]", "o")
    page.press("input[data-filter]", "Enter")
    page.wait_for_url("**/ui/?q=o")
    assert viewer.rows() == ["hostile", "other/db", "tools/scanner"]
    viewer.assertQuiet()


def test_repository_page(viewer: Viewer, pushed: tuple[RegistryProcess, dict[str, Any]]) -> None:
    page = viewer.open("/ui/repository?name=app")
    assert viewer.rows() == ["only-amd64", "only-arm64", "v1"]
    index = page.locator("tr[data-name='v1']").inner_text()
    assert OCI_INDEX in index and "linux/amd64, linux/arm64" in index
    assert pushed[1]["index"][:19] in index and "2024-05-06 07:08:09" in viewer.text()
    viewer.screenshot("repository")
    page.click("tr[data-name='v1'] a")
    assert "linux/arm64" in viewer.text()
    viewer.assertQuiet()


def test_copy_puts_the_pull_line_on_the_clipboard(viewer: Viewer, pushed: Any) -> None:
    page = viewer.open("/ui/repository?name=app")
    button = page.locator("tr[data-name='only-arm64'] button.copy")
    button.click()
    assert page.evaluate("navigator.clipboard.readText()") == f"docker pull {HOST}/app:only-arm64"
    assert button.inner_text() == "Copied"
    viewer.open(f"/ui/image?name=app&reference={pushed[1]['index']}")
    page.click("button.copy")
    assert page.evaluate("navigator.clipboard.readText()") == f"docker pull {HOST}/app@{pushed[1]['index']}"
    viewer.assertQuiet()


def test_pagination_walks_every_tag(viewer: Viewer) -> None:
    page = viewer.open("/ui/repository?name=big")
    assert "2000 tags" in viewer.text()
    seen, pages = viewer.rows(), 1
    while page.locator("a[rel=next]").count():
        page.click("a[rel=next]")
        page.wait_for_load_state()
        seen += viewer.rows()
        pages += 1
    assert seen == TAGS and pages == 40
    viewer.assertQuiet()


def test_image_pages(viewer: Viewer, pushed: Any) -> None:
    held = pushed[1]
    page = viewer.open("/ui/image?name=app&reference=v1")
    shown = viewer.text()
    assert held["index"] in shown and "linux/amd64" in shown and "linux/arm64" in shown
    page.click("text=linux/arm64 >> xpath=../td[2]/a")
    assert "linux/arm64" in viewer.text() and "Layers" in viewer.text()
    viewer.open("/ui/image?name=tools/scanner&reference=v2")
    shown = viewer.text()
    for expected in (held["subject"], "/bin/serve", "MODE=production", "the app", "3.9 KiB"):
        assert expected in shown, expected
    # The referrers under their artifact types.
    assert (
        shown.index(SBOM)
        < shown.index(held["sbom"])
        < shown.index(SIGNATURE)
        < shown.index(held["signature"])
    )
    viewer.screenshot("image")
    page.click(f"a:text('{held['signature']}')")
    assert SIGNATURE in viewer.text() and "Referrers" in viewer.text()
    viewer.assertQuiet()


def test_markup_renders_as_text_and_never_runs(viewer: Viewer) -> None:
    page = viewer.open("/ui/image?name=hostile&reference=v1")
    shown = viewer.text()
    for value in PAYLOADS:
        assert value in shown, value
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    # Nothing ran, so nothing was refused either.
    viewer.assertQuiet()


def test_status_page(viewer: Viewer) -> None:
    viewer.open("/ui/status")
    shown = viewer.text()
    assert f"txregistry {txregistry.__version__}" in shown and "filesystem" in shown and "Uptime" in shown
    viewer.screenshot("status")
    viewer.assertQuiet()


def test_cache_page(browser: Browser, tmp_path: Any) -> None:
    upstream = started(str(tmp_path / "upstream"), "")
    try:
        Pusher(upstream.port).image("library/app", "v1", platformConfig("linux", "amd64"), [b"x" * 5000])
        proxy = started(str(tmp_path / "proxy"), f"proxy:\n  remoteurl: {upstream.base}\n  allowpush: true\n")
        try:
            client = Pusher(proxy.port)
            for _ in range(2):
                manifest = client.request("GET", "/v2/library/app/manifests/v1")
                assert manifest.status == 200
                layer = json.loads(manifest.body)["layers"][0]["digest"]
                assert client.request("GET", f"/v2/library/app/blobs/{layer}").status == 200
            client.image("mine/tool", "v1", platformConfig("linux", "amd64"), [b"mine"])
            viewer = Viewer(browser, proxy.base)
            try:
                viewer.open("/ui/")
                own, cached = viewer.text().split("Cached", 1)
                assert "mine/tool" in own and "library/app" in cached and upstream.base in cached
                viewer.page.click("header >> text=Cache")
                shown = viewer.text()
                assert upstream.base in shown and "Hit ratio" in shown and "closed" in shown
                # Nothing is due yet: what goes next, when its ttl expires.
                assert "Next to be evicted" in shown and "library/app" in shown.split("Next to be evicted")[1]
                viewer.screenshot("cache")
                viewer.assertQuiet()
            finally:
                viewer.close()
        finally:
            proxy.stop()
    finally:
        upstream.stop()


def test_a_repository_the_viewer_may_not_pull_is_absent(browser: Browser, tmp_path: Any) -> None:
    users = str(tmp_path / "htpasswd")
    writeUsers(users, *(entry(user, password) for user, password in USERS.items()))
    server = started(
        str(tmp_path / "store"), f"auth:\n  htpasswd:\n    realm: {REALM}\n    path: {users}\n{RULES}"
    )
    try:
        root = Pusher(server.port, credentials("root"))
        for name in ("public/app", "secret/app"):
            root.image(name, "v1", platformConfig("linux", "amd64"), [name.encode()])
        anonymous = Viewer(browser, server.base)
        carol = Viewer(
            browser, server.base, http_credentials={"username": "carol", "password": USERS["carol"]}
        )
        try:
            anonymous.open("/ui/")
            assert anonymous.rows() == ["public/app"]
            assert "secret" not in anonymous.page.content()
            # A browser stops at the Basic challenge: what it was sent.
            refused = anonymous.context.request.get(server.base + "/ui/repository?name=secret/app")
            assert refused.status == 401 and "v1" not in refused.text()
            # A browser sends a user and password once challenged for them,
            # and from then on.
            carol.open("/ui/repository?name=secret/app")
            assert carol.rows() == ["v1"]
            carol.open("/ui/")
            assert carol.rows() == ["public/app", "secret/app"]
            carol.assertQuiet()
        finally:
            anonymous.close()
            carol.close()
    finally:
        server.stop()
