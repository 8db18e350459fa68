#!/bin/sh
# Install ColdFront into /srv/coldfront on Debian or Amazon Linux; run from %post.
set -eu
if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nginx python3-venv python3-dev \
        >/var/log/cf-launch-apt.log
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    rm -f /etc/nginx/sites-enabled/default
    NGINX_USER=www-data
else
    dnf install -y -q nginx python3 python3-pip
    dnf clean all
    NGINX_USER=nginx
fi

python3 -m venv /srv/coldfront/venv
/srv/coldfront/venv/bin/pip install --no-cache-dir -q --upgrade pip
/srv/coldfront/venv/bin/pip install --no-cache-dir -q "coldfront${COLDFRONT_VERSION:+==$COLDFRONT_VERSION}" gunicorn

install -d -m 0755 /srv/coldfront/data /srv/coldfront/static /etc/coldfront /etc/letsencrypt
cp /etc/cf-launch/coldfront-nginx.conf /etc/nginx/conf.d/coldfront.conf
echo "WEB_GROUP=$NGINX_USER" >/etc/cf-launch/web-group.env
install -d /etc/systemd/system/nginx.service.d
cat >/etc/systemd/system/nginx.service.d/cf-launch-tls.conf <<'UNIT'
[Service]
ExecStartPre=/usr/local/sbin/coldfront-nginx-tls
UNIT

# Static files at build time, with a throw-away key (the real one is bound in at start).
set -a; . /etc/cf-launch/coldfront-build.env; set +a
/srv/coldfront/venv/bin/coldfront collectstatic --noinput >/dev/null

systemctl enable nginx.service coldfront-setup.service coldfront-gunicorn.service
