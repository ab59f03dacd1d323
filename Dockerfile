# The sandbox-engine service itself (not a sandbox: those are images/<language>/).
#
# The server starts each program in a sibling container on the host's Docker daemon, so run it
# with the host's Docker socket mounted, on a host where the sandbox images are built
# (`make images` there; GET /readyz reports any that are missing):
#
#   docker build -t sandbox-engine .
#   docker run -d --name sandbox-engine -p 127.0.0.1:8080:8080 \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v sandbox-engine-state:/var/lib/sandbox-engine \
#     -v /var/lib/sandbox-engine/uids:/var/lib/sandbox-engine-uids \
#     sandbox-engine [--run-timeout 600 ...]
#
# Arguments after the image name are added to `sandbox-engine serve`. One server per Docker
# daemon, or give each its own --instance. Put deploy/nginx.conf in front of it. The uid leases
# are the host's directory, which every engine on the host must share (see --uid-dir): without
# that mount two engines could run sandboxes as one uid.
#
# Access to the Docker socket is root on the host anyway, which is why the server runs as root
# here: a user in the container would need the host's docker group id to use the socket.
#
# BASE is any Debian bookworm; the default needs a registry. Where there is none, build on the
# local base that scripts/build-images.sh imports:
#   docker build --build-arg BASE=sandbox-engine/base:bookworm -t sandbox-engine .
ARG BASE=debian:bookworm-slim

# The IDE page's JavaScript bundle, built from the committed lock file; only static/dist leaves
# this stage, so Node is not in the service's image.
FROM ${BASE} AS ui
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /ui
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY static/src static/src
COPY scripts/compress-bundle.mjs scripts/
RUN npm run build

FROM ${BASE}

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

# The installed package carries templates/ and static/ under /opt/venv/share/sandbox-engine.
WORKDIR /app
COPY . /app
COPY --from=ui /ui/static/dist /app/static/dist
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir .

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SANDBOX_ENGINE_STATE_DIR=/var/lib/sandbox-engine \
    SANDBOX_ENGINE_UID_DIR=/var/lib/sandbox-engine-uids
# Session records, which GET /session/<id> answers from once a run has ended: a volume keeps
# them when the container is replaced.
VOLUME /var/lib/sandbox-engine

EXPOSE 8080
# Exec form: `serve` execs gunicorn, which then gets docker stop's SIGTERM itself and ends the
# sessions (removing their containers) before it exits.
ENTRYPOINT ["sandbox-engine", "serve", "--bind", "0.0.0.0:8080", "--workers", "2"]
