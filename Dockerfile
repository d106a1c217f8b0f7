# One image with both binaries; docker-compose.yml picks the command
# (api or worker). Build: docker build -t lull .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/api ./api \
 && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/worker ./worker

# alpine rather than distroless: the api's healthcheck needs wget, and an
# operator can `docker compose exec worker sh` to run `worker dlq list`.
FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata \
 && adduser -D -H -u 10001 lull
COPY --from=build /out/api /out/worker /usr/local/bin/
USER lull
EXPOSE 8000
CMD ["api"]
