"""Privacy defaults (issue 21 item 5), without Ray: serving refuses the public default salt unless told
to allow it, the salt file, key files 0600, and tokens read from a file or the environment."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from shoprank.cli import build_parser, main
from shoprank.cli.options import client_of
from shoprank.errors import ConfigError
from shoprank.hashing import hash_id, require_salt, salt_id
from shoprank.serving.auth import (
    is_loopback_peer,
    plaintext_open_to_all,
    read_token_file,
    self_signed_cert,
    token_from,
)

SALT_VARS = ("SHOPRANK_ID_SALT", "SHOPRANK_ID_SALT_FILE", "SHOPRANK_INSECURE_DEFAULT_SALT")


@pytest.fixture
def no_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in SALT_VARS:
        monkeypatch.delenv(var, raising=False)


def _secret(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the salt ---------------------------------------------------------------------------------
def test_serving_refuses_without_a_salt(no_salt, caplog) -> None:
    with pytest.raises(ConfigError) as e:
        require_salt(False, who="serving")
    msg = str(e.value)
    assert "\n" not in msg and "PUBLIC default salt" in msg and "reverse" in msg  # one line naming the risk
    assert "$SHOPRANK_ID_SALT" in msg and "$SHOPRANK_ID_SALT_FILE" in msg  # and how to set one
    with caplog.at_level(logging.WARNING, logger="shoprank.hashing"):
        assert require_salt(True, who="the demo") == "default"  # the explicit opt-in: allowed, loudly
    assert any("INSECURE" in r.getMessage() and "PUBLIC default salt" in r.getMessage() for r in caplog.records)


def test_build_app_refuses_without_a_salt(no_salt, tmp_path) -> None:
    """The check sits in build_app, so `serve run deployments/serve_config.yaml` is covered too."""
    from shoprank.serve_app.app import build_app

    with pytest.raises(ConfigError, match="no user-id salt configured"):
        build_app({"index_dir": str(tmp_path / "no-index")})
    with pytest.raises(Exception) as e:  # opted in: it gets past the salt to the (missing) index
        build_app({"index_dir": str(tmp_path / "no-index"), "allow_default_salt": True})
    assert "salt" not in str(e.value)


def test_demo_opt_in_reaches_build_app(no_salt, monkeypatch, tmp_path, caplog) -> None:
    """`shoprank demo` opts in through the environment (so its Ray workers inherit it), loudly."""
    from shoprank.hashing import allow_default_salt
    from shoprank.serve_app.app import build_app

    monkeypatch.setenv("SHOPRANK_INSECURE_DEFAULT_SALT", "")  # restored after the test
    with caplog.at_level(logging.WARNING, logger="shoprank.hashing"):
        allow_default_salt("shoprank demo")
    assert os.environ["SHOPRANK_INSECURE_DEFAULT_SALT"] == "1"
    assert any("INSECURE: shoprank demo" in r.getMessage() for r in caplog.records)
    with pytest.raises(Exception) as e:
        build_app({"index_dir": str(tmp_path / "no-index")})
    assert "salt" not in str(e.value)


def test_shoprank_serve_refuses_before_starting_anything(no_salt, capsys) -> None:
    assert main(["serve", "--index", "/nonexistent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no user-id salt configured" in err and "--insecure-default-salt" in err


def test_salt_file(no_salt, monkeypatch, tmp_path) -> None:
    good = _secret(tmp_path / "salt", "pepper-42\n", 0o600)
    monkeypatch.setenv("SHOPRANK_ID_SALT_FILE", str(good))
    assert require_salt(False) == salt_id("pepper-42") != "default"
    assert hash_id("alice") == hash_id("alice", "pepper-42") != hash_id("alice", "another")
    monkeypatch.setenv("SHOPRANK_ID_SALT", "env-wins")  # the variable, when set, wins over the file
    assert hash_id("alice") == hash_id("alice", "env-wins")
    monkeypatch.delenv("SHOPRANK_ID_SALT")
    _secret(good, "rotated\n", 0o600)  # a changed file is read again
    assert hash_id("alice") == hash_id("alice", "rotated")
    for name, text, mode, why in [("open", "x", 0o644, "chmod 600"), ("group", "x", 0o640, "chmod 600"),
                                  ("empty", " \n", 0o600, "is empty")]:  # fmt: skip
        monkeypatch.setenv("SHOPRANK_ID_SALT_FILE", str(_secret(tmp_path / name, text, mode)))
        with pytest.raises(ConfigError, match=why):
            require_salt(False)
    monkeypatch.setenv("SHOPRANK_ID_SALT_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="missing"):
        hash_id("alice")


def test_salt_commands(no_salt, tmp_path, capsys) -> None:
    out = tmp_path / "id_salt"
    assert main(["salt", "new", "--out", str(out)]) == 0
    assert _mode(out) == 0o600
    salt = out.read_text().strip()
    assert len(salt) == 64 and salt_id(salt) in capsys.readouterr().out
    assert main(["salt", "new", "--out", str(out)]) == 2  # never overwritten
    assert out.read_text().strip() == salt
    capsys.readouterr()
    assert main(["salt", "id", "--file", str(out), "--check", f"bob={hash_id('bob', salt)}"]) == 0
    assert f"salt {salt_id(salt)}" in capsys.readouterr().out
    assert main(["salt", "id", "--file", str(out), "--check", f"bob={hash_id('bob', 'old')}"]) == 1
    assert "is NOT" in capsys.readouterr().out


# -- key files --------------------------------------------------------------------------------
def test_self_signed_key_is_owner_only(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        cert, key = self_signed_cert(str(tmp_path))
    finally:
        os.umask(old)
    assert _mode(key) == 0o600 and _mode(cert) == 0o644
    assert b"PRIVATE KEY" in Path(key).read_bytes()


# -- tokens -----------------------------------------------------------------------------------
def test_token_file_and_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SHOPRANK_TOKEN", raising=False)
    tok = _secret(tmp_path / "token", "s3cret\n", 0o600)
    assert read_token_file(str(tok)) == "s3cret"
    with pytest.raises(ConfigError, match="chmod 600"):
        read_token_file(str(_secret(tmp_path / "open", "s3cret", 0o644)))
    assert token_from(None, None) is None
    monkeypatch.setenv("SHOPRANK_TOKEN", "from-env")
    assert token_from(None, None) == "from-env"
    assert token_from(None, str(tok)) == "s3cret"  # the file over the environment
    assert token_from("flag", str(tok)) == "flag"  # --token over both

    parser = build_parser()
    args = parser.parse_args(["search", "boots", "--token-file", str(tok)])
    client = client_of(args)
    try:
        assert ("authorization", "Bearer s3cret") in client.metadata
    finally:
        client.close()
    args = parser.parse_args(["search", "boots"])
    client = client_of(args)
    try:
        assert ("authorization", "Bearer from-env") in client.metadata
    finally:
        client.close()


def test_token_flag_help_says_it_is_visible(capsys) -> None:
    for cmd in (["search", "--help"], ["serve", "--help"], ["replay", "--help"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(cmd)
        text = " ".join(capsys.readouterr().out.split())
        assert "--token-file" in text and "`ps`" in text, cmd


# -- the plaintext port with TLS --------------------------------------------------------------
def test_plaintext_host_and_peers() -> None:
    assert plaintext_open_to_all("127.0.0.1") is False and plaintext_open_to_all("localhost") is False
    assert plaintext_open_to_all("0.0.0.0") is True and plaintext_open_to_all("::") is True
    with pytest.raises(ConfigError, match="every interface"):
        plaintext_open_to_all("10.1.2.3")
    loop = ["ipv4:127.0.0.1:5000", "ipv6:%5B::1%5D:5000", "ipv6:%5B::ffff:127.0.0.1%5D:5000", "unix:/tmp/s"]
    assert all(is_loopback_peer(p) for p in loop)
    assert not any(is_loopback_peer(p) for p in ["ipv4:192.0.2.2:5000", "ipv6:%5B2001:db8::1%5D:5", "", "x:y"])
