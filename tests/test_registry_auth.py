"""Private registries: the agent sends the logins of the docker CLI's config file with its pulls.

Unit tests read config files as the docker CLI does (``auths``, ``credHelpers``, ``credsStore``), the
helpers being real executables on PATH speaking the credential-helper protocol. The end-to-end tests
run Debian's ``docker-registry`` on loopback behind htpasswd basic auth (a bcrypt file made by
apache2-utils' ``htpasswd -B``), push the stand-in JMeter image to it with the docker SDK, and launch
a test of it through a real server and agent: with the right login the container runs; with a wrong
one it fails with the registry's own words.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent import registry_auth
from agent.engine import Engine, EngineError
from agent.registry_auth import INDEX_SERVER, Credentials, RegistryAuth, RegistryAuthError, registry_host
from agent.settings import build_parser, parse_settings
from tests.support.processes import IN_CI, AgentProcess, ServerProcess, free_port
from tests.support.waiting import wait_until

PLAN = "<?xml version='1.0'?><jmeterTestPlan version='1.2'><hashTree><TestPlan/></hashTree></jmeterTestPlan>"
USER, PASSWORD = "alice", "s3cret-pass"


def _decoded(header: str) -> dict[str, str]:
    body: dict[str, str] = json.loads(base64.urlsafe_b64decode(header))
    return body


def _config(folder: Path, content: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(content))
    return path


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# --- which registry an image names ------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "host"),
    [
        ("jmeter", "docker.io"),
        ("justb4/jmeter:5.5", "docker.io"),
        ("library/ubuntu@sha256:" + "a" * 64, "docker.io"),
        ("index.docker.io/justb4/jmeter", "docker.io"),
        ("ghcr.io/org/team/jmeter:5.6", "ghcr.io"),
        ("localhost/jmeter", "localhost"),
        ("registry:5000/jmeter", "registry:5000"),
        ("127.0.0.1:5000/jmeter:1", "127.0.0.1:5000"),
        ("Registry/jmeter", "Registry"),
        ("123456789012.dkr.ecr.eu-west-3.amazonaws.com/jmeter@sha256:" + "b" * 64,
         "123456789012.dkr.ecr.eu-west-3.amazonaws.com"),
    ],
)  # fmt: skip
def test_registry_host_is_split_as_docker_does(image: str, host: str) -> None:
    assert registry_host(image) == host


# --- auths ------------------------------------------------------------------------------------


def test_auths_base64_login_becomes_the_header(tmp_path: Path) -> None:
    path = _config(tmp_path, {"auths": {"127.0.0.1:5000": {"auth": _basic(USER, "pa:ss")}}})
    found = RegistryAuth(path).lookup("127.0.0.1:5000/team/jmeter:5.6")
    assert found is not None
    assert _decoded(found.header()) == {"username": USER, "password": "pa:ss", "serveraddress": "127.0.0.1:5000"}


def test_docker_hub_login_is_under_the_index_url(tmp_path: Path) -> None:
    path = _config(tmp_path, {"auths": {INDEX_SERVER: {"username": "bob", "password": "pw"},
                                        "docker.io": {"auth": _basic("wrong", "key")}}})  # fmt: skip
    found = RegistryAuth(path).lookup("justb4/jmeter")
    assert found is not None
    assert _decoded(found.header()) == {"username": "bob", "password": "pw", "serveraddress": INDEX_SERVER}


def test_auths_key_with_scheme_and_path_matches_its_host(tmp_path: Path) -> None:
    path = _config(tmp_path, {"auths": {"https://harbor.example.test/v2/": {"auth": _basic(USER, PASSWORD)}}})
    found = RegistryAuth(path).lookup("harbor.example.test/load/jmeter:1")
    assert found is not None and found.username == USER and found.password == PASSWORD
    assert RegistryAuth(path).lookup("other.example.test/load/jmeter:1") is None


def test_identity_token_is_sent_instead_of_a_password(tmp_path: Path) -> None:
    path = _config(tmp_path, {"auths": {"acr.example.test": {"identitytoken": "refresh-me", "auth": _basic("x", "y")}}})
    found = RegistryAuth(path).lookup("acr.example.test/jmeter")
    assert found is not None
    assert _decoded(found.header()) == {"identitytoken": "refresh-me", "serveraddress": "acr.example.test"}


def test_secrets_never_show_in_a_repr(tmp_path: Path) -> None:
    shown = repr(Credentials("h", "user", "the-password", "the-token", source="auths"))
    assert "the-password" not in shown and "the-token" not in shown and "user" in shown


def test_no_file_or_no_entry_is_an_anonymous_pull(tmp_path: Path) -> None:
    assert RegistryAuth(tmp_path / "absent.json").lookup("ghcr.io/org/jmeter") is None
    path = _config(tmp_path, {"auths": {"ghcr.io": {}}})
    assert RegistryAuth(path).lookup("ghcr.io/org/jmeter") is None


def test_a_named_file_missing_or_broken_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RegistryAuthError, match=r"absent\.json is missing"):
        RegistryAuth(tmp_path / "absent.json", named=True).lookup("ghcr.io/org/jmeter")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(RegistryAuthError, match=r"broken\.json is not valid JSON"):
        RegistryAuth(broken).lookup("ghcr.io/org/jmeter")
    path = _config(tmp_path, {"auths": {"ghcr.io": {"auth": "%%%"}}})
    with pytest.raises(RegistryAuthError, match=r"auth of ghcr\.io is not base64"):
        RegistryAuth(path).lookup("ghcr.io/org/jmeter")


# --- credential helpers (real executables on PATH) -------------------------------------------------

_HELPER = """#!/bin/sh
# a docker credential helper: `get` reads the server URL on stdin, answers JSON on stdout
[ "$1" = get ] || exit 3
read -r server
printf '%s\\n' "$server" >> "{log}"
case "$server" in
  *missing*) echo "credentials not found in native keychain"; exit 1 ;;
  *broken*) echo "the keychain is locked"; exit 1 ;;
  *token*) printf '{{"ServerURL":"%s","Username":"<token>","Secret":"tok-123"}}' "$server" ;;
  *) printf '{{"ServerURL":"%s","Username":"{name}-user","Secret":"{name}-secret"}}' "$server" ;;
esac
"""


@pytest.fixture
def helpers(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Two fake helpers, ``docker-credential-fake`` and ``docker-credential-store``, on a PATH of their own."""
    bin_dir, log = tmp_path / "bin", tmp_path / "helper.log"
    bin_dir.mkdir()
    for name in ("fake", "store"):
        script = bin_dir / f"docker-credential-{name}"
        script.write_text(_HELPER.format(log=log, name=name))
        script.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}, log


def test_cred_helper_answers_for_its_registry(tmp_path: Path, helpers: tuple[dict[str, str], Path]) -> None:
    env, log = helpers
    path = _config(tmp_path / "cfg", {"credHelpers": {"127.0.0.1:5000": "fake", INDEX_SERVER: "fake"},
                                      "auths": {"127.0.0.1:5000": {"auth": _basic("file", "user")}}})  # fmt: skip
    found = RegistryAuth(path, env=env).lookup("127.0.0.1:5000/jmeter:5.6")
    assert found is not None
    assert _decoded(found.header()) == {"username": "fake-user", "password": "fake-secret",
                                        "serveraddress": "127.0.0.1:5000"}  # fmt: skip
    assert RegistryAuth(path, env=env).lookup("jmeter") is not None
    assert log.read_text().splitlines() == ["127.0.0.1:5000", INDEX_SERVER], "the helper read the registry's key"


def test_creds_store_serves_registries_without_a_helper(tmp_path: Path, helpers: tuple[dict[str, str], Path]) -> None:
    env, _ = helpers
    path = _config(tmp_path / "cfg", {"credsStore": "store", "credHelpers": {"token.test": "fake"}})
    found = RegistryAuth(path, env=env).lookup("registry.test/jmeter")
    assert found is not None and (found.username, found.password) == ("store-user", "store-secret")
    token = RegistryAuth(path, env=env).lookup("token.test/jmeter")
    assert token is not None
    assert _decoded(token.header()) == {"identitytoken": "tok-123", "serveraddress": "token.test"}


def test_cred_helper_not_found_is_anonymous_and_failure_is_its_words(
    tmp_path: Path, helpers: tuple[dict[str, str], Path]
) -> None:
    env, _ = helpers
    path = _config(tmp_path / "cfg", {"credsStore": "fake"})
    assert RegistryAuth(path, env=env).lookup("missing.test/jmeter") is None
    said = "docker-credential-fake failed for broken.test: the keychain is locked"
    with pytest.raises(RegistryAuthError, match=re.escape(said)):
        RegistryAuth(path, env=env).lookup("broken.test/jmeter")


def test_missing_helper_binary_is_named(tmp_path: Path, helpers: tuple[dict[str, str], Path]) -> None:
    env, _ = helpers
    path = _config(tmp_path / "cfg", {"credHelpers": {"123.dkr.ecr.test": "ecr-login"}})
    with pytest.raises(RegistryAuthError, match=r"docker-credential-ecr-login \(credHelpers of 123.dkr.ecr.test"):
        RegistryAuth(path, env=env).lookup("123.dkr.ecr.test/jmeter")


async def test_engine_pull_fails_naming_the_missing_helper(tmp_path: Path) -> None:
    """The lookup comes before any request: the launch error says which helper is missing."""
    path = _config(tmp_path, {"credsStore": "desktop"})
    engine = Engine("tcp://127.0.0.1:9", env={}, auth=RegistryAuth(path, env={"PATH": str(tmp_path)}))
    try:
        with pytest.raises(EngineError, match=r"credential helper docker-credential-desktop .* is not installed"):
            async for _ in engine.pull("127.0.0.1:5000/jmeter"):
                pass
    finally:
        await engine.aclose()


# --- which file: the agent's option, its environment, the docker CLI's default ------------------


def test_engine_reads_the_configured_file_then_the_environment(tmp_path: Path) -> None:
    named = _config(tmp_path / "named", {})
    cli = _config(tmp_path / "cli", {})
    env = {"DOCKER_CONFIG": str(tmp_path / "cli"), "HOME": str(tmp_path)}
    assert Engine("unix:///x.sock", env=env).auth.path == cli
    assert Engine("unix:///x.sock", env={**env, "OCTOTUI_DOCKER_CONFIG": str(named.parent)}).auth.path == named
    registry_auth.configure(named)
    try:
        engine = Engine("unix:///x.sock", env=env)
        assert engine.auth.path == named and engine.auth.named
    finally:
        registry_auth.configure(None)
    assert Engine("unix:///x.sock", env={"HOME": str(tmp_path)}).auth.path == tmp_path / ".docker" / "config.json"


def test_agent_option_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path / "docker", {"auths": {}})
    base = ["--server", "http://127.0.0.1:1"]
    assert parse_settings([*base, "--docker-config", str(path.parent)], env={}).docker_config == path
    assert parse_settings(base, env={"OCTOTUI_DOCKER_CONFIG": str(path)}).docker_config == path
    assert parse_settings(base, env={}).docker_config is None
    assert "--docker-config" in build_parser({}).format_help()
    (tmp_path / "bad.json").write_text("[")
    for wrong, said in ((tmp_path / "none.json", "no such file"), (tmp_path / "bad.json", "is not valid JSON")):
        with pytest.raises(SystemExit) as exit_:
            parse_settings([*base, "--docker-config", str(wrong)], env={})
        assert exit_.value.code == 2
        assert said in capsys.readouterr().err


# --- a real registry behind basic auth ---------------------------------------------------------------


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on loopback, htpasswd basic auth with one user; its ``127.0.0.1:PORT``."""
    binary, htpasswd = shutil.which("docker-registry"), shutil.which("htpasswd")
    if binary is None or htpasswd is None:
        message = "docker-registry or htpasswd is missing: run `make test-tools`"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    users = tmp_path / "htpasswd"
    made = subprocess.run([htpasswd, "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
    users.write_text(made.stdout)
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'blobs'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: octotui-test\n    path: {users}\n"
    )
    log = (tmp_path / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        address = f"127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"http://{address}/v2/", timeout=1).status_code == 401, timeout=20,
                   what="the registry asking for a login")  # fmt: skip
        assert httpx.get(f"http://{address}/v2/", auth=(USER, PASSWORD), timeout=5).status_code == 200
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _push(docker_client: Any, registry: str, base: str) -> str:
    """``base`` pushed (with the login) as a new private image, whose tag is then removed here."""
    repository, tag = f"{registry}/load/jmeter", uuid.uuid4().hex[:10]
    docker_client.images.get(base).tag(repository, tag)
    events = list(docker_client.api.push(repository, tag=tag, stream=True, decode=True,
                                         auth_config={"username": USER, "password": PASSWORD}))  # fmt: skip
    assert not [e for e in events if "error" in e], events
    docker_client.images.remove(f"{repository}:{tag}")
    return f"{repository}:{tag}"


def _launch(server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, image: str,
            config: dict[str, Any], env: dict[str, str] | None = None) -> tuple[Any, str]:  # fmt: skip
    path = _config(tmp_path / "docker-login", config)
    api = server.client()
    provider = api.post("/providers", json={"name": "private"}).json()
    agent = AgentProcess(server.url, provider["token"], tmp_path / "agent", "local", "private",
                         f"--docker-config={path}")  # fmt: skip
    agents.append(agent.start(env))
    wait_until(lambda: any((a.get("docker") or {}).get("available") for a in api.get("/agents").json()),
               timeout=30, what="the agent online with Docker")  # fmt: skip
    created = api.post("/tests", json={"name": "private", "plan": PLAN, "provider": "private", "containers": 1,
                                       "image": image, "properties": {"fake.duration": "30"}})  # fmt: skip
    assert created.status_code == 201, created.text
    return api, str(created.json()["id"])


def _settled(api: Any, test_id: str) -> dict[str, Any] | None:
    """The test's container once its launch is over (running, or ended), else None."""
    container: dict[str, Any] = api.get(f"/tests/{test_id}").json()["containers"][0]
    return container if container["state"] in ("running", "failed", "lost", "finished") else None


def _cleanup(docker_client: Any, test_id: str, image: str) -> None:
    for container in docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"}):
        container.remove(force=True)
    for tagged in docker_client.images.list(name=image.rsplit(":", 1)[0]):
        for tag in tagged.tags:
            if tag == image:
                docker_client.images.remove(tag)


@pytest.mark.docker
@pytest.mark.parametrize("source", ["auths", "helper"])
def test_authenticated_pull_runs_the_container(
    server: ServerProcess, agents: list[AgentProcess], private_registry: str, docker_client: Any,
    fake_jmeter_image: str, tmp_path: Path, source: str,
) -> None:  # fmt: skip
    image = _push(docker_client, private_registry, fake_jmeter_image)
    env = None
    if source == "auths":
        config: dict[str, Any] = {"auths": {private_registry: {"auth": _basic(USER, PASSWORD)}}}
    else:  # a helper on the agent's PATH, as on a workstation with docker-credential-* installed
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-octotui"
        helper.write_text(f'#!/bin/sh\nread -r s\nprintf \'{{"ServerURL":"%s","Username":"{USER}",'
                          f'"Secret":"{PASSWORD}"}}\' "$s"\n')  # fmt: skip
        helper.chmod(0o755)
        config = {"credHelpers": {private_registry: "octotui"}}
        env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    api, test_id = _launch(server, agents, tmp_path, image, config, env)
    try:
        container = wait_until(lambda: _settled(api, test_id), timeout=90, interval=0.2,
                               what="the container running (or failed) after an authenticated pull")  # fmt: skip
        assert container["state"] == "running", container
        assert docker_client.images.get(image), "the image was pulled"
        log = agents[0].log()
        assert PASSWORD not in log and _basic(USER, PASSWORD) not in log, "no secret in the agent's log"
        assert f"with credentials for {private_registry}" in log
        assert api.post(f"/tests/{test_id}/stop").status_code == 200
        wait_until(lambda: api.get(f"/tests/{test_id}").json()["state"] in ("finished", "failed"), timeout=60,
                   what="the test to end")  # fmt: skip
    finally:
        _cleanup(docker_client, test_id, image)


@pytest.mark.docker
def test_wrong_password_fails_the_container_with_the_registrys_words(
    server: ServerProcess, agents: list[AgentProcess], private_registry: str, docker_client: Any,
    fake_jmeter_image: str, tmp_path: Path,
) -> None:  # fmt: skip
    image = _push(docker_client, private_registry, fake_jmeter_image)
    config = {"auths": {private_registry: {"auth": _basic(USER, "not-the-password")}}}
    api, test_id = _launch(server, agents, tmp_path, image, config)
    try:
        container = wait_until(lambda: _settled(api, test_id), timeout=60, interval=0.2, what="the container failed")
        assert container["state"] == "failed", container
        assert "unauthorized: authentication required" in (container["error"] or ""), container
        assert f"pull of {image} failed" in container["error"]
        assert "not-the-password" not in agents[0].log()
    finally:
        _cleanup(docker_client, test_id, image)
