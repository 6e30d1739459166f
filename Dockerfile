# Multi-stage build of a static stale-exporter. The base images are build
# arguments so that a machine without a registry can use local images; the
# build steps use the exec form, so the Go image needs no shell.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=scratch

FROM ${GO_IMAGE} AS build
ENV CGO_ENABLED=0
# An empty directory for the compose stack's secrets volume, owned by the
# runtime user (docker copies it into a new named volume).
WORKDIR /out/secrets
WORKDIR /src
COPY go.mod go.sum ./
RUN ["go", "mod", "download"]
COPY . .
RUN ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", "/out/stale-exporter", "./cmd/stale-exporter"]

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/stale-exporter /bin/stale-exporter
COPY --from=build --chown=65534:65534 /out/secrets /secrets
# Not root. Give it the Docker socket's group at run time (compose: group_add).
USER 65534:65534
EXPOSE 9817
ENTRYPOINT ["/bin/stale-exporter"]
