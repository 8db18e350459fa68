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
    result = in_image(testhost, coldfront_image, "nginx -t")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


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
                    "ls /etc/nginx/conf.d", f"{folder}:/etc/letsencrypt")
    assert none.returncode == 0 and "coldfront-tls.conf" not in none.stdout
    made = in_image(testhost, coldfront_image,
                    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test "
                    "-keyout /etc/letsencrypt/live/site/privkey.pem "
                    "-out /etc/letsencrypt/live/site/fullchain.pem 2>/dev/null && "
                    "/usr/local/sbin/coldfront-nginx-tls && nginx -t && "
                    "cat /etc/nginx/conf.d/coldfront-tls.conf", f"{folder}:/etc/letsencrypt")
    assert made.returncode == 0, made.stderr
    assert "listen 443 ssl" in made.stdout
    assert "/etc/letsencrypt/live/site/fullchain.pem" in made.stdout
