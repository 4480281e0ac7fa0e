# syntax=docker/dockerfile:1
#
# Relink's production image: the gateway and CLI (/usr/local/bin/relink,
# the entrypoint; `gateway` by default) and the worker
# (/usr/local/bin/relink-worker: override the entrypoint to run it).
#
#   docker build -t relink --build-arg VERSION=v1.2.3 .   # `relink version`, and the
#                                                          # Worker Versioning build id
#   docker run --env-file relink.env -p 8080:8080 relink                  # relink gateway
#   docker run --env-file relink.env relink setup                         # once per namespace
#   docker run --env-file relink.env --entrypoint relink-worker relink    # the worker
#
# The worker runs pinned to its build (Worker Versioning): relink.env sets
# RELINK_DEPLOYMENT_NAME (the build id is VERSION), or RELINK_UNVERSIONED=true.
#
# Configuration is the environment only (README, "Configuration"); the
# image sets none of it. Both binaries are built by deploy/build-static.sh,
# the script CI runs, so CI checks exactly these binaries.

# The build runs on the builder's own platform and cross-compiles for the
# target (the binaries are pure Go), so multi-platform builds need no
# emulation. go.mod asks for go 1.26.x; the image's GOTOOLCHAIN is local.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH deploy/build-static.sh /out "$VERSION"

# Static binaries on distroless: CA certificates and tzdata, no shell, no
# package manager, user nonroot (65532:65532).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="relink" \
      org.opencontainers.image.description="Relink: repairs broken bank connections with Temporal (gateway, CLI and worker)" \
      org.opencontainers.image.source="https://github.com/relink-dev/relink" \
      org.opencontainers.image.url="https://github.com/relink-dev/relink" \
      org.opencontainers.image.documentation="https://github.com/relink-dev/relink#production" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/relink /out/relink-worker /usr/local/bin/
# Numeric, so Kubernetes can check runAsNonRoot against it.
USER 65532:65532
# The gateway's port (RELINK_LISTEN_ADDR, :8080 for `relink gateway`).
# RELINK_METRICS_ADDR, when set (:9090 in deploy/), adds a metrics port.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/relink"]
CMD ["gateway"]
