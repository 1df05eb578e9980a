"""nginx on loopback with the shipped site file (``deploy/nginx/isotope.conf``) in front
of local web servers: what ``tests/portal/test_deploy_nginx.py`` and
``bench/ws_reconnect.py`` run. Everything nginx writes (pid, logs, temp files, a
self-signed certificate) stays in the folder given."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# nginx's own logs in the folder: the error log at "info" names a client that never
# sent its request, the access log which server answered and how fast.
NGINX_MAIN = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections {connections}; }}
http {{
    log_format timed '$time_iso8601 $remote_port "$request" $status up=$upstream_addr '
                     'upstatus=$upstream_status connect=$upstream_connect_time '
                     'header=$upstream_header_time total=$request_time';
    access_log {tmp}/access.log timed;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/isotope.conf;
}}
"""


def nginx_binary() -> Path:
    return Path(shutil.which("nginx") or "/usr/sbin/nginx")


def site_config(tmp: Path, web_ports: list[int], http: int, https: int) -> str:
    """The shipped site file, pointed at these servers, ports and certificate."""
    text = (ROOT / "deploy" / "nginx" / "isotope.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{port} max_fails=0;\n" for port in web_ports)
    replacements = {
        "    server 127.0.0.1:8000 max_fails=0;  # ISOTOPE_WEB_BIND\n": servers,
        "listen 80;": f"listen 127.0.0.1:{http};",
        "listen [::]:80;": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "/etc/isotope/tls/fullchain.pem": str(tmp / "cert.pem"),
        "/etc/isotope/tls/privkey.pem": str(tmp / "key.pem"),
        "/var/lib/isotope/staticfiles/": str(ROOT / "static") + "/",
    }
    for old, new in replacements.items():
        assert old in text, f"deploy/nginx/isotope.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


def start_nginx(
    tmp: Path, web_ports: list[int], http: int, https: int, connections: int = 256
) -> subprocess.Popen:
    """nginx in the foreground, in a session of its own, serving ``https`` (and ``http``,
    which redirects) in front of ``web_ports``; writes its certificate and configuration
    into ``tmp`` first."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-keyout", str(tmp / "key.pem")]
        + ["-out", str(tmp / "cert.pem")],
        check=True,
        capture_output=True,
    )
    (tmp / "isotope.conf").write_text(site_config(tmp, web_ports, http, https))
    (tmp / "nginx.conf").write_text(NGINX_MAIN.format(tmp=tmp, connections=connections))
    with (tmp / "nginx.out").open("w") as output:  # nginx writes to its own copy
        return subprocess.Popen(
            [nginx_binary(), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=output,
            start_new_session=True,
        )
