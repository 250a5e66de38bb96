# redbandit: one static binary in a small image.
# docker build -t redbandit . && docker run --rm redbandit --help
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/redbandit ./cmd/redbandit

FROM alpine:3.20
# wget (busybox) serves the compose health checks.
RUN adduser -D -u 10001 redbandit && mkdir /data && chown redbandit /data
COPY --from=build /out/redbandit /usr/local/bin/redbandit
USER redbandit
WORKDIR /data
ENTRYPOINT ["redbandit"]
