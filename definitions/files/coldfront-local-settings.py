# cf-launch: settings that ColdFront reads from the environment cannot express.
# Installed as coldfront/config/local_settings.py (read after ColdFront's own settings,
# in their namespace: Q_CLUSTER is ColdFront's); a site's COLDFRONT_CONFIG comes after it.
# django-q2's broker: the Redis inside the image, on its unix socket (coldfront-redis.service).
BROKER = {"unix_socket_path": "/run/coldfront-redis/redis.sock"}
Q_CLUSTER.update(name="coldfront", redis=BROKER)  # type: ignore[name-defined]  # noqa: F821
# nginx sets X-Forwarded-Proto itself (never passed through from the client): behind TLS,
# Django sees https and checks a browser's Origin against https://HOST.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
