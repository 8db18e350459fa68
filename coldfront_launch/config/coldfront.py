"""The ``[coldfront]`` settings: what ColdFront itself is told (docs/production.md).

Validation only: typed keys, each mapped to the environment variable ColdFront 1.1 reads
(``coldfront/config/*.py`` in the image). Secrets are given as files, read when the env
file is rendered (:mod:`coldfront_launch.coldfront.env`); no error message here ever
repeats a value that could be one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from coldfront_launch.config import validate as v
from coldfront_launch.errors import ConfigError

SECTION = "coldfront"
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
HOST_NAME = re.compile(r"\.?[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?")
TIME_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")
ENDPOINT = re.compile(r"https?://[^\s\x00-\x1f\x7f\"'<>\\]+")

#: ColdFront's plugins (``plugin_configs`` in coldfront/config/settings.py), by the name
#: used here, and whether the image ships what each needs (``coldfront[oidc]``).
PLUGINS = {
    "slurm": True, "sysmon": True, "xdmod": True, "api": True,
    "auto_compute_allocation": True, "auth_oidc": True,
    "iquota": False, "freeipa": False, "auth_ldap": False, "ldap_user_search": False,
    "project_openldap": False,
}
#: Database URL schemes that django-environ maps to a backend the image ships.
DB_SCHEMES = ("sqlite", "psql", "postgres", "postgresql", "pgsql", "postgis")


@dataclass(frozen=True)
class EmailSettings:
    """``[coldfront.email]``: ColdFront's SMTP settings."""

    enabled: bool = False
    host: str = "localhost"
    port: int = 25
    sender: str = ""
    user: str = ""
    password_file: Path | None = None
    use_tls: bool = False


@dataclass(frozen=True)
class OidcSettings:
    """``[coldfront.oidc]``: the OpenID Connect provider (with ``plugins = ["auth_oidc"]``)."""

    authorization_endpoint: str
    token_endpoint: str
    user_endpoint: str
    jwks_endpoint: str
    client_id: str
    client_secret_file: Path
    sign_algo: str = "RS256"
    verify_ssl: bool = True


@dataclass(frozen=True)
class TlsSettings:
    """``[coldfront.tls]``: the site's own certificate (chain) and key, bound read-only."""

    certificate: Path
    key: Path
    hsts: bool = False


@dataclass(frozen=True)
class ColdFrontSettings:
    """Everything in ``[coldfront]``; the defaults leave ColdFront's own defaults alone,
    but for ``allowed_hosts`` (empty: the host's name and addresses, never ``*``)."""

    center_name: str = ""
    allowed_hosts: tuple[str, ...] = ()
    time_zone: str = ""
    debug: bool = False
    debug_force: bool = False
    email: EmailSettings = field(default_factory=EmailSettings)
    plugins: tuple[str, ...] = ()
    oidc: OidcSettings | None = None
    database_url: str = ""
    database_url_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_env_files: dict[str, Path] = field(default_factory=dict)
    tls: TlsSettings | None = None
    #: The public URL browsers use (e.g. behind a TLS-terminating load balancer).
    url: str = ""
    #: Proxies whose X-Forwarded-For/-Proto nginx believes (CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    #: gunicorn's workers; 0: from the instance's CPUs (:mod:`coldfront_launch.coldfront.workers`).
    workers: int = 0
    #: django-q2 replays the scheduled runs missed while ColdFront was down.
    catch_up_tasks: bool = False
    #: Run django-q2's cluster (scheduled tasks) here; False on all hosts but one when
    #: several serve one database (its unit file is hidden under /dev/null).
    scheduler: bool = True
    #: ColdFront's SECRET_KEY from this file (shared by several hosts); None: generated
    #: once per instance and kept in its env file.
    secret_key_file: Path | None = None

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "center_name": self.center_name, "allowed_hosts": list(self.allowed_hosts),
            "time_zone": self.time_zone, "debug": self.debug, "debug_force": self.debug_force,
            "email": {k: (str(val) if isinstance(val, Path) else val)
                      for k, val in vars(self.email).items() if val is not None},
            "plugins": list(self.plugins),
            "extra_env": dict(self.extra_env),
            "extra_env_files": {k: str(p) for k, p in self.extra_env_files.items()},
        }
        if self.database_url:
            raw["database_url"] = self.database_url
        if self.database_url_file is not None:
            raw["database_url_file"] = str(self.database_url_file)
        if self.oidc is not None:
            raw["oidc"] = {k: (str(val) if isinstance(val, Path) else val)
                           for k, val in vars(self.oidc).items()}
        if self.url:
            raw["url"] = self.url
        if self.trusted_proxies:
            raw["trusted_proxies"] = list(self.trusted_proxies)
        if self.workers:
            raw["workers"] = self.workers
        if self.catch_up_tasks:
            raw["catch_up_tasks"] = True
        if not self.scheduler:
            raw["scheduler"] = False
        if self.secret_key_file is not None:
            raw["secret_key_file"] = str(self.secret_key_file)
        if self.tls is not None:
            raw["tls"] = {"certificate": str(self.tls.certificate),
                          "key": str(self.tls.key), "hsts": self.tls.hsts}
        return raw


#: A variable whose name holds one of these is a secret: masked in ``plan`` and
#: ``config show``.
ENV_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE")

KEYS = {"center_name", "allowed_hosts", "time_zone", "debug", "debug_force", "email",
        "plugins", "oidc", "database_url", "database_url_file", "extra_env",
        "extra_env_files", "tls", "url", "trusted_proxies", "workers", "catch_up_tasks",
        "scheduler", "secret_key_file"}
EMAIL_KEYS = {"enabled", "host", "port", "sender", "user", "password_file", "use_tls"}
OIDC_KEYS = {"authorization_endpoint", "token_endpoint", "user_endpoint", "jwks_endpoint",
             "client_id", "client_secret_file", "sign_algo", "verify_ssl"}
TLS_KEYS = {"certificate", "key", "hsts"}

#: Variables the typed keys own: ``extra_env`` may not set them (``PLUGIN_*`` neither).
MANAGED = {
    "SECRET_KEY": "secret_key_file",
    "STATIC_ROOT": "(fixed by the image)",
    "DB_URL": "database_url", "ALLOWED_HOSTS": "allowed_hosts", "DEBUG": "debug",
    "CENTER_NAME": "center_name", "TIME_ZONE": "time_zone",
    "EMAIL_ENABLED": "email.enabled", "EMAIL_HOST": "email.host", "EMAIL_PORT": "email.port",
    "EMAIL_SENDER": "email.sender", "EMAIL_HOST_USER": "email.user",
    "EMAIL_HOST_PASSWORD": "email.password_file", "EMAIL_USE_TLS": "email.use_tls",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "oidc.authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "oidc.token_endpoint", "OIDC_OP_USER_ENDPOINT":
    "oidc.user_endpoint", "OIDC_OP_JWKS_ENDPOINT": "oidc.jwks_endpoint",
    "OIDC_RP_CLIENT_ID": "oidc.client_id", "OIDC_RP_CLIENT_SECRET": "oidc.client_secret_file",
    "OIDC_RP_SIGN_ALGO": "oidc.sign_algo", "OIDC_VERIFY_SSL": "oidc.verify_ssl",
    "CSRF_TRUSTED_ORIGINS": "url", "CF_LAUNCH_URL": "url",
    "CF_LAUNCH_TRUSTED_PROXIES": "trusted_proxies", "WEB_CONCURRENCY": "workers",
    "CF_LAUNCH_CATCH_UP_TASKS": "catch_up_tasks",
    "SESSION_COOKIE_SAMESITE": "(Lax with auth_oidc, else ColdFront's default)",
}


def env_value(setting: str, value: Any, *, show: bool = True) -> str:
    """A value that goes into ColdFront's environment: one line, printable, and not
    starting with ``$`` (django-environ reads that as a reference to another variable).
    ``show=False``: the error never repeats the value (it may be a secret)."""
    shown = f"{v.shown(value)} " if show else ""
    if not isinstance(value, str):
        raise ConfigError(setting, f"{shown}is not a string".lstrip(), 'e.g. "text"')
    v.safe_text(setting, value, "env files")
    if value.startswith("$"):
        raise ConfigError(setting, "starts with '$', which ColdFront's django-environ reads "
                          "as the name of another variable", "drop the leading '$'")
    return value


def _secret_file(setting: str, value: Any) -> Path:
    return v.path(setting, value, must_exist=True, kind="file")


def allowed_host(setting: str, value: Any) -> str:
    """A host name, ``.domain`` (the domain and every name below it), an IPv4 address, or
    an IPv6 address in brackets; never ``*``."""
    if isinstance(value, str):
        v.safe_text(setting, value, "env files")  # an IPv6 scope may hold anything
    if isinstance(value, str) and "*" in value:
        raise ConfigError(setting, "'*' lets any Host: header through (host header attacks, "
                          "poisoned password-reset links)",
                          "list the names and addresses clients use, e.g. "
                          '["coldfront.example.org"]; leave allowed_hosts out for the '
                          "host's own name and addresses")
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        import ipaddress
        try:
            ipaddress.IPv6Address(value[1:-1])
            return value
        except ValueError:
            pass
    if not isinstance(value, str) or len(value) > 253 or not HOST_NAME.fullmatch(value):
        raise ConfigError(setting, f"{value!r} is not a host name or address",
                          'e.g. "coldfront.example.org", ".example.org", "198.51.100.7" '
                          'or "[2001:db8::7]"')
    return value.lower()


def endpoint(setting: str, value: Any) -> str:
    if not isinstance(value, str) or not ENDPOINT.fullmatch(value):
        raise ConfigError(setting, f"{value!r} is not an http(s) URL",
                          "e.g. https://idp.example.org/oauth2/token")
    return env_value(setting, value)


def text(setting: str, value: Any, default: str) -> str:
    return env_value(setting, value if value is not None else default)


def database_url(setting: str, value: Any) -> str:
    """A django-environ database URL of a backend the image ships; the value is never
    repeated in an error (it may hold a password)."""
    url = env_value(setting, value, show=False)
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in DB_SCHEMES:
        raise ConfigError(setting, f"the URL's scheme {scheme or '(none)'!r} is not one of "
                          f"{', '.join(DB_SCHEMES)}",
                          "e.g. psql://coldfront:PASSWORD@db.example.org:5432/coldfront; "
                          "put the URL in a file given as database_url_file")
    return url


def _email(data: Any) -> EmailSettings:
    s = f"{SECTION}.email"
    data = v.table(s, data, EMAIL_KEYS)
    d = EmailSettings()
    password = data.get("password_file")
    return EmailSettings(
        enabled=v.boolean(f"{s}.enabled", data.get("enabled", d.enabled)),
        host=env_value(f"{s}.host", data.get("host", d.host)),
        port=v.port(f"{s}.port", data.get("port", d.port)),
        sender=env_value(f"{s}.sender", data.get("sender", d.sender)),
        user=env_value(f"{s}.user", data.get("user", d.user)),
        password_file=_secret_file(f"{s}.password_file", password)
        if password is not None else None,
        use_tls=v.boolean(f"{s}.use_tls", data.get("use_tls", d.use_tls)),
    )


def _oidc(data: Any) -> OidcSettings:
    s = f"{SECTION}.oidc"
    data = v.table(s, data, OIDC_KEYS)
    missing = sorted(k for k in ("authorization_endpoint", "token_endpoint", "user_endpoint",
                                 "jwks_endpoint", "client_id", "client_secret_file")
                     if k not in data)
    if missing:
        raise ConfigError(s, f"missing {', '.join(missing)}",
                          "ColdFront's OIDC plugin needs every endpoint, the client id and "
                          "the client secret (a file)")
    algo = env_value(f"{s}.sign_algo", data.get("sign_algo", "RS256"))
    if algo not in ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "HS256"):
        raise ConfigError(f"{s}.sign_algo", f"{algo!r} is not a signing algorithm",
                          "e.g. RS256")
    return OidcSettings(
        authorization_endpoint=endpoint(f"{s}.authorization_endpoint",
                                        data["authorization_endpoint"]),
        token_endpoint=endpoint(f"{s}.token_endpoint", data["token_endpoint"]),
        user_endpoint=endpoint(f"{s}.user_endpoint", data["user_endpoint"]),
        jwks_endpoint=endpoint(f"{s}.jwks_endpoint", data["jwks_endpoint"]),
        client_id=env_value(f"{s}.client_id", data["client_id"]),
        client_secret_file=_secret_file(f"{s}.client_secret_file",
                                        data["client_secret_file"]),
        sign_algo=algo,
        verify_ssl=v.boolean(f"{s}.verify_ssl", data.get("verify_ssl", True)),
    )


def _tls(data: Any) -> TlsSettings:
    s = f"{SECTION}.tls"
    data = v.table(s, data, TLS_KEYS)
    for key in ("certificate", "key"):
        if key not in data:
            raise ConfigError(s, f"missing {key}", "give both certificate and key (PEM files)")
    return TlsSettings(
        certificate=v.bindable_path(f"{s}.certificate", data["certificate"], must_exist=True,
                                    kind="file"),
        key=v.bindable_path(f"{s}.key", data["key"], must_exist=True, kind="file"),
        hsts=v.boolean(f"{s}.hsts", data.get("hsts", False)),
    )


def public_url(setting: str, value: Any) -> str:
    """The site's public origin, ``https://portal.example.org[:port]``: no path, query,
    user or fragment (ColdFront is served at the root)."""
    hint = 'e.g. "https://portal.example.org"'
    if not isinstance(value, str):
        raise ConfigError(setting, f"{v.shown(value)} is not a URL", hint)
    v.safe_text(setting, value, "env files")
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018  # raises on a port that is no number
    except ValueError:
        raise ConfigError(setting, f"{value!r} has an invalid port", hint) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(setting, f"{value!r} is not an http(s) URL with a host name", hint)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username \
            or parts.password is not None:
        raise ConfigError(setting, f"{value!r} has more than a scheme, host and port",
                          "ColdFront is served at the root: " + hint)
    host = parts.hostname
    allowed_host(setting, f"[{host}]" if ":" in host else host)
    return f"{parts.scheme}://{parts.netloc.lower()}"


def url_host(url: str) -> str:
    """The ``ALLOWED_HOSTS`` entry of a public URL (IPv6 bracketed)."""
    host = urlsplit(url).hostname or ""
    return f"[{host}]" if ":" in host else host


def proxies(setting: str, value: Any) -> tuple[str, ...]:
    """IPv4 or IPv6 networks (an address alone: that one host)."""
    import ipaddress

    found = []
    for i, item in enumerate(v.string_list(setting, value)):
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{setting}[{i}]", f"{item!r} is not a CIDR or address",
                              'e.g. "10.0.0.0/16" (the load balancer\'s subnet)') from None
    if "0.0.0.0/0" in found or "::/0" in found:
        raise ConfigError(setting, "a /0 network trusts every client's X-Forwarded-For",
                          "list the load balancer's subnet only")
    return tuple(dict.fromkeys(found))


def _plugins(value: Any) -> tuple[str, ...]:
    names = v.string_list(f"{SECTION}.plugins", value)
    for i, name in enumerate(names):
        if name not in PLUGINS:
            raise ConfigError(f"{SECTION}.plugins[{i}]", f"{name!r} is not a ColdFront plugin",
                              f"known plugins: {', '.join(sorted(PLUGINS))}")
        if not PLUGINS[name]:
            raise ConfigError(f"{SECTION}.plugins[{i}]", f"the image does not ship the Python "
                              f"packages ColdFront's {name} plugin needs",
                              "add them in a build layer of your own (docs/production.md), "
                              "then set it through extra_env")
    return tuple(dict.fromkeys(names))


def _env_name(setting: str, key: Any) -> str:
    if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
        raise ConfigError(setting, f"{key!r} is not an environment variable name",
                          "use upper-case letters, digits and '_'")
    if key in MANAGED or key.startswith("PLUGIN_"):
        owner = MANAGED.get(key, "plugins")
        raise ConfigError(setting, f"{key} is set by cf-launch",
                          f"use [coldfront] {owner} instead" if not owner.startswith("(")
                          else f"{key} cannot be changed {owner}")
    return key


def _extra_env(value: Any) -> dict[str, str]:
    s = f"{SECTION}.extra_env"
    if not isinstance(value, dict):
        raise ConfigError(s, "must be a table of NAME = \"value\"", 'e.g. {PROJECT_CODE = "CF"}')
    return {_env_name(f"{s}.{v.key_name(k)}", k): env_value(f"{s}.{k}", val)
            for k, val in value.items()}


def _extra_env_files(value: Any) -> dict[str, Path]:
    s = f"{SECTION}.extra_env_files"
    if not isinstance(value, dict):
        raise ConfigError(s, "must be a table of NAME = \"/path/to/secret\"")
    return {_env_name(f"{s}.{v.key_name(k)}", k): _secret_file(f"{s}.{k}", val)
            for k, val in value.items()}


def coldfront_from_mapping(data: Any) -> ColdFrontSettings:
    """Validate the ``[coldfront]`` table."""
    data = v.table(SECTION, data, KEYS)
    d = ColdFrontSettings()
    debug = v.boolean(f"{SECTION}.debug", data.get("debug", d.debug))
    force = v.boolean(f"{SECTION}.debug_force", data.get("debug_force", d.debug_force))
    if debug and not force:
        raise ConfigError(f"{SECTION}.debug", "Django's debug pages show settings and stack "
                          "traces to anyone who reaches ColdFront",
                          "on a test instance only, add debug_force = true")
    hosts = tuple(dict.fromkeys(
        allowed_host(f"{SECTION}.allowed_hosts[{i}]", h) for i, h in
        enumerate(v.string_list(f"{SECTION}.allowed_hosts", data.get("allowed_hosts", [])))))
    zone = text(f"{SECTION}.time_zone", data.get("time_zone"), d.time_zone)
    if zone and not TIME_ZONE.fullmatch(zone):
        raise ConfigError(f"{SECTION}.time_zone", f"{zone!r} is not a time zone name",
                          "e.g. Europe/Berlin or UTC")
    url = data.get("database_url")
    url_file = data.get("database_url_file")
    if url is not None and url_file is not None:
        raise ConfigError(f"{SECTION}.database_url", "both database_url and "
                          "database_url_file are given", "keep one (the file, for secrets)")
    plugins = _plugins(data.get("plugins", []))
    oidc = _oidc(data["oidc"]) if "oidc" in data else None
    if oidc is not None and "auth_oidc" not in plugins:
        raise ConfigError(f"{SECTION}.oidc", "OIDC settings without the auth_oidc plugin",
                          'add "auth_oidc" to [coldfront] plugins')
    if oidc is None and "auth_oidc" in plugins:
        raise ConfigError(f"{SECTION}.plugins", "auth_oidc needs a [coldfront.oidc] table",
                          "give the provider's endpoints, client_id and client_secret_file")
    return ColdFrontSettings(
        center_name=text(f"{SECTION}.center_name", data.get("center_name"), d.center_name),
        allowed_hosts=hosts,
        time_zone=zone,
        debug=debug,
        debug_force=force,
        email=_email(data.get("email", {})),
        plugins=plugins,
        oidc=oidc,
        database_url=database_url(f"{SECTION}.database_url", url) if url is not None else "",
        database_url_file=_secret_file(f"{SECTION}.database_url_file", url_file)
        if url_file is not None else None,
        extra_env=_extra_env(data.get("extra_env", {})),
        extra_env_files=_extra_env_files(data.get("extra_env_files", {})),
        tls=_tls(data["tls"]) if "tls" in data else None,
        url=public_url(f"{SECTION}.url", data["url"]) if "url" in data else "",
        trusted_proxies=proxies(f"{SECTION}.trusted_proxies", data.get("trusted_proxies", [])),
        workers=v.whole_number(f"{SECTION}.workers", data["workers"], 1, 256)
        if "workers" in data else 0,
        catch_up_tasks=v.boolean(f"{SECTION}.catch_up_tasks", data.get("catch_up_tasks", False)),
        scheduler=v.boolean(f"{SECTION}.scheduler", data.get("scheduler", True)),
        secret_key_file=_secret_file(f"{SECTION}.secret_key_file", data["secret_key_file"])
        if "secret_key_file" in data else None,
    )
