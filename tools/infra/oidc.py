"""A real local OpenID Connect provider: Ory Hydra v2 plus our login/consent pages.

Hydra is built from its Go module (``tools/oidc/go.mod``) into
``CACHE/oidc/<hash>/bin/hydra`` like the Kubernetes binaries, and runs with an in-memory
SQLite store on 127.0.0.1: the public (OIDC) port serves HTTPS with a certificate from
our own CA (``VAR/oidc/pki/ca.crt``; kube-apiserver accepts only an ``https`` issuer),
the admin port plain HTTP on loopback. ``tools/oidc/login_app.py`` (stdlib) is its
login, consent and logout UI, with users and groups from ``VAR/oidc/users.json``.

- ``build()``  compile Hydra once per go.mod/go.sum/Go version
- ``up()``     build if needed, certificates, start Hydra and the login app, register the
               development client of ``make run``
- ``down()``   stop both (users are kept; Hydra's clients and keys live in memory)
- ``status()`` check both answer
- ``user_set(...)``, ``client_create(...)``: what tests and ``make run`` use

Hydra forgets its clients and signing keys when it restarts: whoever uses it registers
its own client (tests make one per run with their live server's redirect URI).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tools.infra import CACHE, ROOT, VAR, write_state
from tools.infra.daemons import Daemons, files_digest, keep_build

PART = "oidc"
SRC = ROOT / "tools" / "oidc"
LOGIN_APP = SRC / "login_app.py"
HOME = VAR / "oidc"
PKI = HOME / "pki"
RUN = HOME / "run"
LOGS = HOME / "logs"
USERS = HOME / "users.json"

HOST = "127.0.0.1"
PUBLIC_PORT = 14444
ADMIN_PORT = 14445
LOGIN_PORT = 14446
ISSUER = f"https://{HOST}:{PUBLIC_PORT}"
ADMIN_URL = f"http://{HOST}:{ADMIN_PORT}"
LOGIN_URL = f"http://{HOST}:{LOGIN_PORT}"

# The client `make run` configures the portal with (redirects to 127.0.0.1:8000).
DEV_CLIENT_ID = "isotope-portal-dev"
DEV_REDIRECTS = (
    "http://127.0.0.1:8000/accounts/oidc/sso/login/callback/",
    "http://localhost:8000/accounts/oidc/sso/login/callback/",
)
# The client kube-apiserver is configured with (--oidc-client-id): the audience of the
# ID tokens it accepts.
KUBERNETES_CLIENT_ID = "kubernetes"

BUILD_REVISION = "2"
MODULE = "github.com/ory/hydra/v2"
START_TIMEOUT = 60.0


def log(message: str) -> None:
    print(f"[oidc] {message}", flush=True)


DAEMONS = Daemons(RUN, LOGS, HOME, log)
_running, _stop = DAEMONS.running, DAEMONS.stop


# --------------------------------------------------------------------------- build


def version() -> str:
    for line in (SRC / "go.mod").read_text().splitlines():
        parts = line.split()
        if MODULE in parts[:2] and parts.index(MODULE) + 1 < len(parts) and "=>" not in parts:
            return parts[parts.index(MODULE) + 1]
    return "unknown"


def _go() -> str | None:
    from tools.infra.k8s import _go as go

    return go()


def build_key() -> str:
    digest = hashlib.sha256()
    for path in (SRC / "go.mod", SRC / "go.sum"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    go = _go()
    if go:
        out = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
        digest.update(out.stdout.strip().encode())
    digest.update(f"rev={BUILD_REVISION} arch={platform.machine()}".encode())
    return digest.hexdigest()[:16]


def bin_dir() -> Path:
    return CACHE / "oidc" / build_key() / "bin"


def _built(directory: Path) -> bool:
    return os.access(directory / "hydra", os.X_OK) and (directory.parent / "build.json").exists()


def build(force: bool = False) -> dict:
    """Compile Hydra into ``CACHE/oidc/<hash>/bin`` unless it is there.

    SQLite (Hydra's in-memory store) needs cgo and the ``sqlite`` build tag, as in
    Hydra's own Makefile; gcc comes with the machine's build tools.
    """
    go = _go()
    if not go:
        raise RuntimeError("the Go toolchain (go) is not installed; see tools/k8s/README.md")
    if not shutil.which("gcc"):
        raise RuntimeError("gcc is missing (Hydra's SQLite store needs cgo): apt-get install gcc")
    target = bin_dir()
    root = target.parent
    if _built(target) and not force:
        return json.loads((root / "build.json").read_text())
    root.mkdir(parents=True, exist_ok=True)
    with (root / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per key, even with parallel callers
        if _built(target) and not force:
            return json.loads((root / "build.json").read_text())
        staging = root / "bin.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        logfile = root / "build.log"
        hydra = version()
        log(f"building Ory Hydra {hydra} into {target} (nice -n 10; 5-14 min cold)")
        cmd = [
            go,
            "build",
            "-trimpath",
            "-tags",
            "sqlite,sqlite_omit_load_extension",
            "-ldflags",
            f"-s -w -X github.com/ory/hydra/v2/driver/config.Version={hydra}",
            "-o",
            f"{staging}/",
            MODULE,
        ]
        env = dict(os.environ, CGO_ENABLED="1", GOFLAGS="-buildvcs=false -mod=readonly")
        env.setdefault("GOTOOLCHAIN", "local")  # never fetch a toolchain at build time
        started = time.monotonic()
        with logfile.open("w") as out:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.run(
                ["nice", "-n", "10", *cmd], cwd=SRC, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        if proc.returncode != 0:
            tail = logfile.read_text().splitlines()[-30:]
            raise RuntimeError(f"go build failed ({logfile}):\n" + "\n".join(tail))
        seconds = time.monotonic() - started
        info = {
            "key": root.name,
            "bin": str(target),
            "version": hydra,
            "go": subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip(),
            "seconds": round(seconds, 1),
            "cpus": os.cpu_count(),
            "size_mib": round((staging / "hydra").stat().st_size / 2**20, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        (root / "build.json").write_text(json.dumps(info, indent=2, sort_keys=True))
        log(f"built in {seconds:.0f}s ({info['size_mib']} MiB)")
        return info


# ---------------------------------------------------------------------- certificates


def ensure_pki() -> None:
    """A CA and Hydra's serving certificate for 127.0.0.1 / localhost."""
    from tools.infra.k8s import _ensure_openssl, _openssl

    _ensure_openssl()
    PKI.mkdir(parents=True, exist_ok=True)
    os.chmod(PKI, 0o700)
    ca_key, ca_crt = PKI / "ca.key", PKI / "ca.crt"
    key, crt = PKI / "hydra.key", PKI / "hydra.crt"
    if not (ca_key.exists() and ca_crt.exists()):
        for path in PKI.iterdir():  # a new CA invalidates everything signed before
            path.unlink()
        _openssl("genrsa", "-out", str(ca_key), "2048")
        _openssl("req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=isotope-oidc-ca",
                 "-days", "3650", "-out", str(ca_crt))  # fmt: skip
    if not (key.exists() and crt.exists()):
        ext, csr = PKI / "hydra.ext", PKI / "hydra.csr"
        ext.write_text(
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName=IP:{HOST},DNS:localhost\n"
        )
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl("req", "-new", "-key", str(key), "-subj", "/CN=isotope-oidc", "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-days", "3650", "-extfile", str(ext),
                 "-out", str(crt))  # fmt: skip
        csr.unlink()
        ext.unlink()
    for path in PKI.glob("*.key"):
        os.chmod(path, 0o600)


def _system_secret() -> str:
    path = HOME / "system_secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        os.chmod(path, 0o600)
    return path.read_text().strip()


def write_config() -> Path:
    """Hydra's configuration (JSON is YAML): loopback ports, TLS on the public port."""
    config = {
        "dsn": "memory",
        "log": {"level": "warn", "leak_sensitive_values": False},
        "serve": {
            "public": {"host": HOST, "port": PUBLIC_PORT},
            "admin": {"host": HOST, "port": ADMIN_PORT, "tls": {"enabled": False}},
            # Browsers drop SameSite=None cookies that are not Secure (--dev leaves
            # them insecure): the public port is HTTPS, so mark them Secure and Lax.
            "cookies": {"same_site_mode": "Lax", "secure": True},
            "tls": {
                "enabled": True,
                "cert": {"path": str(PKI / "hydra.crt")},
                "key": {"path": str(PKI / "hydra.key")},
            },
        },
        "urls": {
            "self": {"issuer": ISSUER, "public": ISSUER},
            "login": f"{LOGIN_URL}/login",
            "consent": f"{LOGIN_URL}/consent",
            "logout": f"{LOGIN_URL}/logout",
        },
        "secrets": {"system": [_system_secret()]},
        "oidc": {"subject_identifiers": {"supported_types": ["public"]}},
        "ttl": {"id_token": "1h", "access_token": "1h", "login_consent_request": "30m"},
    }
    path = HOME / "hydra.yaml"
    text = json.dumps(config, indent=2, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        os.chmod(path, 0o600)
    return path


# --------------------------------------------------------------------------- daemons


def _start(name: str, argv: list[str], config: list[Path], env: dict | None = None) -> bool:
    """Start ``name`` unless the same command with the same files runs. -> started"""
    return DAEMONS.start(name, argv, digest=files_digest(config), env=env)[1]


# --------------------------------------------------------------------------- HTTP


def ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(PKI / "ca.crt"))


def _http(method: str, url: str, body: dict | None = None, timeout: float = 5.0):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    context = ssl_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            payload, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        payload, status = error.read(), error.code
    try:
        return status, json.loads(payload or b"null")
    except ValueError:
        return status, payload.decode(errors="replace")


def _ready() -> tuple[bool, str]:
    try:
        code, body = _http("GET", f"{ISSUER}/.well-known/openid-configuration", timeout=3)
        if code != 200 or not isinstance(body, dict) or body.get("issuer") != ISSUER:
            return False, f"discovery answered {code}"
        code, _ = _http("GET", f"{ADMIN_URL}/health/ready", timeout=3)
        if code != 200:
            return False, f"admin /health/ready answered {code}"
        code, _ = _http("GET", f"{LOGIN_URL}/healthz", timeout=3)
        if code != 200:
            return False, f"login app answered {code}"
    except (OSError, ssl.SSLError) as error:
        return False, f"unreachable: {error}"
    return True, "ok"


# --------------------------------------------------------------------------- users, clients


def user_set(
    name: str,
    password: str,
    *,
    groups: list[str] | tuple[str, ...] = (),
    email: str = "",
    full_name: str = "",
    disabled: bool = False,
) -> None:
    """Create or replace a user of the provider (read again at each sign-in)."""
    from tools.oidc.login_app import password_hash

    HOME.mkdir(parents=True, exist_ok=True)
    with (HOME / "users.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel tests add users to the same file
        try:
            users = json.loads(USERS.read_text())
        except (OSError, ValueError):
            users = {}
        users[name] = {
            "password_sha256": password_hash(password, secrets.token_hex(8)),
            "email": email or f"{name}@example.test",
            "name": full_name or name,
            "groups": list(groups),
            "disabled": disabled,
        }
        tmp = USERS.with_suffix(".tmp")
        tmp.write_text(json.dumps(users, indent=2, sort_keys=True))
        os.chmod(tmp, 0o600)
        tmp.replace(USERS)


def client_create(
    client_id: str,
    *,
    redirect_uris: list[str] | tuple[str, ...] = (),
    post_logout_redirect_uris: list[str] | tuple[str, ...] = (),
    secret: str | None = None,
    name: str = "",
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
    extra: dict | None = None,
) -> dict:
    """Register (or replace) an OAuth2 client in Hydra; returns it with its secret."""
    secret = secret or secrets.token_urlsafe(24)
    body = {
        "client_id": client_id,
        "client_name": name or client_id,
        "client_secret": secret,
        "grant_types": list(grant_types),
        "response_types": ["code", "id_token"],
        "scope": "openid profile email groups offline_access",
        "redirect_uris": list(redirect_uris),
        "post_logout_redirect_uris": list(post_logout_redirect_uris),
        "token_endpoint_auth_method": "client_secret_post",
        **(extra or {}),
    }
    code, answer = _http("PUT", f"{ADMIN_URL}/admin/clients/{client_id}", body)
    if code == 404:
        code, answer = _http("POST", f"{ADMIN_URL}/admin/clients", body)
    if code not in (200, 201):
        raise RuntimeError(f"Hydra refused client {client_id}: {code} {answer}")
    answer["client_secret"] = secret
    return answer


def apiserver_flags(client_id: str = KUBERNETES_CLIENT_ID) -> list[str]:
    """kube-apiserver flags that accept this provider's ID tokens for ``client_id``:
    user ``oidc:<preferred_username>``, groups ``oidc:<group>``. Empty until the
    provider's CA exists (``up`` made it), so the API server never points at nothing."""
    ca = PKI / "ca.crt"
    if not ca.exists():
        return []
    return [
        f"--oidc-issuer-url={ISSUER}",
        f"--oidc-client-id={client_id}",
        f"--oidc-ca-file={ca}",
        "--oidc-username-claim=preferred_username",
        "--oidc-username-prefix=oidc:",
        "--oidc-groups-claim=groups",
        "--oidc-groups-prefix=oidc:",
    ]


# --------------------------------------------------------------------------- contract


def _base_state() -> dict:
    return {
        "issuer": ISSUER,
        "admin_url": ADMIN_URL,
        "login_url": LOGIN_URL,
        "ca_file": str(PKI / "ca.crt"),
        "users_file": str(USERS),
        "dev_client_id": DEV_CLIENT_ID,
        "kubernetes_client_id": KUBERNETES_CLIENT_ID,
        "version": version(),
        "ports": {"public": PUBLIC_PORT, "admin": ADMIN_PORT, "login": LOGIN_PORT},
        "logs": str(LOGS),
    }


def _wait_ready(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        ok, detail = _ready()
        if ok:
            return
        for name in ("hydra", "login"):
            if _running(name) is None:
                tail = (LOGS / f"{name}.log").read_text(errors="replace").splitlines()[-10:]
                raise RuntimeError(f"{name} exited ({LOGS / name}.log):\n" + "\n".join(tail))
        time.sleep(0.3)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for the provider: {detail}")


def up() -> dict:
    started_at = time.monotonic()
    state = _base_state()
    try:
        info = build()
        state["build"] = info
        for directory in (HOME, RUN, LOGS):
            directory.mkdir(parents=True, exist_ok=True)
        ensure_pki()
        config = write_config()
        hydra = [
            str(Path(info["bin"]) / "hydra"),
            "serve",
            "all",
            "--dev",  # the login app is plain http on loopback
            "--config",
            str(config),
            "--sqa-opt-out",
        ]
        _start("hydra", hydra, [config], env={"DISABLE_TELEMETRY": "1"})
        login = [
            sys.executable,
            str(LOGIN_APP),
            f"--listen={HOST}:{LOGIN_PORT}",
            f"--admin-url={ADMIN_URL}",
            f"--users={USERS}",
        ]
        _start("login", login, [LOGIN_APP])
        _wait_ready(START_TIMEOUT)
        client_create(DEV_CLIENT_ID, redirect_uris=DEV_REDIRECTS, secret=_dev_secret(),
                      name="Isotope (make run)",
                      post_logout_redirect_uris=[u.split("/accounts/")[0] + "/login/"
                                                 for u in DEV_REDIRECTS])  # fmt: skip
        client_create(KUBERNETES_CLIENT_ID, secret=_dev_secret("kubernetes"), name="Kubernetes")
    except (RuntimeError, OSError, subprocess.CalledProcessError, ValueError) as error:
        detail = getattr(error, "stderr", None)
        reason = f"cannot start: {error}" + (
            f" {detail.decode(errors='replace')}" if isinstance(detail, bytes) else ""
        )
        state.update(ok=False, reason=reason.strip())
        print(reason, file=sys.stderr, flush=True)
        return write_state(PART, state)
    seconds = time.monotonic() - started_at
    state.update(
        ok=True,
        reason=f"Ory Hydra {state['version']} at {ISSUER} (up in {seconds:.1f}s)",
        startup_seconds=round(seconds, 1),
        dev_client_secret_file=str(HOME / "client_secret"),
        processes=DAEMONS.pids(("hydra", "login")),
    )
    return write_state(PART, state)


def _dev_secret(name: str = "client") -> str:
    path = HOME / f"{name}_secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        os.chmod(path, 0o600)
    return path.read_text().strip()


def down() -> None:
    stopped = [name for name in ("login", "hydra") if _stop(name)]
    if stopped:
        log("stopped " + ", ".join(stopped))
    state = keep_build(PART, _base_state())
    state.update(ok=False, reason="stopped (run: python3 -m tools.infra oidc up)")
    write_state(PART, state)


def status() -> dict:
    state = keep_build(PART, _base_state())
    dead = [name for name in ("hydra", "login") if _running(name) is None]
    if dead:
        state.update(
            ok=False, reason=f"not running: {', '.join(dead)} (run: python3 -m tools.infra oidc up)"
        )
        return write_state(PART, state)
    ok, detail = _ready()
    state.update(ok=ok, reason=f"Ory Hydra {state['version']} at {ISSUER}" if ok else detail)
    return write_state(PART, state)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m tools.infra.oidc build|up|down|status|user NAME --password P --groups a,b``"""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "status"
    if command == "build":
        try:
            print(json.dumps(build(force="--force" in args), indent=2, sort_keys=True))
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        return 0
    if command == "user" and len(args) >= 2:
        import argparse

        parser = argparse.ArgumentParser(prog="python3 -m tools.infra.oidc user")
        parser.add_argument("name")
        parser.add_argument("--password", required=True)
        parser.add_argument("--groups", default="")
        parser.add_argument("--email", default="")
        options = parser.parse_args(args[1:])
        groups = [g.strip() for g in options.groups.split(",") if g.strip()]
        user_set(options.name, options.password, groups=groups, email=options.email)
        print(f"user {options.name} groups={groups}")
        return 0
    if command not in ("up", "down", "status"):
        print(main.__doc__, file=sys.stderr)
        return 2
    result = globals()[command]()
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0 if result.get("ok") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
