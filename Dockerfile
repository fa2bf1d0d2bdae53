# syntax=docker/dockerfile:1
# Multi-stage build of a static, non-root fieldsync image. The SQLite driver
# is pure Go, so CGO is off and the binary runs on a distroless static base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.Version=${VERSION}" -o /out/fieldsync ./cmd/fieldsync \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fieldsync /usr/local/bin/fieldsync
# The embedded database lives under /data (owned by the nonroot user); mount
# a volume there.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
ENV FIELDSYNC_ADDR=:8080 \
    FIELDSYNC_DATABASE_URL=/data/fieldsync.db
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/fieldsync"]
CMD ["serve"]
