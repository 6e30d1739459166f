# Multi-stage build of a static stale-exporter. The base images are build
# arguments so that a machine without a registry can use local images.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=scratch

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/stale-exporter ./cmd/stale-exporter

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/stale-exporter /bin/stale-exporter
# Not root. Give it the Docker socket's group at run time (compose: group_add).
USER 65534:65534
EXPOSE 9817
ENTRYPOINT ["/bin/stale-exporter"]
