#!/usr/bin/env bash
# Build and push the web client image from a minimal context (no .venv, data or .git in it).
# DKT_BUILD_CA_BUNDLE (optional): CA bundle pip needs behind a TLS-intercepting proxy (builder stage only).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
reg="${DKT_REGISTRY:-127.0.0.1:5000}"
tag="$(git -C "$root" rev-parse --short=12 HEAD)"
image="$reg/dkt-client:$tag"
ctx="$(mktemp -d /tmp/dkt-client.XXXXXX)"; trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/docker/ca"
cp "$root"/{requirements.lock,pyproject.toml,README.md} "$ctx/"
cp -r "$root/dkt_core" "$ctx/"; find "$ctx/dkt_core" -name __pycache__ -prune -exec rm -rf {} +
[[ -n "${DKT_BUILD_CA_BUNDLE:-}" ]] && cp "$DKT_BUILD_CA_BUNDLE" "$ctx/docker/ca/host-ca.crt"
docker build -q -f "$root/docker/client.Dockerfile" --build-arg "BASE_IMAGE=${DKT_BASE_IMAGE:-python:3.11-slim}" -t "$image" "$ctx"
docker push -q "$image"
echo "$image   (export DKT_CLIENT_IMAGE=$image before make deploy)"
