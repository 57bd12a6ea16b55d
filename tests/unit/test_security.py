"""Security settings and wiring, without a broker: the /users bearer token, loopback
binding, Faust's table pages off, Kafka SASL/TLS passed to Faust and to every client, no
pickle on the wire, secrets never printed."""

from __future__ import annotations

import ast
import ssl
import subprocess
import tempfile
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.settings import PROJECT_ROOT, Settings, SettingsError

STREAMS = PROJECT_ROOT / "streams"
PASSWORD = "pa55-w0rd-never-printed"
TOKEN = "api-token-never-printed-0123"


def sasl_env(**over: str) -> dict[str, str]:
    env = {"PERSONA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
           "PERSONA_KAFKA_SASL_USERNAME": "persona", "PERSONA_KAFKA_SASL_PASSWORD": PASSWORD}
    env.update(over)
    return env


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA certificate and a client certificate with its key (openssl, EC P-256)."""
    d = tmp_path_factory.mktemp("pki")
    for name in ("ca", "client"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
             f"/CN=persona-test-{name}", "-keyout", str(d / f"{name}.key"),
             "-out", str(d / f"{name}.pem")],
            check=True, capture_output=True, timeout=60)
    (d / "garbage.pem").write_text("not a certificate\n")
    return {"ca": d / "ca.pem", "cert": d / "client.pem", "key": d / "client.key",
            "garbage": d / "garbage.pem", "ca_key": d / "ca.key"}


# ------------------------------------------------------------------ HTTP
def test_web_server_binds_loopback_by_default() -> None:
    assert Settings().web_host == "127.0.0.1"
    assert Settings.from_env({}).web_host == "127.0.0.1"
    from streams.app import app, build_app

    conf = build_app(Settings.from_env({"PERSONA_DATA_DIR": tempfile.mkdtemp()})).conf
    assert (conf.web_bind, conf.web_host) == ("127.0.0.1", "127.0.0.1")
    for flag in ("web_tables_enabled", "web_router_enabled", "web_graph_enabled",
                 "web_stats_enabled", "web_metrics_enabled"):
        assert getattr(conf, flag) is False, flag
        assert getattr(app.conf, flag) is False, flag


def test_api_token_setting() -> None:
    assert Settings.from_env({}).api_token == ""
    assert Settings.from_env({"PERSONA_API_TOKEN": f"  {TOKEN} "}).api_token == TOKEN
    for bad, message in (("short-token", "at least 16"), ("has a space in it 0123", "no spaces"),
                         ("tøken-with-non-ascii-0123", "printable ASCII")):
        with pytest.raises(SettingsError, match=message) as exc:
            Settings.from_env({"PERSONA_API_TOKEN": bad})
        assert bad not in str(exc.value)


def test_bearer_check() -> None:
    from streams.web import check_bearer

    assert check_bearer(f"Bearer {TOKEN}", TOKEN) is None
    assert check_bearer(f"bearer   {TOKEN} ", TOKEN) is None
    # no token configured: forbidden, whatever is sent, and the message says what to set
    for header in (None, f"Bearer {TOKEN}"):
        refused = check_bearer(header, "")
        assert refused is not None and refused[0] == 403 and "PERSONA_API_TOKEN" in refused[2]
    for header in (None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", TOKEN,
                   f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer " + "x" * 1000):
        refused = check_bearer(header, TOKEN)
        assert refused is not None and refused[0] == 401, header
        assert refused[1]["WWW-Authenticate"].startswith("Bearer realm=")
        assert TOKEN not in refused[2]


def test_every_users_view_needs_the_token() -> None:
    from streams.app import app
    from streams.web import UserView

    views = dict(app.web.views)
    users = [path for path in views if path.startswith("/users")]
    assert len(users) >= 2
    for path in users:
        assert isinstance(views[path], UserView), path
    for path in ("/metrics", "/health", "/ready"):
        assert not isinstance(views[path], UserView), path
    # and none of Faust's own pages is registered
    assert not [p for p in views if p.startswith(("/table", "/router", "/graph", "/stats"))]


# ------------------------------------------------------------------ Kafka security
def test_plaintext_by_default() -> None:
    s = Settings.from_env({})
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert s.kafka_client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert s.faust_credentials() is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_plaintext_reaches_faust_and_clients(mechanism: str) -> None:
    from streams.app import build_app

    s = Settings.from_env(sasl_env(PERSONA_KAFKA_SASL_MECHANISM=mechanism,
                                   PERSONA_DATA_DIR=tempfile.mkdtemp()))
    assert s.kafka_client_kwargs() == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism.upper(),
        "sasl_plain_username": "persona", "sasl_plain_password": PASSWORD}
    conf = build_app(s).conf
    creds = conf.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    # what Faust hands its aiokafka consumer and producer
    auth = credentials_to_aiokafka_auth(creds, conf.ssl_context)
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == mechanism.upper()
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("persona", PASSWORD)
    assert auth["ssl_context"] is None


def test_sasl_ssl_and_ssl_carry_a_tls_context(pki: dict[str, Path]) -> None:
    from streams.app import build_app

    s = Settings.from_env(sasl_env(PERSONA_KAFKA_SECURITY_PROTOCOL="sasl_ssl",
                                   PERSONA_KAFKA_SSL_CAFILE=str(pki["ca"]),
                                   PERSONA_DATA_DIR=tempfile.mkdtemp()))
    kwargs = s.kafka_client_kwargs()
    ctx = kwargs["ssl_context"]
    assert kwargs["security_protocol"] == "SASL_SSL" and isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName",
                                                            "persona-test-ca"),),)]
    auth = credentials_to_aiokafka_auth(build_app(s).conf.broker_credentials, None)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_plain_password"] == PASSWORD
    assert isinstance(auth["ssl_context"], ssl.SSLContext)

    mtls = Settings.from_env({"PERSONA_KAFKA_SECURITY_PROTOCOL": "SSL",
                              "PERSONA_KAFKA_SSL_CAFILE": str(pki["ca"]),
                              "PERSONA_KAFKA_SSL_CERTFILE": str(pki["cert"]),
                              "PERSONA_KAFKA_SSL_KEYFILE": str(pki["key"]),
                              "PERSONA_DATA_DIR": tempfile.mkdtemp()})
    kwargs = mtls.kafka_client_kwargs()
    assert set(kwargs) == {"security_protocol", "ssl_context"}
    assert kwargs["security_protocol"] == "SSL"
    creds = build_app(mtls).conf.broker_credentials
    assert isinstance(creds, faust.SSLCredentials)
    auth = credentials_to_aiokafka_auth(creds, None)
    assert auth["security_protocol"] == "SSL" and isinstance(auth["ssl_context"], ssl.SSLContext)


def test_bad_combinations_are_clear_errors(pki: dict[str, Path]) -> None:
    cases = [
        ({"PERSONA_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of PLAINTEXT, SSL"),
        (sasl_env(PERSONA_KAFKA_SASL_MECHANISM="GSSAPI"), "SCRAM-SHA-256"),
        (sasl_env(PERSONA_KAFKA_SASL_USERNAME=""), "needs PERSONA_KAFKA_SASL_USERNAME"),
        (sasl_env(PERSONA_KAFKA_SASL_PASSWORD=""), "needs PERSONA_KAFKA_SASL_PASSWORD"),
        (sasl_env(PERSONA_KAFKA_SECURITY_PROTOCOL="PLAINTEXT"), "set it to SASL_SSL"),
        (sasl_env(PERSONA_KAFKA_SECURITY_PROTOCOL="SSL"), "set it to SASL_SSL"),
        (sasl_env(PERSONA_KAFKA_SSL_CAFILE=str(pki["ca"])), "set it to SSL or SASL_SSL"),
        ({"PERSONA_KAFKA_SECURITY_PROTOCOL": "SSL",
          "PERSONA_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "no such file"),
        ({"PERSONA_KAFKA_SECURITY_PROTOCOL": "SSL",
          "PERSONA_KAFKA_SSL_KEYFILE": str(pki["key"])}, "needs PERSONA_KAFKA_SSL_CERTFILE"),
        ({"PERSONA_KAFKA_SECURITY_PROTOCOL": "SSL",
          "PERSONA_KAFKA_SSL_CAFILE": str(pki["garbage"])}, "cannot load CA certificates"),
        # a certificate with somebody else's key
        ({"PERSONA_KAFKA_SECURITY_PROTOCOL": "SSL", "PERSONA_KAFKA_SSL_CERTFILE": str(pki["cert"]),
          "PERSONA_KAFKA_SSL_KEYFILE": str(pki["ca_key"])}, "cannot load the client certificate"),
    ]
    for env, message in cases:
        with pytest.raises(SettingsError, match=message) as exc:
            Settings.from_env(env)
        assert PASSWORD not in str(exc.value), env


def test_secrets_never_printed() -> None:
    s = Settings.from_env({**sasl_env(), "PERSONA_API_TOKEN": TOKEN,
                           "PERSONA_SECRET_KEY": "pseudonymization-key-0123456789"})
    text = repr(s) + str(s) + repr(s.faust_credentials())
    for secret in (PASSWORD, TOKEN, "pseudonymization-key-0123456789"):
        assert secret not in text
    assert "persona" in repr(s.faust_credentials())  # the user name may show


# Modules whose kafka-python clients only ever talk to a broker they started themselves
# (plain, on loopback): the demo and the chaos driver.
OWN_BROKER_MODULES = {"demo.py", "chaos.py"}
CLIENTS = {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient", "make_producer",
           "ensure_topics", "wait_for_broker"}


def _calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) in CLIENTS]


def test_every_kafka_client_gets_the_security_settings() -> None:
    """Each client persona creates for a user's broker carries the PERSONA_KAFKA_* settings:
    a ``**...kafka_client_kwargs()`` or a ``client=`` argument (helpers pass it on)."""
    seen = 0
    for path in sorted(STREAMS.rglob("*.py")):
        if path.name in OWN_BROKER_MODULES:
            continue
        for call in _calls(path):
            name = getattr(call.func, "id", getattr(call.func, "attr", ""))
            passes = any(kw.arg is None or kw.arg == "client" for kw in call.keywords)
            where = f"{path.relative_to(PROJECT_ROOT)}:{call.lineno} {name}"
            assert passes, f"{where} does not pass the Kafka security settings"
            seen += 1
    assert seen >= 6  # admin, ensure_topics, wait, replay producer, control, produce, consume


# ------------------------------------------------------------------ no pickle on the wire
def test_every_topic_and_table_uses_raw_or_json() -> None:
    from streams import tables, topics
    from streams.app import app

    conf = app.conf

    def effective(channel) -> tuple[str, str]:  # type: ignore[no-untyped-def]
        schema = getattr(channel, "schema", None)
        key = (getattr(schema, "key_serializer", None) or channel.key_serializer
               or conf.key_serializer)
        value = (getattr(schema, "value_serializer", None) or channel.value_serializer
                 or conf.value_serializer)
        return key, value

    channels = {f"topic {'+'.join(t.topics)}": t for t in vars(topics).values()
                if isinstance(t, faust.topics.Topic)}
    for name, agent in app.agents.items():
        channels[f"agent {name}"] = agent.channel
    for name, table in app.tables.items():
        channels[f"table {name}"] = table
        channels[f"changelog {name}"] = table.changelog_topic
    assert len([c for c in channels if c.startswith("topic")]) >= 13
    assert {"table profiles", "table ads"} <= set(channels)
    assert tables.profiles is app.tables["profiles"]
    for name, channel in channels.items():
        assert effective(channel) in {("raw", "raw"), ("raw", "json"), ("json", "json")}, name
    assert (conf.key_serializer, conf.value_serializer) == ("raw", "raw")


def test_nothing_in_streams_sends_pickle() -> None:
    """pickle is for local checkpoint files only (signed, streams/checkpoint.py); no
    serializer argument anywhere names another codec than raw or json."""
    importers = set()
    for path in STREAMS.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                    node.module or ""]
                if any(m.split(".")[0] in ("pickle", "cloudpickle", "dill") for m in mods):
                    importers.add(path.name)
            if isinstance(node, ast.keyword) and node.arg and "serializer" in node.arg:
                if isinstance(node.value, ast.Constant):
                    assert node.value.value in ("raw", "json"), f"{path.name}: {node.arg}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "pickle" not in node.value.split("|"), path.name
    assert importers == {"checkpoint.py"}


def _readme_key_line() -> str:
    """The README tour's shell line that writes the pseudonymization key file."""
    lines = [line for line in (PROJECT_ROOT / "README.md").read_text().splitlines()
             if "secret.key" in line and ">" in line and line.lstrip().startswith("[")]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_readme_writes_the_key_file_for_its_owner_only(tmp_path: Path) -> None:
    """Under the usual umask (022) a plain redirect makes the key world-readable: the
    tour's line must make it 0600 however the shell is set up."""
    (tmp_path / ".persona").mkdir()
    subprocess.run(["bash", "-c", f"umask 022; {_readme_key_line()}"], cwd=tmp_path,
                   check=True)
    key_file = tmp_path / ".persona" / "secret.key"
    assert len(key_file.read_text().strip()) == 64
    assert key_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o400, False),
                                               (0o640, True), (0o644, True)],
                         ids=["0600", "0400", "0640", "0644"])
def test_the_worker_warns_when_the_key_file_is_open_to_others(
        tmp_path: Path, mode: int, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    from streams.runtime import Runtime

    key_file = tmp_path / "secret.key"
    key_file.write_text("k" * 64 + "\n")
    key_file.chmod(mode)
    s = Settings.from_env({"PERSONA_DATA_DIR": str(tmp_path),
                           "PERSONA_SECRET_KEY": "k" * 64})
    with caplog.at_level("WARNING", logger="streams.runtime"):
        Runtime(s)
    found = [r.getMessage() for r in caplog.records if "secret.key" in r.getMessage()]
    assert bool(found) is warned, found
    if warned:
        assert f"{mode:o}"[-3:] in found[0] and "chmod 600" in found[0]
        assert "k" * 16 not in found[0]  # never the key itself
