#!/bin/sh
# Run before nginx starts (as root, outside nginx's sandbox). Three cases:
# - the site's own certificate and key, bound read-only by cf-launch ([coldfront.tls]) in
#   /etc/cf-launch/site-tls: 443 with them, and port 80 redirects to 443;
# - else exactly one certificate in /etc/letsencrypt/live (bound from the host): 443 with
#   it, port 80 serves too;
# - else port 80 only.
set -eu
conf=/etc/nginx/conf.d/coldfront-tls.conf
plain=/etc/nginx/conf.d/coldfront.conf
site=/etc/cf-launch/site-tls
cp /etc/cf-launch/coldfront-nginx.conf "$plain"
if [ -s "$site/certificate.pem" ] && [ -s "$site/key.pem" ]; then
    cert=$site/certificate.pem key=$site/key.pem
    cat >"$plain" <<'CONF'
# cf-launch [coldfront.tls]: port 80 only redirects to 443.
upstream coldfront {
    server unix:/run/coldfront/gunicorn.sock fail_timeout=0;
}

server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name _;
    return 301 https://$host$request_uri;
}
CONF
else
    set -- /etc/letsencrypt/live/*/fullchain.pem
    if [ "$#" -ne 1 ] || [ ! -s "$1" ]; then
        rm -f "$conf"
        exit 0
    fi
    dir=$(dirname "$1")
    cert=$dir/fullchain.pem key=$dir/privkey.pem
fi
hsts=""
if [ -s "$site/hsts" ]; then
    hsts="add_header Strict-Transport-Security \"$(tr -cd 'a-zA-Z0-9=; -' <"$site/hsts")\" always;"
fi
cat >"$conf" <<CONF
server {
    listen 443 ssl default_server;
    listen [::]:443 ssl default_server;
    server_name _;
    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:coldfront:10m;
    ssl_session_tickets off;
    $hsts
    client_max_body_size 10m;
    location /static/ { alias /srv/coldfront/static/; }
    location / {
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_pass http://coldfront;
    }
}
CONF
