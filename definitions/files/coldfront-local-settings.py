# cf-launch: settings that ColdFront reads from the environment cannot express.
# Installed as coldfront/config/local_settings.py (read after ColdFront's own settings,
# in their namespace: Q_CLUSTER is ColdFront's); a site's COLDFRONT_CONFIG comes after it.
# django-q2's broker: the Redis inside the image, on its unix socket (coldfront-redis.service).
BROKER = {"unix_socket_path": "/run/coldfront-redis/redis.sock"}
Q_CLUSTER.update(name="coldfront", redis=BROKER)  # type: ignore[name-defined]  # noqa: F821
# nginx sets X-Forwarded-Proto itself (never passed through from the client): behind TLS,
# Django sees https and checks a browser's Origin against https://HOST.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

import os as _os  # noqa: E402

_env = _os.environ
# Scheduled tasks run once: after a downtime django-q2 replays missed runs (duplicate
# e-mails) only when [coldfront] catch_up_tasks = true.
Q_CLUSTER["catch_up"] = _env.get("CF_LAUNCH_CATCH_UP_TASKS", "False") == "True"  # type: ignore[name-defined]  # noqa: F821,E501
# [coldfront] url: a browser's Origin through a TLS-terminating load balancer. Behind
# https, the cookies are sent over https only.
if _env.get("CSRF_TRUSTED_ORIGINS"):
    CSRF_TRUSTED_ORIGINS = [o for o in _env["CSRF_TRUSTED_ORIGINS"].split(",") if o]
    if all(o.startswith("https://") for o in CSRF_TRUSTED_ORIGINS):
        SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
if _env.get("SESSION_COOKIE_SAMESITE") in ("Lax", "Strict", "None"):
    SESSION_COOKIE_SAMESITE = _env["SESSION_COOKIE_SAMESITE"]
# SQLite under concurrent requests: WAL (readers never block the writer), a busy timeout,
# and transactions that take the write lock when they begin, so that a transaction that
# reads, then writes, waits for the lock instead of failing with "database is locked".
_db = DATABASES["default"]  # type: ignore[name-defined]  # noqa: F821
if _db.get("ENGINE", "").endswith("sqlite3"):
    _options = _db.setdefault("OPTIONS", {})
    _options.setdefault("timeout", 30)
    _options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    _options.setdefault("transaction_mode", "IMMEDIATE")
