#!/bin/sh
# Render the nginx config from the environment, then run nginx in the foreground as PID 1.
set -eu
: "${UPSTREAM:=tasks.inference:3000}" "${LISTEN_PORT:=8000}"
sed -e "s|\${UPSTREAM}|$UPSTREAM|g" -e "s|\${LISTEN_PORT}|$LISTEN_PORT|g" \
  /etc/nginx/dkt.conf.template > /tmp/nginx.conf
nginx -t -c /tmp/nginx.conf -q
exec nginx -c /tmp/nginx.conf -g 'daemon off;'
