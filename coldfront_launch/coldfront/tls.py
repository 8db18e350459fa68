"""``[coldfront.tls]``: the site's own certificate and key (docs/production.md).

:func:`binds` puts them read-only where the image's ``coldfront-nginx-tls`` looks
(``/etc/cf-launch/site-tls``): nginx then serves 443 with them and redirects 80 to 443.
:func:`problems` checks them before start with Python's own ``ssl`` module: both parse,
the key matches the certificate, and the certificate is valid now. Messages name the
files, never their contents.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

from coldfront_launch.config import files
from coldfront_launch.config.coldfront import TlsSettings
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import ConfigError
from coldfront_launch.types import Bind, Problem

TARGET = "/etc/cf-launch/site-tls"
HSTS = "max-age=31536000"
CHECK = "coldfront.tls"


def binds(settings: Settings) -> list[Bind]:
    tls = settings.coldfront.tls
    if tls is None:
        return []
    found = [Bind(f"{TARGET}/certificate.pem", source=tls.certificate),
             Bind(f"{TARGET}/key.pem", source=tls.key)]
    if tls.hsts:
        found.append(Bind(f"{TARGET}/hsts", content=HSTS + "\n"))
    return found


def validity(certificate: Path) -> tuple[datetime.datetime, datetime.datetime]:
    """notBefore and notAfter of the first certificate in a PEM file (UTC)."""
    decode = getattr(ssl, "_ssl")._test_decode_cert  # noqa: B009 - CPython's own parser
    info = decode(str(certificate))
    return tuple(  # type: ignore[return-value]
        datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(info[key]),
                                        tz=datetime.timezone.utc)
        for key in ("notBefore", "notAfter"))


def check(tls: TlsSettings, now: datetime.datetime | None = None) -> list[str]:
    """What is wrong with the certificate and key (empty: nothing). Each is read once,
    to a bound and only if it is a regular file (links followed: Let's Encrypt's
    ``live/`` holds links); OpenSSL parses those bytes, never the path again."""
    try:
        certificate = files.read_bounded(f"{CHECK}.certificate", tls.certificate)
        key = files.read_bounded(f"{CHECK}.key", tls.key)
    except ConfigError as err:
        return [str(err)]
    with _in_memory(certificate) as cert_path, _in_memory(key) as key_path:
        return _check_pem(tls, cert_path, key_path, now)


@contextlib.contextmanager
def _in_memory(data: bytes) -> Iterator[str]:
    """A path that reads ``data`` (an anonymous memory file), for OpenSSL's loaders."""
    fd = os.memfd_create("cf-launch-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _check_pem(tls: TlsSettings, cert_path: str, key_path: str,
               now: datetime.datetime | None) -> list[str]:
    """:func:`check` on the bytes read (``cert_path``, ``key_path``); messages name the
    files as configured."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as err:
        reason = str(getattr(err, "reason", "") or "").lower()
        if "values mismatch" in reason or "mismatch" in str(err).lower():
            return [f"the key {tls.key} does not belong to the certificate {tls.certificate}"]
        return [f"the certificate {tls.certificate} or the key {tls.key} cannot be read as "
                f"PEM ({getattr(err, 'reason', None) or 'unreadable'})"]
    except OSError as err:
        return [f"cannot read {tls.certificate} or {tls.key}: {err.strerror}"]
    try:
        not_before, not_after = validity(Path(cert_path))
    except (ssl.SSLError, ValueError, OSError):
        return [f"the certificate {tls.certificate} has no readable validity dates"]
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if not_after <= now:
        return [f"the certificate {tls.certificate} expired on {not_after:%Y-%m-%d %H:%M} UTC"]
    if not_before > now:
        return [f"the certificate {tls.certificate} is not valid before "
                f"{not_before:%Y-%m-%d %H:%M} UTC"]
    return []


def problems(settings: Settings) -> list[Problem]:
    """Fatal problems with ``[coldfront.tls]``, for ``start``, ``plan`` and ``doctor``."""
    tls = settings.coldfront.tls
    if tls is None:
        return []
    return [Problem(CHECK, message, "give a current certificate (chain first) and its own "
                    "private key, both PEM") for message in check(tls)]
