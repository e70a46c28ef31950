#!/usr/bin/env bash
# Build the local Debian base image (python3.11 + venv + CA certificates) with debootstrap and
# `docker import`, for machines that cannot pull python:3.11-slim. ~50 s, ~265 MB.
set -euo pipefail
tag="${DKT_BASE_IMAGE:-dkt-base:bookworm}"
suite="${DKT_BASE_SUITE:-bookworm}"
mirror="${DKT_DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  # The machine's own apt mirror (deb822 first, then the one-line format).
  mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  [[ -n "$mirror" ]] || mirror="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [[ -n "$mirror" ]] || mirror=http://deb.debian.org/debian
fi
rootfs="$(mktemp -d /tmp/dkt-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "==> debootstrap $suite from $mirror -> $tag"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
docker image inspect "$tag" --format "==> $tag: {{.Size}} bytes"
