"""The ColdFront layer's service files, checked with the real tools inside the built image."""

from __future__ import annotations

import pytest

from tests.host.harness import TestHost

pytestmark = pytest.mark.integration


def in_image(host: TestHost, image: str, script: str, *binds: str):  # type: ignore[no-untyped-def]
    argv = ["apptainer", "exec", "--writable-tmpfs"]
    for bind in binds:
        argv += ["-B", bind]
    return host.run([*argv, image, "sh", "-c", script], check=False)


def test_nginx_config_valid(testhost: TestHost, coldfront_image: str) -> None:
    """The configuration as nginx's ExecStartPre writes it into /run at each start."""
    result = in_image(testhost, coldfront_image, "/usr/local/sbin/coldfront-nginx-tls && "
                      "nginx -t && cat /run/coldfront-nginx/*.conf")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "X-Forwarded-Proto $cf_forwarded_proto" in result.stdout, "the plain server"
    assert "geo $realip_remote_addr $cf_from_proxy" in result.stdout, "no proxy trusted"
    assert "set_real_ip_from" not in result.stdout


def test_units_verify(testhost: TestHost, coldfront_image: str) -> None:
    result = in_image(testhost, coldfront_image, "systemd-analyze verify --man=no "
                      "coldfront-setup.service coldfront-gunicorn.service nginx.service")
    assert result.returncode == 0, result.stdout + result.stderr
    enabled = in_image(testhost, coldfront_image, "systemctl is-enabled nginx "
                       "coldfront-setup coldfront-gunicorn")
    assert enabled.stdout.split() == ["enabled"] * 3


def test_tls_server_appears_only_with_a_certificate(testhost: TestHost,
                                                    coldfront_image: str) -> None:
    folder = "/var/lib/cf-launch-tests/le"
    testhost.run(["sh", "-c", f"rm -rf {folder} && mkdir -p {folder}/live/site"])
    none = in_image(testhost, coldfront_image, "/usr/local/sbin/coldfront-nginx-tls && "
                    "ls /run/coldfront-nginx", f"{folder}:/etc/letsencrypt")
    assert none.returncode == 0 and "tls.conf" not in none.stdout, none.stdout + none.stderr
    made = in_image(testhost, coldfront_image,
                    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test "
                    "-keyout /etc/letsencrypt/live/site/privkey.pem "
                    "-out /etc/letsencrypt/live/site/fullchain.pem 2>/dev/null && "
                    "/usr/local/sbin/coldfront-nginx-tls && nginx -t && "
                    "cat /run/coldfront-nginx/tls.conf", f"{folder}:/etc/letsencrypt")
    assert made.returncode == 0, made.stderr
    assert "listen 443 ssl" in made.stdout
    assert "/etc/letsencrypt/live/site/fullchain.pem" in made.stdout
