#!/bin/sh
# Run before nginx starts (as root, outside nginx's sandbox). Writes nginx's ColdFront
# configuration into /run/coldfront-nginx, which the image's conf.d/coldfront.conf
# includes (the image's /etc may be read-only): proxies.conf from the trusted proxies in
# the env file cf-launch binds (CF_LAUNCH_TRUSTED_PROXIES, [coldfront] trusted_proxies),
# then the server blocks. Three cases:
# - the site's own certificate and key, bound read-only by cf-launch ([coldfront.tls]) in
#   /etc/cf-launch/site-tls: 443 with them, and port 80 redirects to 443;
# - else exactly one certificate in /etc/letsencrypt/live (bound from the host): 443 with
#   it, port 80 serves too;
# - else port 80 only.
set -eu
out=${COLDFRONT_NGINX_DIR:-/run/coldfront-nginx}
conf=$out/tls.conf
plain=$out/http.conf
site=/etc/cf-launch/site-tls
install -d -m 0755 "$out"
# Only networks: digits, hex, '.', ':', '/' and spaces (anything else is dropped).
proxies=$(sed -n 's|^CF_LAUNCH_TRUSTED_PROXIES="\{0,1\}\([0-9A-Fa-f.:/ ]*\)"\{0,1\}$|\1|p' \
    /etc/coldfront/coldfront.env 2>/dev/null | tail -n 1)
{
    echo "# [coldfront] trusted_proxies: ${proxies:-none}"
    echo 'geo $realip_remote_addr $cf_from_proxy {'
    echo '    default 0;'
    for net in $proxies; do echo "    $net 1;"; done
    echo '}'
    echo 'map "$cf_from_proxy:$http_x_forwarded_proto" $cf_forwarded_proto {'
    echo '    default $scheme;'
    echo '    "1:https" https;'
    echo '    "1:http" http;'
    echo '}'
    for net in $proxies; do echo "set_real_ip_from $net;"; done
    if [ -n "$proxies" ]; then
        echo 'real_ip_header X-Forwarded-For;'
        echo 'real_ip_recursive on;'
    fi
} >"$out/proxies.conf"
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
        proxy_set_header X-Forwarded-For \$remote_addr;
        proxy_set_header X-Real-IP \$remote_addr;
        proxy_set_header X-Forwarded-Proto https;
        proxy_pass http://coldfront;
    }
}
CONF
