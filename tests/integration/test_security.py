"""The bus beyond loopback: authentication, TLS, clear errors, and the exposure warning."""

from __future__ import annotations

from pathlib import Path

import nkeys
import pytest

from swarm_tui.engine.bus.client import Bus
from swarm_tui.engine.bus.embedded import EmbeddedServer
from swarm_tui.engine.errors import BusError
from tests.support.env import base_env, make_config, run_cli


def _server(tmp_path: Path, conf: str) -> EmbeddedServer:
    return EmbeddedServer(tmp_path / "store", extra_conf=conf).run()


@pytest.mark.parametrize(
    ("conf", "good", "bad"),
    [
        (
            'authorization { token: "tok-right-123" }',
            {"SWARM_NATS_TOKEN": "tok-right-123"},
            {"SWARM_NATS_TOKEN": "tok-wrong-456"},
        ),
        (
            'authorization { user: "ann", password: "pw-right-123" }',
            {"SWARM_NATS_USER": "ann", "SWARM_NATS_PASSWORD": "pw-right-123"},
            {"SWARM_NATS_USER": "ann", "SWARM_NATS_PASSWORD": "pw-wrong-456"},
        ),
    ],
)
async def test_auth_required_right_and_wrong_credentials(
    tmp_path: Path, conf: str, good: dict[str, str], bad: dict[str, str]
) -> None:
    srv = _server(tmp_path, conf)
    try:
        bus = Bus(make_config(tmp_path, srv.url, **good))
        await bus.connect()
        assert bus.state == "connected" and not bus.warnings
        await bus.close()
        with pytest.raises(BusError) as ei:
            await Bus(make_config(tmp_path, srv.url, **bad)).connect()
        assert "authorization failed" in str(ei.value)
        for secret in bad.values():
            assert secret not in str(ei.value) or secret == "ann"
        # the CLI says it in one line, exit 1
        res = run_cli(["status"], base_env(tmp_path, SWARM_NATS_URL=srv.url, **bad))
        assert res.returncode == 1 and "authorization failed" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert "wrong" not in res.stderr
        # no credentials at all
        with pytest.raises(BusError):
            await Bus(make_config(tmp_path, srv.url)).connect()
    finally:
        srv.stop()


async def test_nkey_seed_auth(tmp_path: Path) -> None:
    kp = nkeys.from_seed(b"SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY")
    seed = tmp_path / "user.nk"
    seed.write_bytes(kp.seed)
    srv = _server(tmp_path, f'authorization {{ users = [ {{ nkey: "{kp.public_key.decode()}" }} ] }}')
    try:
        bus = Bus(make_config(tmp_path, srv.url, SWARM_NATS_NKEY_SEED=str(seed)))
        await bus.connect()
        assert bus.state == "connected"
        await bus.close()
    finally:
        srv.stop()


def test_missing_creds_file_is_a_clear_error(tmp_path: Path) -> None:
    res = run_cli(
        ["status"],
        base_env(tmp_path, SWARM_NATS_URL="nats://127.0.0.1:9", SWARM_NATS_CREDS=str(tmp_path / "nope.creds")),
    )
    assert res.returncode == 2
    assert "nats.creds" in res.stderr and "does not exist" in res.stderr


def _make_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made in Python, so no openssl binary is needed)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


async def test_tls_with_a_ca_file(tmp_path: Path) -> None:
    cert, key = _make_cert(tmp_path)
    srv = _server(
        tmp_path, f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\nauthorization {{ token: "tls-tok-123" }}'
    )
    try:
        url = srv.url.replace("nats://", "tls://")
        bus = Bus(make_config(tmp_path, url, SWARM_NATS_TLS_CA=str(cert), SWARM_NATS_TOKEN="tls-tok-123"))
        await bus.connect()
        assert bus.state == "connected"
        await bus.close()
    finally:
        srv.stop()


def test_warning_when_the_bus_is_beyond_loopback_without_auth(tmp_path: Path) -> None:
    bus = Bus(make_config(tmp_path))
    bus._check_exposure("nats://192.0.2.10:4222", authed=False)
    assert bus.warnings and "beyond loopback" in bus.warnings[0]
    quiet = Bus(make_config(tmp_path))
    quiet._check_exposure("nats://192.0.2.10:4222", authed=True)
    quiet._check_exposure("nats://127.0.0.1:4222,nats://localhost:4223", authed=False)
    assert quiet.warnings == []
