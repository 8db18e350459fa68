#!/bin/sh
# Install ColdFront into /srv/coldfront on Debian or Amazon Linux; run from %post.
set -eu
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nginx python3-venv python3-dev \
        redis-server >/var/log/cf-launch-apt.log
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    rm -f /etc/nginx/sites-enabled/default
    # Redis runs as coldfront-redis.service (unix socket only), never as the package's own.
    systemctl mask redis-server.service
    NGINX_USER=www-data
else
    dnf install -y -q nginx python3 python3-pip redis6
    dnf clean all
    NGINX_USER=nginx
fi

python3 -m venv /srv/coldfront/venv
/srv/coldfront/venv/bin/pip install --no-cache-dir -q --upgrade pip
# The extras behind cf-launch's [coldfront] settings: OpenID Connect (plugins = ["auth_oidc"])
# and PostgreSQL (database_url = "psql://...").
/srv/coldfront/venv/bin/pip install --no-cache-dir -q \
    "coldfront[oidc]${COLDFRONT_VERSION:+==$COLDFRONT_VERSION}" gunicorn "psycopg[binary]"
# ColdFront up to 1.1.9 uses bibtexparser 1's API (bibtexparser.bibdatabase) without
# declaring it, and pip now brings bibtexparser 2 through doi2bib: gunicorn would fail at
# import. Those versions get the bibtexparser they were written for.
site=$(/srv/coldfront/venv/bin/python3 -c 'import coldfront, os; print(os.path.dirname(coldfront.__file__))')
if grep -qs 'bibtexparser.bibdatabase' "$site/core/publication/views.py" &&
        ! /srv/coldfront/venv/bin/python3 -c 'import bibtexparser.bibdatabase' 2>/dev/null; then
    /srv/coldfront/venv/bin/pip install --no-cache-dir -q "bibtexparser<2"
fi
# Settings the environment cannot express (the django-q2 broker, the proxy's scheme).
config=$(/srv/coldfront/venv/bin/python3 -c \
    'import coldfront.config, os; print(os.path.dirname(coldfront.config.__file__))')
cp /etc/cf-launch/coldfront-local-settings.py "$config/local_settings.py"
ln -sf "$(command -v redis-server || command -v redis6-server)" /usr/local/sbin/cf-redis-server

# The service account (docs/security.md): fixed default ids, re-applied at boot from the
# [security] setting by coldfront-account.service. nginx's workers reach gunicorn's
# socket through its group.
groupadd --system --gid 8801 coldfront
useradd --system --uid 8801 --gid coldfront --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin --comment "ColdFront service account" coldfront
usermod -a -G coldfront "$NGINX_USER"

install -d -m 0755 /srv/coldfront/static /etc/coldfront /etc/letsencrypt /etc/cf-launch/site-tls
install -d -m 0700 -o coldfront -g coldfront /srv/coldfront/data
# The server blocks are written at each start into /run (coldfront-nginx-tls): the image's
# /etc can stay read-only.
echo 'include /run/coldfront-nginx/*.conf;' >/etc/nginx/conf.d/coldfront.conf
for unit in coldfront-gunicorn coldfront-setup coldfront-qcluster coldfront-redis; do
    install -d "/etc/systemd/system/$unit.service.d"
    ln -sf /etc/cf-launch/coldfront-sandbox.conf \
        "/etc/systemd/system/$unit.service.d/cf-launch-sandbox.conf"
done
# Redis needs none of ColdFront's env (its secrets): the list is reset after the sandbox's.
cat >/etc/systemd/system/coldfront-redis.service.d/cf-launch-redis.conf <<'UNIT'
[Service]
EnvironmentFile=
UNIT
install -d /etc/systemd/system/nginx.service.d
cp /etc/cf-launch/nginx-sandbox.conf /etc/systemd/system/nginx.service.d/cf-launch-sandbox.conf
# The TLS step writes /etc/nginx/conf.d: "+" runs it outside nginx's read-only sandbox.
cat >/etc/systemd/system/nginx.service.d/cf-launch-tls.conf <<'UNIT'
[Service]
ExecStartPre=+/usr/local/sbin/coldfront-nginx-tls
UNIT

# Newer gunicorn (27 here) opens a control socket in its home folder, which the sandbox makes read-only.
if /srv/coldfront/venv/bin/gunicorn --help | grep -q -- --no-control-socket; then
    echo "GUNICORN_CMD_ARGS=--no-control-socket" >/etc/cf-launch/gunicorn.env
else
    : >/etc/cf-launch/gunicorn.env
fi

# Static files at build time, with a throw-away key (the real one is bound in at start).
set -a; . /etc/cf-launch/coldfront-build.env; set +a
/srv/coldfront/venv/bin/coldfront collectstatic --noinput >/dev/null

# What the data folder's .cf-launch-migrations is compared with (coldfront-migrate): every
# migration file of every installed app, by path and content.
site_packages=$(/srv/coldfront/venv/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
find "$site_packages" -path '*/migrations/*.py' -type f | LC_ALL=C sort | xargs sha256sum |
    sed "s#$site_packages/##" | sha256sum | cut -d' ' -f1 >/etc/cf-launch/migrations.key

systemctl enable coldfront-account.service coldfront-defaults.service nginx.service \
    coldfront-gunicorn.socket \
    coldfront-setup.service \
    coldfront-gunicorn.service coldfront-redis.service coldfront-qcluster.service
