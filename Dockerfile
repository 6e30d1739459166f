# Multi-stage build of a static stale-exporter, for any platform buildx
# targets (TARGETOS/TARGETARCH; the build stage runs on the builder's own).
# The base images are build arguments so that a machine without a registry
# can use local images; the build steps use the exec form, so the Go image
# needs no shell. VERSION, REVISION, BRANCH and BUILD_DATE stamp the binary
# (--version, stale_exporter_build_info) and the image's OCI labels.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=scratch

FROM ${GO_IMAGE} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=unknown
ARG BUILD_DATE=unknown
ENV CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH}
ENV GOFLAGS="-trimpath '-ldflags=-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION} -X github.com/prometheus/common/version.Branch=${BRANCH} -X github.com/prometheus/common/version.BuildUser=docker -X github.com/prometheus/common/version.BuildDate=${BUILD_DATE}'"
# An empty directory for the compose stack's secrets volume, owned by the
# runtime user (docker copies it into a new named volume).
WORKDIR /out/secrets
WORKDIR /src
COPY go.mod go.sum ./
RUN ["go", "mod", "download"]
COPY . .
RUN ["go", "build", "-o", "/out/stale-exporter", "./cmd/stale-exporter"]

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="stale-exporter" \
      org.opencontainers.image.description="Exports and cleans up the containers a deploy platform left behind" \
      org.opencontainers.image.source="https://github.com/docker-watcher/stale-exporter" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${BUILD_DATE}"
# CA certificates, for TLS to PostgreSQL (sslmode=verify-full) and Docker.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/stale-exporter /bin/stale-exporter
COPY --from=build --chown=65534:65534 /out/secrets /secrets
# Not root. Give it the Docker socket's group at run time (compose: group_add).
USER 65534:65534
EXPOSE 9817
ENTRYPOINT ["/bin/stale-exporter"]
