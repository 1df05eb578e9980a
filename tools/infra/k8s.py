"""A real local Kubernetes control plane with simulated nodes.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are built from Go
modules (``tools/k8s/go.mod``), KWOK and metrics-server each from its own module
(``tools/k8s/kwok/go.mod``, ``tools/k8s/metrics-server/go.mod``). KWOK plays the
kubelets of three fake nodes, so scheduled pods reach Running without containers, and
simulates their resource usage (``tools/k8s/kwok/metrics.yaml``), which metrics-server
serves as the metrics API (``metrics.k8s.io``) for HorizontalPodAutoscalers. ``up`` also
makes the StorageClass of the portal's volume claims (``isotope-local``, no
provisioner, Immediate binding).

- ``build()``  compile the binaries into ``CACHE/k8s/<hash>/bin`` (once per go.mod+sum)
- ``up()``     build if needed, make certificates, start the daemons, wait until ready
- ``down()``   stop the daemons (state under ``VAR/k8s`` is kept for the next ``up``)
- ``status()`` check the processes, ``/readyz`` and the nodes

Everything listens on 127.0.0.1 only. The admin kubeconfig is ``VAR/kubeconfig``.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tools.infra import CACHE, ROOT, VAR, oidc, write_state
from tools.infra.daemons import Daemons, files_digest, keep_build

PART = "k8s"
SRC = ROOT / "tools" / "k8s"
KWOK_SRC = SRC / "kwok"
STAGES = KWOK_SRC / "stages.yaml"
KWOK_METRICS = KWOK_SRC / "metrics.yaml"  # simulated usage + the kubelet-like endpoint
METRICS_SERVER_SRC = SRC / "metrics-server"
HOME = VAR / "k8s"
PKI = HOME / "pki"
RUN = HOME / "run"
LOGS = HOME / "logs"
ETCD_DATA = HOME / "etcd"
KUBECONFIG = VAR / "kubeconfig"

HOST = "127.0.0.1"
ETCD_PORT = 12379
ETCD_PEER_PORT = 12380
APISERVER_PORT = 16443
CONTROLLER_MANAGER_PORT = 16257
SCHEDULER_PORT = 16259
KWOK_PORT = 16247
METRICS_SERVER_PORT = 16263
SERVER = f"https://{HOST}:{APISERVER_PORT}"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR
POD_CIDR = "10.244.0.0/16"

NODES = tuple(f"isotope-node-{i}" for i in (1, 2, 3))
NODE_CPU = "8"
NODE_MEMORY = "32Gi"
NODE_PODS = "110"

# The metrics API (aggregated: kube-apiserver proxies metrics.k8s.io to metrics-server).
METRICS_API = "v1beta1.metrics.k8s.io"
METRICS_NAMESPACE = "kube-system"
METRICS_SERVICE = "metrics-server"
METRICS_USER = "system:metrics-server"  # the CN of metrics-server's client certificate
# Test-cluster settings, shorter than a production cluster's: metrics-server scrapes
# every 10 s (its minimum; 60 s by default) and the HPA controller syncs every 5 s
# (15 s by default), so that autoscaling tests take seconds, not minutes.
METRIC_RESOLUTION = "10s"
HPA_SYNC_PERIOD = "5s"
# Where KWOK serves each fake node's kubelet-like /metrics/resource (kwok/metrics.yaml).
RESOURCE_METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
METRICS_API_TIMEOUT = 90.0

# Bump when the build command changes in a way that go.mod/go.sum do not show.
BUILD_REVISION = "1"
KUBE_MAINS = (
    "k8s.io/kubernetes/cmd/kube-apiserver",
    "k8s.io/kubernetes/cmd/kube-controller-manager",
    "k8s.io/kubernetes/cmd/kube-scheduler",
    "go.etcd.io/etcd/server/v3",  # its main package; go names the binary "server"
)
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "metrics-server",
)
# Start order; down() stops them in reverse.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "metrics-server",
)

START_TIMEOUT = 120.0


def log(message: str) -> None:
    print(f"[k8s] {message}", flush=True)


DAEMONS = Daemons(RUN, LOGS, HOME, log)
_running, _stop = DAEMONS.running, DAEMONS.stop


# --------------------------------------------------------------------------- versions


def _module_version(gomod: Path, module: str) -> str:
    match = re.search(
        rf"^[ \t]*(?:require[ \t]+)?{re.escape(module)}[ \t]+(v\S+)", gomod.read_text(), re.M
    )
    return match.group(1) if match else "unknown"


def versions() -> dict:
    """Pinned versions, read from the go.mod files so that they are stated once."""
    return {
        "kubernetes": _module_version(SRC / "go.mod", "k8s.io/kubernetes"),
        "etcd": _module_version(SRC / "go.mod", "go.etcd.io/etcd/server/v3"),
        "kwok": _module_version(KWOK_SRC / "go.mod", "sigs.k8s.io/kwok"),
        "metrics_server": _module_version(
            METRICS_SERVER_SRC / "go.mod", "sigs.k8s.io/metrics-server"
        ),
    }


# --------------------------------------------------------------------------- build


def _go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _go_env() -> dict:
    env = dict(os.environ)
    env.setdefault("GOTOOLCHAIN", "local")  # never fetch a toolchain at build time
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-buildvcs=false -mod=readonly"
    return env


def build_key() -> str:
    """Hash of every input of the build: the three modules' go.mod/go.sum, Go, the recipe."""
    digest = hashlib.sha256()
    for module in (SRC, KWOK_SRC, METRICS_SERVER_SRC):
        for path in (module / "go.mod", module / "go.sum"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    go = _go()
    if go:
        out = subprocess.run([go, "version"], capture_output=True, text=True, check=False)
        digest.update(out.stdout.strip().encode())
    digest.update(f"rev={BUILD_REVISION} arch={platform.machine()}".encode())
    return digest.hexdigest()[:16]


def bin_dir() -> Path:
    return CACHE / "k8s" / build_key() / "bin"


def _built(directory: Path) -> bool:
    return (
        all(os.access(directory / name, os.X_OK) for name in BINARIES)
        and (directory.parent / "build.json").exists()
    )


def _run_build(cmd: list[str], cwd: Path, logfile: Path) -> None:
    log(f"$ (cd {cwd.relative_to(ROOT)} && {' '.join(cmd)})")
    with logfile.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(
            ["nice", "-n", "10", *cmd],
            cwd=cwd,
            env=_go_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        tail = logfile.read_text().splitlines()[-30:]
        raise RuntimeError(f"go build failed ({logfile}):\n" + "\n".join(tail))


def build(force: bool = False) -> dict:
    """Compile the binaries into ``CACHE/k8s/<hash>/bin`` unless they are there."""
    go = _go()
    if not go:
        raise RuntimeError("the Go toolchain (go) is not installed; see tools/k8s/README.md")
    target = bin_dir()
    root = target.parent
    if _built(target) and not force:
        return json.loads((root / "build.json").read_text())
    root.mkdir(parents=True, exist_ok=True)
    with (root / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per key, even with parallel callers
        if _built(target) and not force:
            return json.loads((root / "build.json").read_text())
        vers = versions()
        staging = root / "bin.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        logfile = root / "build.log"
        logfile.write_text("")
        log(
            f"building Kubernetes {vers['kubernetes']}, etcd {vers['etcd']}, KWOK {vers['kwok']},"
            f" metrics-server {vers['metrics_server']}"
        )
        log(f"into {target} (nice -n 10; a cold build takes 9-15 min on 2 cores)")
        kube = vers["kubernetes"]
        major, minor = kube.lstrip("v").split(".")[:2]
        pkg = "k8s.io/component-base/version"
        ldflags = " ".join(
            [
                "-s -w",
                f"-X {pkg}.gitVersion={kube}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
            ]
        )
        started = time.monotonic()
        _run_build(
            [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                f"{staging}/",
                *KUBE_MAINS,
            ],
            SRC,
            logfile,
        )
        (staging / "server").rename(staging / "etcd")
        kube_seconds = time.monotonic() - started
        log(f"control plane built in {kube_seconds:.0f}s")
        _run_build(
            [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "-o",
                f"{staging}/",
                "sigs.k8s.io/kwok/cmd/kwok",
            ],
            KWOK_SRC,
            logfile,
        )
        kwok_seconds = time.monotonic() - started - kube_seconds
        log(f"KWOK built in {kwok_seconds:.0f}s")
        _run_build(
            [
                go,
                "build",
                "-trimpath",
                "-ldflags",
                # metrics-server reports client-go's version variable as its own.
                f"-s -w -X k8s.io/client-go/pkg/version.gitVersion={vers['metrics_server']}",
                "-o",
                f"{staging}/",
                "sigs.k8s.io/metrics-server/cmd/metrics-server",
            ],
            METRICS_SERVER_SRC,
            logfile,
        )
        seconds = time.monotonic() - started
        go_version = subprocess.run([go, "version"], capture_output=True, text=True).stdout
        info = {
            "key": root.name,
            "bin": str(target),
            "versions": vers,
            "go": go_version.strip(),
            "seconds": round(seconds, 1),
            "seconds_control_plane": round(kube_seconds, 1),
            "seconds_kwok": round(kwok_seconds, 1),
            "seconds_metrics_server": round(seconds - kube_seconds - kwok_seconds, 1),
            "cpus": os.cpu_count(),
            "sizes_mib": {
                name: round((staging / name).stat().st_size / 2**20, 1) for name in BINARIES
            },
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        (root / "build.json").write_text(json.dumps(info, indent=2, sort_keys=True))
        log(f"built in {seconds:.0f}s: {info['sizes_mib']} MiB")
        return info


# ---------------------------------------------------------------------- certificates


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ensure_openssl() -> None:
    if shutil.which("openssl"):
        return
    if os.geteuid() != 0:
        raise RuntimeError("openssl is missing; install it: apt-get install -y openssl")
    log("installing openssl (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "openssl"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)


def _ca(name: str, cn: str) -> None:
    key, crt = PKI / f"{name}.key", PKI / f"{name}.crt"
    if key.exists() and crt.exists():
        return
    _openssl("genrsa", "-out", str(key), "2048")
    subject = f"/CN={cn}"
    _openssl("req", "-x509", "-new", "-key", str(key), "-subj", subject, "-days", "3650",
             "-out", str(crt))  # fmt: skip


def _cert(name: str, subject: str, usage: str, ca: str = "ca", alt_names: str = "") -> None:
    """A key and a certificate signed by ``ca``, unless both exist."""
    key, crt = PKI / f"{name}.key", PKI / f"{name}.crt"
    if key.exists() and crt.exists():
        return
    ext, csr = PKI / f"{name}.ext", PKI / f"{name}.csr"
    lines = ["keyUsage=critical,digitalSignature,keyEncipherment", f"extendedKeyUsage={usage}"]
    if alt_names:
        lines.append(f"subjectAltName={alt_names}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(PKI / f"{ca}.crt"),
             "-CAkey", str(PKI / f"{ca}.key"), "-CAcreateserial", "-days", "3650",
             "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    csr.unlink()
    ext.unlink()


def ensure_pki() -> None:
    """CAs, the API server's serving cert, the service-account keys, client certs."""
    _ensure_openssl()
    PKI.mkdir(parents=True, exist_ok=True)
    os.chmod(PKI, 0o700)
    if not ((PKI / "ca.key").exists() and (PKI / "ca.crt").exists()):
        log("generating certificates")
        for path in PKI.iterdir():  # a new CA invalidates everything signed before
            path.unlink()
    _ca("ca", "isotope-kubernetes-ca")
    _ca("front-proxy-ca", "isotope-front-proxy-ca")
    names = [
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        f"IP:{HOST}",
        f"IP:{KUBERNETES_SERVICE_IP}",
    ]
    _cert("apiserver", "/CN=kube-apiserver", "serverAuth", alt_names=",".join(names))
    if not ((PKI / "sa.key").exists() and (PKI / "sa.pub").exists()):
        _openssl("genrsa", "-out", str(PKI / "sa.key"), "2048")
        _openssl("rsa", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))
    _cert("admin", "/CN=isotope-admin/O=system:masters", "clientAuth")
    _cert("controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
    _cert("scheduler", "/CN=system:kube-scheduler", "clientAuth")
    _cert("kwok", "/CN=isotope-kwok/O=system:masters", "clientAuth")
    _cert("front-proxy-client", "/CN=front-proxy-client", "clientAuth", ca="front-proxy-ca")
    _cert("metrics-server-client", f"/CN={METRICS_USER}", "clientAuth")
    # kube-apiserver checks the aggregated server's certificate against the APIService's
    # caBundle (our CA) for the name <service>.<namespace>.svc.
    service_dns = f"{METRICS_SERVICE}.{METRICS_NAMESPACE}.svc"
    _cert(
        "metrics-server",
        f"/CN={service_dns}",
        "serverAuth",
        alt_names=f"DNS:{service_dns},DNS:localhost,IP:{HOST}",
    )
    for path in PKI.glob("*.key"):
        os.chmod(path, 0o600)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(path: Path, user: str, cert: str) -> None:
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: isotope
  cluster:
    server: {SERVER}
    certificate-authority-data: {_b64(PKI / "ca.crt")}
users:
- name: {user}
  user:
    client-certificate-data: {_b64(PKI / f"{cert}.crt")}
    client-key-data: {_b64(PKI / f"{cert}.key")}
contexts:
- name: isotope
  context:
    cluster: isotope
    user: {user}
current-context: isotope
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def write_kubeconfigs() -> None:
    _write_kubeconfig(KUBECONFIG, "isotope-admin", "admin")
    _write_kubeconfig(
        HOME / "controller-manager.kubeconfig",
        "controller-manager",
        "controller-manager",
    )
    _write_kubeconfig(HOME / "scheduler.kubeconfig", "scheduler", "scheduler")
    _write_kubeconfig(HOME / "kwok.kubeconfig", "kwok", "kwok")
    _write_kubeconfig(HOME / "metrics-server.kubeconfig", "metrics-server", "metrics-server-client")


# --------------------------------------------------------------------------- daemons


def _served_client(name: str, port: int) -> list[str]:
    """Flags of a component that talks to kube-apiserver with ``<name>.kubeconfig`` and
    serves HTTPS on ``HOST:port``, authenticating and authorizing through the API."""
    kubeconfig = HOME / f"{name}.kubeconfig"
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={HOST}",
        f"--secure-port={port}",
    ]


def _command(name: str, bin_path: Path) -> list[str]:
    binary = str(bin_path / name)
    if name == "etcd":
        return [
            binary,
            "--name=isotope",
            f"--data-dir={ETCD_DATA}",
            f"--listen-client-urls=http://{HOST}:{ETCD_PORT}",
            f"--advertise-client-urls=http://{HOST}:{ETCD_PORT}",
            f"--listen-peer-urls=http://{HOST}:{ETCD_PEER_PORT}",
            f"--initial-advertise-peer-urls=http://{HOST}:{ETCD_PEER_PORT}",
            f"--initial-cluster=isotope=http://{HOST}:{ETCD_PEER_PORT}",
            "--initial-cluster-state=new",
            "--quota-backend-bytes=2147483648",
            # A throw-away development cluster: speed over durability on slow disks.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
    if name == "kube-apiserver":
        return [
            binary,
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={APISERVER_PORT}",
            f"--etcd-servers=http://{HOST}:{ETCD_PORT}",
            f"--tls-cert-file={PKI / 'apiserver.crt'}",
            f"--tls-private-key-file={PKI / 'apiserver.key'}",
            f"--client-ca-file={PKI / 'ca.crt'}",
            f"--service-account-key-file={PKI / 'sa.pub'}",
            f"--service-account-signing-key-file={PKI / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins="
            + ",".join(
                [
                    "NamespaceLifecycle",
                    "LimitRanger",
                    "ServiceAccount",
                    "DefaultTolerationSeconds",
                    "Priority",
                    "PodSecurity",
                    "MutatingAdmissionWebhook",
                    "ValidatingAdmissionPolicy",
                    "ValidatingAdmissionWebhook",
                    "ResourceQuota",
                ]
            ),
            "--allow-privileged=true",
            # Aggregated API servers: the front proxy's CA and client certificate.
            f"--requestheader-client-ca-file={PKI / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={PKI / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={PKI / 'front-proxy-client.key'}",
            # The loopback address may not be an endpoint of the "kubernetes" service.
            "--endpoint-reconciler-type=none",
            # ID tokens of the local OIDC provider (tools/infra/oidc.py) authenticate
            # too: one identity for the portal and the cluster.
            *oidc.apiserver_flags(),
            "--profiling=false",
            "--v=1",
        ]
    if name == "kube-controller-manager":
        return [
            binary,
            *_served_client("controller-manager", CONTROLLER_MANAGER_PORT),
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={PKI / 'sa.key'}",
            f"--root-ca-file={PKI / 'ca.crt'}",
            f"--cluster-signing-cert-file={PKI / 'ca.crt'}",
            f"--cluster-signing-key-file={PKI / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-cidr={POD_CIDR}",
            # A test-cluster setting (15 s by default): HPAs react within seconds. The
            # HPA controller reads metrics.k8s.io (metrics-server) as it does by default.
            f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
            "--profiling=false",
            "--v=1",
        ]
    if name == "kube-scheduler":
        return [
            binary,
            *_served_client("scheduler", SCHEDULER_PORT),
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]
    if name == "kwok":
        return [
            binary,
            f"--kubeconfig={HOME / 'kwok.kubeconfig'}",
            f"--config={STAGES}",
            f"--config={KWOK_METRICS}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR.replace('.0.0/16', '.0.1/16')}",
            f"--node-ip={HOST}",
            f"--server-address={HOST}:{KWOK_PORT}",
            "--v=WARN",  # INFO logs every lease renewal
        ]
    if name == "metrics-server":
        return [
            binary,
            *_served_client("metrics-server", METRICS_SERVER_PORT),
            f"--tls-cert-file={PKI / 'metrics-server.crt'}",
            f"--tls-private-key-file={PKI / 'metrics-server.key'}",
            # The "kubelets" are KWOK's server: every fake node's InternalIP is HOST and
            # the node annotation RESOURCE_METRICS_PATH_ANNOTATION names its path there.
            # KWOK serves TLS with a throw-away self-signed certificate.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-port={KWOK_PORT}",
            "--kubelet-insecure-tls",
            # Test-cluster setting (60 s by default; 10 s is the least it takes); the
            # scrape timeout must stay under 90 % of it.
            f"--metric-resolution={METRIC_RESOLUTION}",
            "--kubelet-request-timeout=5s",
            "--profiling=false",
        ]
    raise ValueError(name)


def _config_digest(name: str) -> str:
    """Hash of the files a daemon reads at start that its command line does not show."""
    return files_digest([STAGES, KWOK_METRICS] if name == "kwok" else [])


def _start(name: str, argv: list[str], restart: bool = False) -> tuple[dict, bool]:
    """Start a daemon unless the same one runs already. -> (record, started)

    ``restart`` restarts a running daemon anyway: its clients come back cleanly from a
    restart of the server they watch, whose RBAC caches start empty.
    """
    return DAEMONS.start(name, argv, digest=_config_digest(name), restart=restart)


def _log_tail(name: str, lines: int = 15) -> str:
    try:
        return "\n".join((LOGS / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- API access


def _ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    context.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    return context


def _api(
    method: str,
    path: str,
    body: dict | None = None,
    timeout: float = 5.0,
    content_type: str = "application/json",
) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(SERVER + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, context=_ssl_context(), timeout=timeout) as response:
            payload = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        payload, status = error.read().decode(errors="replace"), error.code
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


def _readyz() -> tuple[bool, str]:
    try:
        code, body = _api("GET", "/readyz", timeout=3.0)
    except (OSError, ssl.SSLError) as error:
        return False, f"/readyz unreachable: {error}"
    return code == 200, f"/readyz {code}: {str(body).strip()[:300]}"


def _etcd_healthy() -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{ETCD_PORT}/health", timeout=2.0) as response:
            return json.loads(response.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


def _healthz(port: int) -> bool:
    """/healthz of a component's own serving port (self-signed, always allowed)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        url = f"https://{HOST}:{port}/healthz"
        with urllib.request.urlopen(url, context=context, timeout=2.0) as response:
            return response.status == 200
    except OSError:
        return False


def _node_body(name: str) -> dict:
    resources = {"cpu": NODE_CPU, "memory": NODE_MEMORY, "pods": NODE_PODS}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0",
                RESOURCE_METRICS_PATH_ANNOTATION: _resource_metrics_path(name),
            },
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {},
        "status": {"allocatable": resources, "capacity": dict(resources)},
    }


def _resource_metrics_path(node: str) -> str:
    """Where KWOK serves ``node``'s kubelet-like resource metrics (kwok/metrics.yaml)."""
    return f"/metrics/nodes/{node}/metrics/resource"


def ensure_nodes() -> None:
    for name in NODES:
        code, body = _api("GET", f"/api/v1/nodes/{name}")
        if code == 404:
            code, body = _api("POST", "/api/v1/nodes", _node_body(name))
            if code not in (200, 201, 409):
                raise RuntimeError(f"could not create node {name}: {code} {body}")
            size = f"{NODE_CPU} CPU, {NODE_MEMORY}, {NODE_PODS} pods"
            log(f"created fake node {name} ({size})")
        elif code == 200 and isinstance(body, dict):
            _annotate_node(name, body)


def _annotate_node(name: str, node: dict) -> None:
    """Give a node made before metrics-server existed its resource-metrics path: a merge
    patch of that one annotation, carrying the resourceVersion read (compare-and-set;
    on a conflict read again)."""
    path = _resource_metrics_path(name)
    for _ in range(5):
        metadata = node.get("metadata", {})
        if (metadata.get("annotations") or {}).get(RESOURCE_METRICS_PATH_ANNOTATION) == path:
            return
        patch = {
            "metadata": {
                "resourceVersion": metadata.get("resourceVersion"),
                "annotations": {RESOURCE_METRICS_PATH_ANNOTATION: path},
            }
        }
        code, answer = _api(
            "PATCH",
            f"/api/v1/nodes/{name}",
            patch,
            content_type="application/merge-patch+json",
        )
        if code == 200:
            log(f"node {name}: resource metrics at {path}")
            return
        if code != 409:
            raise RuntimeError(f"could not annotate node {name}: {code} {answer}")
        code, node = _api("GET", f"/api/v1/nodes/{name}")
        if code != 200 or not isinstance(node, dict):
            raise RuntimeError(f"could not read node {name}: {code} {node}")
    raise RuntimeError(f"could not annotate node {name}: it kept changing")


STORAGE_CLASS = os.environ.get("ISOTOPE_K8S_STORAGE_CLASS", "isotope-local")


def ensure_storage_class() -> None:
    """The StorageClass of the portal's volume claims: no provisioner, immediate binding
    (the portal makes one hostPath PersistentVolume per claim, pre-bound to it; the
    cluster's own PV controller binds them). Same fields as the portal's manifest."""
    body = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "labels": {"app.kubernetes.io/managed-by": "isotope"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": False,
    }
    code, _ = _api("GET", f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}")
    if code == 404:
        code, answer = _api("POST", "/apis/storage.k8s.io/v1/storageclasses", body)
        if code not in (200, 201, 409):
            raise RuntimeError(f"could not create StorageClass {STORAGE_CLASS}: {code} {answer}")
        log(f"created StorageClass {STORAGE_CLASS} (no provisioner, Immediate binding)")


# ------------------------------------------------------------------------ metrics API

MANAGED = {"app.kubernetes.io/managed-by": "isotope"}


def _metrics_api_objects() -> list[tuple[str, dict, tuple[str, ...]]]:
    """(collection path, object, the fields ``up`` keeps as written) for metrics-server:
    its RBAC, the Service kube-apiserver resolves and the APIService."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    user = [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": METRICS_USER}]

    def meta(name: str, **extra) -> dict:
        return {"name": name, "labels": dict(MANAGED), **extra}

    def binding(kind: str, name: str, role_kind: str, role: str, **extra) -> dict:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": meta(name, **extra),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": user,
        }

    read = ["get", "list", "watch"]
    return [
        (
            f"{rbac}/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": meta("system:metrics-server"),
                "rules": [
                    {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                    {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": read},
                ],
            },
            ("rules",),
        ),
        (
            f"{rbac}/clusterrolebindings",
            binding(
                "ClusterRoleBinding",
                "system:metrics-server",
                "ClusterRole",
                "system:metrics-server",
            ),
            ("subjects",),
        ),
        (
            # Delegated authentication and authorization: TokenReviews and
            # SubjectAccessReviews for the requests kube-apiserver forwards.
            f"{rbac}/clusterrolebindings",
            binding(
                "ClusterRoleBinding",
                "metrics-server:system:auth-delegator",
                "ClusterRole",
                "system:auth-delegator",
            ),
            ("subjects",),
        ),
        (
            # The front proxy's CA and header names (ConfigMap extension-apiserver-
            # authentication), to trust the user kube-apiserver names in its headers.
            f"{rbac}/namespaces/{METRICS_NAMESPACE}/rolebindings",
            binding(
                "RoleBinding",
                "metrics-server-auth-reader",
                "Role",
                "extension-apiserver-authentication-reader",
                namespace=METRICS_NAMESPACE,
            ),
            ("subjects",),
        ),
        (
            # Who may view a namespace may read its pods' metrics (kubectl top, the
            # portal): aggregated into the built-in view/edit/admin roles.
            f"{rbac}/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {
                    "name": "system:aggregated-metrics-reader",
                    "labels": {
                        **MANAGED,
                        "rbac.authorization.k8s.io/aggregate-to-view": "true",
                        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                    },
                },
                "rules": [
                    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": read}
                ],
            },
            ("rules",),
        ),
        (
            # There is no kube-proxy, and Endpoints/EndpointSlices refuse loopback
            # addresses, so the Service is an ExternalName for HOST: kube-apiserver (with
            # the default --enable-aggregator-routing=false) dials HOST at the
            # APIService's port itself.
            f"/api/v1/namespaces/{METRICS_NAMESPACE}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(METRICS_SERVICE, namespace=METRICS_NAMESPACE),
                "spec": {
                    "type": "ExternalName",
                    "externalName": HOST,
                    "ports": [{"name": "https", "port": METRICS_SERVER_PORT, "protocol": "TCP"}],
                },
            },
            ("spec",),
        ),
        (
            "/apis/apiregistration.k8s.io/v1/apiservices",
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": meta(METRICS_API),
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {
                        "namespace": METRICS_NAMESPACE,
                        "name": METRICS_SERVICE,
                        "port": METRICS_SERVER_PORT,
                    },
                    "caBundle": _b64(PKI / "ca.crt"),  # TLS verified (not skipped)
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
            ("spec",),
        ),
    ]


def _contains(have, want) -> bool:
    """Whether ``have`` holds every field of ``want`` (the server adds defaults)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_contains(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(_contains(h, w) for h, w in zip(have, want, strict=True))
        )
    return have == want


def _ensure_object(collection: str, body: dict, fields: tuple[str, ...]) -> None:
    """Create ``body`` or bring ``fields`` of the existing object back to it: a PUT of
    what was read, which carries its resourceVersion (compare-and-set; on a conflict,
    read again)."""
    name = body["metadata"]["name"]
    what = f"{body['kind']} {name}"
    for _ in range(5):
        code, current = _api("GET", f"{collection}/{name}")
        if code == 404:
            code, answer = _api("POST", collection, body)
            if code in (200, 201):
                log(f"created {what}")
                return
            if code == 409:
                continue  # made meanwhile: compare it
            raise RuntimeError(f"could not create {what}: {code} {answer}")
        if code != 200 or not isinstance(current, dict):
            raise RuntimeError(f"could not read {what}: {code} {current}")
        if all(_contains(current.get(field), body[field]) for field in fields):
            return
        current.update({field: body[field] for field in fields})
        code, answer = _api("PUT", f"{collection}/{name}", current)
        if code == 200:
            log(f"updated {what}")
            return
        if code != 409:
            raise RuntimeError(f"could not update {what}: {code} {answer}")
    raise RuntimeError(f"could not update {what}: it kept changing")


def ensure_metrics_api() -> None:
    for collection, body, fields in _metrics_api_objects():
        _ensure_object(collection, body, fields)


def metrics_api_status() -> tuple[bool, str]:
    """Whether the APIService of metrics.k8s.io is Available and the API answers."""
    try:
        code, body = _api("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{METRICS_API}")
    except (OSError, ssl.SSLError) as error:
        return False, f"kube-apiserver unreachable: {error}"
    if code == 404:
        return False, f"no APIService {METRICS_API} (run: python3 -m tools.infra k8s up)"
    if code != 200 or not isinstance(body, dict):
        return False, f"APIService {METRICS_API}: {code} {str(body)[:200]}"
    available = next(
        (c for c in body.get("status", {}).get("conditions") or [] if c.get("type") == "Available"),
        None,
    )
    if available is None or available.get("status") != "True":
        detail = (
            f"{available.get('reason')}: {available.get('message', '')}".strip()
            if available
            else "no Available condition yet"
        )
        return False, f"APIService {METRICS_API} not Available ({detail[:300]})"
    try:
        code, body = _api("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
    except (OSError, ssl.SSLError) as error:
        return False, f"metrics API unreachable: {error}"
    if code != 200 or not isinstance(body, dict):
        return False, f"metrics API: GET nodes answered {code} {str(body)[:200]}"
    return True, f"metrics API answers ({len(body.get('items') or [])} nodes with usage)"


def _ready_nodes() -> list[str]:
    try:
        code, body = _api("GET", "/api/v1/nodes?labelSelector=type%3Dkwok")
    except (OSError, ssl.SSLError):
        return []
    if code != 200 or not isinstance(body, dict):
        return []
    ready = []
    for item in body.get("items", []):
        for condition in item.get("status", {}).get("conditions") or []:
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                ready.append(item["metadata"]["name"])
    return sorted(ready)


def _wait(what: str, check, timeout: float, watch: tuple[str, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        for name in watch:
            # Look twice: right after exec the kernel may not have set the new
            # process's argument area yet, so /proc/<pid>/cmdline reads empty and the
            # daemon looks gone (seen once on a busy machine).
            if _running(name) is None and (time.sleep(0.5) or _running(name) is None):
                print(f"--- {LOGS / name}.log\n{_log_tail(name)}", file=sys.stderr)
                raise RuntimeError(
                    f"{name} exited while waiting for {what} (see {LOGS / name}.log)"
                )
        if time.monotonic() > deadline:
            for name in watch:
                print(f"--- {LOGS / name}.log\n{_log_tail(name, 5)}", file=sys.stderr)
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what} (logs: {LOGS})")
        time.sleep(0.5)


# --------------------------------------------------------------------------- contract


def _base_state() -> dict:
    return {
        "kubeconfig": str(KUBECONFIG),
        "server": SERVER,
        "versions": versions(),
        "nodes": list(NODES),
        "ports": {
            "apiserver": APISERVER_PORT,
            "etcd": ETCD_PORT,
            "etcd_peer": ETCD_PEER_PORT,
            "controller_manager": CONTROLLER_MANAGER_PORT,
            "scheduler": SCHEDULER_PORT,
            "kwok": KWOK_PORT,
            "metrics_server": METRICS_SERVER_PORT,
        },
        "metrics_api": METRICS_API,
        "logs": str(LOGS),
        "storage_class": STORAGE_CLASS,
    }


def up() -> dict:
    started_at = time.monotonic()
    state = _base_state()
    try:
        info = build()
        state["build"] = info
        bins = Path(info["bin"])
        for directory in (HOME, RUN, LOGS):
            directory.mkdir(parents=True, exist_ok=True)
        ETCD_DATA.mkdir(mode=0o700, exist_ok=True)
        ensure_pki()
        write_kubeconfigs()

        _, restarted = _start("etcd", _command("etcd", bins))
        _wait("etcd /health", _etcd_healthy, 60, ("etcd",))

        _, restarted = _start("kube-apiserver", _command("kube-apiserver", bins), restarted)
        if restarted:
            log("waiting for kube-apiserver /readyz")
        _wait(
            "kube-apiserver /readyz",
            lambda: _readyz()[0],
            START_TIMEOUT,
            ("etcd", "kube-apiserver"),
        )

        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            _start(name, _command(name, bins), restarted)
        for name, port in (
            ("kube-controller-manager", CONTROLLER_MANAGER_PORT),
            ("kube-scheduler", SCHEDULER_PORT),
        ):
            _wait(f"{name} /healthz", lambda port=port: _healthz(port), 60, (name,))
        ensure_nodes()
        ensure_storage_class()
        _wait(
            f"{len(NODES)} Ready nodes",
            lambda: len(_ready_nodes()) >= len(NODES),
            60,
            COMPONENTS,
        )
        _start("metrics-server", _command("metrics-server", bins), restarted)
        ensure_metrics_api()
        _wait_metrics_api()
    except (RuntimeError, OSError, subprocess.CalledProcessError, ValueError) as error:
        detail = getattr(error, "stderr", None)
        reason = f"cannot start: {error}" + (
            f" {detail.decode(errors='replace')}" if detail else ""
        )
        state.update(ok=False, reason=reason.strip())
        print(reason, file=sys.stderr, flush=True)
        return write_state(PART, state)
    seconds = time.monotonic() - started_at
    state.update(
        ok=True,
        reason=f"Kubernetes {state['versions']['kubernetes']} at {SERVER}, "
        f"{len(NODES)} KWOK nodes Ready, metrics API Available (up in {seconds:.1f}s)",
        startup_seconds=round(seconds, 1),
        processes=DAEMONS.pids(COMPONENTS),
    )
    return write_state(PART, state)


def _wait_metrics_api() -> None:
    """Wait until kube-apiserver serves metrics.k8s.io through metrics-server; on a time-out
    the error says what the APIService last said."""
    last = [""]

    def check() -> bool:
        ok, last[0] = metrics_api_status()
        return ok

    try:
        _wait("the metrics API", check, METRICS_API_TIMEOUT, ("metrics-server",))
    except RuntimeError as error:
        raise RuntimeError(f"{error}; last: {last[0]}") from None


def down() -> None:
    stopped = [name for name in reversed(COMPONENTS) if _stop(name)]
    if stopped:
        log("stopped " + ", ".join(stopped))
    state = keep_build(PART, _base_state())
    state.update(ok=False, reason="stopped (run: python3 -m tools.infra k8s up)")
    write_state(PART, state)


def status() -> dict:
    state = keep_build(PART, _base_state())
    processes = DAEMONS.pids(COMPONENTS)
    state["processes"] = processes
    dead = [name for name, pid in processes.items() if pid is None]
    if dead:
        state.update(
            ok=False,
            reason=f"not running: {', '.join(dead)} (run: python3 -m tools.infra k8s up)",
        )
        return write_state(PART, state)
    if not (PKI / "admin.crt").exists():
        state.update(ok=False, reason="no certificates under var/k8s/pki")
        return write_state(PART, state)
    ready, detail = _readyz()
    if not ready:
        state.update(ok=False, reason=detail)
        return write_state(PART, state)
    nodes = _ready_nodes()
    state["ready_nodes"] = nodes
    if len(nodes) < len(NODES):
        state.update(ok=False, reason=f"only {len(nodes)}/{len(NODES)} nodes Ready")
        return write_state(PART, state)
    metrics_ok, metrics_detail = metrics_api_status()
    state["metrics_api_ok"] = metrics_ok
    if not metrics_ok:
        state.update(ok=False, reason=f"metrics API not available: {metrics_detail}")
        return write_state(PART, state)
    state.update(
        ok=True,
        reason=f"Kubernetes {state['versions']['kubernetes']} at {SERVER}, "
        f"{len(nodes)} nodes Ready, {metrics_detail}",
    )
    return write_state(PART, state)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m tools.infra.k8s build|up|down|status``: ``build`` only compiles."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "status"
    if command == "build":
        try:
            info = build(force="--force" in args)
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    if command not in ("up", "down", "status"):
        print(
            "usage: python3 -m tools.infra.k8s build [--force]|up|down|status",
            file=sys.stderr,
        )
        return 2
    result = globals()[command]()
    if result is not None:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0 if result.get("ok") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
