"""The PyO3 module against independent implementations (cryptography, PyYAML)."""

from __future__ import annotations

import pytest
import yaml

import aar_ext
from certs import make_identity


def test_fingerprint_matches_an_independent_sha256_of_the_der():
    identity = make_identity("ams/0")
    info = aar_ext.parse_certificate(identity.cert_pem)
    assert info["fingerprint"] == identity.fingerprint
    assert info["subject"] == "ams/0"
    assert info["not_after"].endswith("Z")


def test_certificate_errors_name_the_source_and_never_echo_a_key():
    identity = make_identity("ams/0")
    with pytest.raises(aar_ext.CertificateError) as refused:
        aar_ext.parse_certificate(identity.key_pem, "the certificate of ams/0")
    assert str(refused.value).startswith("the certificate of ams/0 is a private key")
    assert identity.key_pem.splitlines()[1] not in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_render_gives_a_config_the_daemon_parses_back(tmp_path):
    text = aar_ext.render_config(str(tmp_path), 3443, "", ["10.0.0.5", "aar.example.com"])
    document = yaml.safe_load(text)
    assert document["http"]["addr"] == "0.0.0.0:3443"
    assert document["http"]["advertise"] == ["10.0.0.5", "aar.example.com"]
    assert document["state-directory"] == str(tmp_path)
    assert document["storage"] == {"fs": {"root-directory": f"{tmp_path}/data", "min-free": 0}}
    described = aar_ext.describe_config(text)
    assert described["port"] == 3443
    assert described["certificate"] == f"{tmp_path}/certs/server.crt"


def test_fs_document_without_root_directory_follows_the_state_directory(tmp_path):
    summary = aar_ext.check_storage_config("storage:\n  fs: {}\n", str(tmp_path))
    assert summary == {"kind": "fs", "root_directory": f"{tmp_path}/data"}
    explicit = aar_ext.check_storage_config("storage:\n  fs: {root-directory: /srv/aar}\n")
    assert explicit["root_directory"] == "/srv/aar"


def test_s3_summary_names_bucket_region_and_cloudfront_but_no_secret():
    summary = aar_ext.check_storage_config(
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n"
        "    access-key: AKIAEXAMPLE\n    secret-access-key: s3cr3t\n"
        "    endpoint: https://minio.example:9000\n"
    )
    assert summary == {
        "kind": "s3",
        "bucket": "aar0",
        "region": "eu-west-3",
        "endpoint": "https://minio.example:9000",
        "cloudfront": None,
    }


def test_config_error_carries_key_line_and_column():
    with pytest.raises(aar_ext.ConfigError) as refused:
        aar_ext.check_storage_config("storage:\n  s3:\n    region: x\n    buckit: aar0\n")
    error = refused.value
    assert (error.path, error.line, error.column) == ("storage.s3.buckit", 4, 5)
    assert error.detail == 'unknown key "buckit"; did you mean "bucket"?'


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
S3 = "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n"
CLOUDFRONT = S3 + "    cloudfront:\n      base-url: d1.cloudfront.net\n"


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (f"storage:\n  s3:\n    region: {SECRET}\n    bucket: aar0\n", "storage.s3.region"),
        (f"storage:\n  s3:\n    region: eu-west-3\n    bucket: {SECRET}\n", "storage.s3.bucket"),
        (S3 + f"    endpoint: {SECRET}\n", "storage.s3.endpoint"),
        (CLOUDFRONT + f"      keypair-id: {SECRET}\n", "storage.s3.cloudfront.keypair-id"),
        (CLOUDFRONT + f"      duration: {SECRET}\n", "storage.s3.cloudfront.duration"),
        (S3 + f"    {SECRET}: x\n", "storage.s3.?"),
        (S3 + "    AKIAIOSFODNN7EXAMPLE: x\n", "storage.s3.?"),
    ],
)
def test_a_secret_in_the_wrong_field_is_never_quoted(document, path):
    """What reaches Juju status shows at most 4 characters of a value in a row."""
    with pytest.raises(aar_ext.ConfigError) as refused:
        aar_ext.check_storage_config(document)
    error = refused.value
    assert error.path == path
    shown = f"{error} {error.detail} {error.path}"
    for secret in (SECRET, "AKIAIOSFODNN7EXAMPLE"):
        for start in range(len(secret) - 4):
            assert secret[start : start + 5] not in shown, shown


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_port_out_of_range_is_refused(tmp_path, port):
    with pytest.raises(aar_ext.ConfigError) as refused:
        aar_ext.render_config(str(tmp_path), port, "", [])
    assert refused.value.path == "port"


def test_server_certificate_is_none_before_the_first_start(tmp_path):
    config = tmp_path / "aar.yaml"
    config.write_text(aar_ext.render_config(str(tmp_path), 3000, "", []))
    assert aar_ext.server_certificate(config) is None
    (tmp_path / "certs").mkdir()
    identity = make_identity("aar")
    (tmp_path / "certs/server.crt").write_text(identity.cert_pem)
    server = aar_ext.server_certificate(config)
    assert server["fingerprint"] == identity.fingerprint
    assert server["pem"] == identity.cert_pem.strip()
