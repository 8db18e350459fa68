"""ColdFront's environment, rendered from ``[coldfront]`` on every start (docs/production.md).

:func:`values` turns the settings into the variables ColdFront reads, reading the secret
files; :func:`diff` (through :func:`mask_value`) is the only form ``plan`` and messages
show.
The file itself is written by :mod:`appdata` (atomically, root 0600, the ``SECRET_KEY``
kept).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from coldfront_launch.coldfront import appdata, workers
from coldfront_launch.config import files
from coldfront_launch.config.coldfront import (
    ENV_SECRET_WORDS,
    SECTION,
    ColdFrontSettings,
    database_url,
    env_value,
    url_host,
)
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import ConfigError
from coldfront_launch.linux import netinfo

MASK = "***"
#: Variables whose values are never shown.
SECRETS = {"SECRET_KEY", "EMAIL_HOST_PASSWORD", "OIDC_RP_CLIENT_SECRET"}
#: Words in an ``extra_env`` name that make it a secret too.
SECRET_WORDS = ENV_SECRET_WORDS


def read_secret(setting: str, path: Path) -> str:
    """One secret from a file: its first line, without the line break. Errors name the
    file, never what is in it. A regular file only, not through a symbolic link, of at
    most 64 KiB (:func:`~coldfront_launch.config.files.read_bounded`)."""
    raw = files.read_bounded(setting, path, files.SECRET_LIMIT, follow=False)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ConfigError(setting, f"{path} is not UTF-8 text") from None
    text = text[:-1] if text.endswith("\n") else text
    text = text[:-1] if text.endswith("\r") else text
    if not text:
        raise ConfigError(setting, f"{path} is empty", "write the secret into it, one line")
    env_value(setting, text, show=False)
    return text


def host_names() -> list[str]:
    """The default ``allowed_hosts``: the kernel's host name, loopback, and the addresses
    of the namespace cf-launch runs in (IPv6 in brackets); never ``*``, and never a DNS
    query (a resolver that does not answer would hold ``start`` for seconds)."""
    names = ["localhost", "127.0.0.1", "[::1]"]
    node = os.uname().nodename.lower()
    if node and node not in names:
        names.append(node)
    with contextlib.suppress(Exception):  # pyroute2 unavailable: names only
        for address in netinfo.local_addresses():
            shown = f"[{address}]" if ":" in address else address
            if shown not in names:
                names.append(shown)
    return names


MIN_SECRET_KEY = 32  # characters; Django's own check asks for 50 of 5 kinds


def secret_key(settings: Settings) -> str:
    """``[coldfront] secret_key_file``'s key ("" without one: the instance keeps its own)."""
    path = settings.coldfront.secret_key_file
    if path is None:
        return ""
    setting = "coldfront.secret_key_file"
    key = read_secret(setting, path)
    if len(key) < MIN_SECRET_KEY:
        raise ConfigError(setting, f"{path} holds {len(key)} characters, fewer than "
                          f"{MIN_SECRET_KEY}", "write a long random key, e.g. `python3 -c "
                          "'import secrets; print(secrets.token_urlsafe(48))' > FILE`")
    return key


def probe_host(settings: Settings) -> str:
    """A ``Host:`` header that ``allowed_hosts`` accepts, for readiness and ``status``."""
    hosts = settings.coldfront.allowed_hosts
    return hosts[0].lstrip(".") if hosts else "localhost"


def values(settings: Settings) -> dict[str, str]:
    """Every variable cf-launch sets for ColdFront but ``SECRET_KEY``, secrets read."""
    cf: ColdFrontSettings = settings.coldfront
    hosts = list(cf.allowed_hosts or host_names())
    if cf.url and url_host(cf.url) not in hosts:
        hosts.append(url_host(cf.url))
    env: dict[str, str] = {
        "DB_URL": _database_url(cf) or f"sqlite:///{appdata.CONTAINER_DATA}/coldfront.db",
        "STATIC_ROOT": "/srv/coldfront/static",
        "ALLOWED_HOSTS": ",".join(hosts),
        "DEBUG": str(cf.debug),
        "WEB_CONCURRENCY": str(workers.workers(settings)),
        "CF_LAUNCH_CATCH_UP_TASKS": str(cf.catch_up_tasks),
    }
    if cf.url:
        env.update({"CF_LAUNCH_URL": cf.url, "CSRF_TRUSTED_ORIGINS": cf.url})
    if cf.trusted_proxies:
        env["CF_LAUNCH_TRUSTED_PROXIES"] = " ".join(cf.trusted_proxies)
    if cf.center_name:
        env["CENTER_NAME"] = cf.center_name
    if cf.time_zone:
        env["TIME_ZONE"] = cf.time_zone
    mail = cf.email
    env.update({"EMAIL_ENABLED": str(mail.enabled), "EMAIL_HOST": mail.host,
                "EMAIL_PORT": str(mail.port), "EMAIL_USE_TLS": str(mail.use_tls)})
    if mail.sender:
        env["EMAIL_SENDER"] = mail.sender
    if mail.user:
        env["EMAIL_HOST_USER"] = mail.user
    if mail.password_file is not None:
        env["EMAIL_HOST_PASSWORD"] = read_secret(f"{SECTION}.email.password_file",
                                                 mail.password_file)
    for plugin in cf.plugins:
        env[f"PLUGIN_{plugin.upper()}"] = "True"
    if cf.oidc is not None:
        o = cf.oidc
        env.update({
            "OIDC_OP_AUTHORIZATION_ENDPOINT": o.authorization_endpoint,
            "OIDC_OP_TOKEN_ENDPOINT": o.token_endpoint,
            "OIDC_OP_USER_ENDPOINT": o.user_endpoint,
            "OIDC_OP_JWKS_ENDPOINT": o.jwks_endpoint,
            "OIDC_RP_CLIENT_ID": o.client_id,
            "OIDC_RP_CLIENT_SECRET": read_secret(f"{SECTION}.oidc.client_secret_file",
                                                 o.client_secret_file),
            "OIDC_RP_SIGN_ALGO": o.sign_algo,
            "OIDC_VERIFY_SSL": str(o.verify_ssl),
            # Strict would drop the session cookie on the provider's redirect back.
            "SESSION_COOKIE_SAMESITE": "Lax",
        })
    env.update(cf.extra_env)
    for name, path in cf.extra_env_files.items():
        env[name] = read_secret(f"{SECTION}.extra_env_files.{name}", path)
    for name, value in env.items():  # also what no setting gave: the host's name, addresses
        env_value(f"ColdFront's {name}", value, show=False)
    return env


def serving(settings: Settings, env: dict[str, str]) -> dict[str, Any]:
    """How ColdFront serves, from the env file's values: for ``plan`` and ``status``."""
    cf = settings.coldfront
    return {
        "workers": int(env.get("WEB_CONCURRENCY", "0") or 0),
        "workers_from": "[coldfront] workers" if cf.workers else "CPUs and memory",
        "url": env.get("CF_LAUNCH_URL", ""),
        "allowed_hosts": [h for h in env.get("ALLOWED_HOSTS", "").split(",") if h],
        "trusted_proxies": env.get("CF_LAUNCH_TRUSTED_PROXIES", "").split(),
        "catch_up_tasks": env.get("CF_LAUNCH_CATCH_UP_TASKS") == "True",
        "limits": settings.resources.to_raw(),
    }


def database_unreachable(settings: Settings, timeout: float = 3.0) -> str:
    """Why ColdFront's external database cannot be reached from here ("" when it can, or
    when the database is SQLite): one TCP connection to its host and port. The URL's
    user and password never appear in the answer."""
    from urllib.parse import urlsplit

    try:
        url = urlsplit(_database_url(settings.coldfront))
        host, port = url.hostname, url.port or DEFAULT_PORTS.get(url.scheme, 0)
    except (ConfigError, ValueError):
        return ""
    if not host or not port:
        return ""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as err:
        return (f"ColdFront's database at {host}:{port} is unreachable "
                f"({err.strerror or type(err).__name__})")


def external_database(settings: Settings) -> str | None:
    """The external database ColdFront uses, as ``scheme at host:port`` (never the user or
    password); None when it is the SQLite file in the data folder."""
    from urllib.parse import urlsplit

    raw = _database_url(settings.coldfront)
    if not raw:
        return None
    url = urlsplit(raw)
    if url.scheme.lower() in ("sqlite", "sqlite3"):
        return None
    try:
        port = url.port or DEFAULT_PORTS.get(url.scheme, 0)
    except ValueError:
        port = 0
    return f"{url.scheme} at {url.hostname or '?'}:{port or '?'}"


#: django-environ schemes of the databases the image has drivers for, and their ports.
DEFAULT_PORTS = {"psql": 5432, "postgres": 5432, "postgresql": 5432, "pgsql": 5432,
                 "postgis": 5432, "mysql": 3306, "mysql2": 3306}


def _database_url(cf: ColdFrontSettings) -> str:
    if cf.database_url_file is not None:
        try:
            return database_url(f"{SECTION}.database_url_file",
                                read_secret(f"{SECTION}.database_url_file",
                                            cf.database_url_file))
        except ConfigError as err:
            raise ConfigError(f"{SECTION}.database_url_file",
                              f"{cf.database_url_file}: " + str(err).split(": ", 1)[1],
                              err.hint) from None
    return cf.database_url


def is_secret(name: str, settings: Settings) -> bool:
    cf = settings.coldfront
    return (name in SECRETS or name in cf.extra_env_files
            or (name == "DB_URL" and cf.database_url_file is not None)
            or any(word in name for word in SECRET_WORDS)
            or any(part in ("PW", "PWD", "PASSWD") for part in name.split("_")))


def mask_value(name: str, value: str, settings: Settings) -> str:
    """``***`` for a secret; a database URL with its password masked."""
    if is_secret(name, settings):
        return MASK
    if name == "DB_URL" and "://" in value:
        parts = urlsplit(value)
        if parts.password is not None:
            netloc = parts.netloc.rsplit("@", 1)
            user = netloc[0].split(":", 1)[0]
            return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc[1]}"))
    return value


def diff(old: dict[str, str] | None, new: dict[str, str], settings: Settings
         ) -> list[dict[str, Any]]:
    """What ``start`` changes in the env file, masked: one entry per variable added,
    changed or removed (``old`` None: no file yet, everything is added). A changed
    secret shows as ``*** -> ***``."""
    before = old or {}
    changes = []
    shared = secret_key(settings)
    for name in sorted(set(before) | set(new) | {"SECRET_KEY"}):
        if name == "SECRET_KEY":
            if name not in before:
                changes.append({"name": name, "change": "added", "old": None,
                                "new": MASK + (" (secret_key_file)" if shared
                                               else " (generated)")})
            elif shared and before[name] != shared:
                changes.append({"name": name, "change": "changed", "old": MASK,
                                "new": MASK + " (secret_key_file)"})
            continue
        if before.get(name) == new.get(name):
            continue
        change = "added" if name not in before else "removed" if name not in new \
            else "changed"
        changes.append({
            "name": name, "change": change,
            "old": mask_value(name, before[name], settings) if name in before else None,
            "new": mask_value(name, new[name], settings) if name in new else None,
        })
    return changes
