#!/usr/bin/env bash
# Builds the sandbox images: a Debian base (pulled where a registry answers, else made with
# debootstrap and loaded with `docker import`), then one image per images/<name>/Dockerfile.
# Idempotent: an image that already exists is not rebuilt unless its Dockerfile changed.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=sandbox-engine/base:bookworm
MIRROR=${SANDBOX_ENGINE_MIRROR:-http://deb.debian.org/debian}

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if timeout 60 docker pull debian:bookworm-slim >/dev/null 2>&1; then
    docker tag debian:bookworm-slim "$BASE"
  else
    echo "build-images: no registry; building the base with debootstrap (a few minutes, once)"
    root=$(mktemp -d /var/tmp/sandbox-base.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >/var/tmp/sandbox-debootstrap.log 2>&1 \
      || { tail -20 /var/tmp/sandbox-debootstrap.log; exit 1; }
    # Same trimming as the official slim image: no caches, no docs, an apt that keeps nothing.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -c . | docker import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["bash"]' - "$BASE" >/dev/null
    rm -rf "$root"; trap - EXIT
  fi
fi

for dir in images/*/; do
  name=$(basename "$dir")
  [ -f "$dir/Dockerfile" ] || continue
  tag="sandbox-engine/$name:latest"
  sum=$(cat "$dir"/* | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{ index .Config.Labels "sandbox-engine.source" }}' "$tag" 2>/dev/null || true)
  if [ "$have" != "$sum" ]; then
    echo "build-images: building $tag"
    docker build -q --label "sandbox-engine.source=$sum" -t "$tag" "$dir" >/dev/null
  fi
done
