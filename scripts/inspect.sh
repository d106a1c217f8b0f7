#!/usr/bin/env bash
# inspect.sh KEY: print the Redis state of one conversation (KEY = its
# unique_id): its flush deadline, its lease, its buffer, its meta and batch
# records, its dedupe set and its dead letters.
#
# Honours NAMESPACE (default lull) and REDIS_URL (default
# redis://127.0.0.1:6379/0). Needs redis-cli; python3 or gzip for the shard.
#
# The shard is crc32(KEY) mod 16 with the IEEE polynomial, as in
# internal/keys (keys.Shard); keys are <ns>:{sNN}:<kind>[:<KEY>].
set -euo pipefail

key=${1:-}
if [ -z "$key" ]; then
  echo "usage: inspect.sh KEY    (or: task inspect KEY=<unique_id>)" >&2
  exit 2
fi
ns=${NAMESPACE:-lull}
url=${REDIS_URL:-redis://127.0.0.1:6379/0}

# crc32_ieee prints the IEEE CRC-32 of $1's bytes as an unsigned integer.
crc32_ieee() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, zlib; print(zlib.crc32(sys.argv[1].encode("utf-8", "surrogateescape")))' "$1"
  else
    # The gzip trailer is CRC-32 (IEEE) then the size, both little-endian.
    printf '%s' "$1" | gzip -c | tail -c 8 | head -c 4 | od -An -tu4 --endian=little | tr -d ' '
  fi
}

rcli() { redis-cli -u "$url" --no-auth-warning --raw "$@"; }

# SHARDS as the namespace's first process recorded it (<ns>:shards), else
# the environment's, else the default (keys.DefaultShards).
shards=$(rcli GET "$ns:shards" 2>/dev/null)
case $shards in '' | *[!0-9]*) shards=${SHARDS:-16} ;; esac

# human MS prints Unix milliseconds as a UTC time.
human() {
  local ms=$1 s
  s=$((ms / 1000))
  printf '%s.%03dZ' "$(date -u -d "@$s" +%Y-%m-%dT%H:%M:%S 2>/dev/null || date -u -r "$s" +%Y-%m-%dT%H:%M:%S)" $((ms % 1000))
}

# relative MS NOW prints how far MS is from NOW, in ms.
relative() {
  local d=$(($1 - $2))
  if [ "$d" -ge 0 ]; then echo "in ${d} ms"; else echo "$((-d)) ms ago"; fi
}

# timed MS prints MS with its UTC time and its distance from now.
timed() {
  if [[ $1 =~ ^[0-9]+$ ]]; then
    echo "$1  ($(human "$1"), $(relative "$1" "$now"))"
  else
    echo "$1"
  fi
}

# show_hash KEY prints a hash's fields, times annotated.
show_hash() {
  local k=$1 field value
  if [ "$(rcli EXISTS "$k")" = 0 ]; then
    echo "  (none)"
    return
  fi
  while IFS= read -r field && IFS= read -r value; do
    case $field in
      first_at | last_at | deadline | flushed_at | dead_at | replayed_at | committed_at | paused_until | delivered_at | last_error_at) echo "  $field: $(timed "$value")" ;;
      *) echo "  $field: $value" ;;
    esac
  done < <(rcli HGETALL "$k")
}

shard=$(printf '%02d' $(($(crc32_ieee "$key") % shards)))
tag="$ns:{s$shard}"
clock=$(rcli TIME) # seconds, then microseconds, one per line
sec=${clock%%$'\n'*}
usec=${clock##*$'\n'}
now=$((sec * 1000 + 10#$usec / 1000))

echo "conversation $key   namespace $ns   shard s$shard   Redis clock $(human "$now")"
echo

echo "due       ZSCORE $tag:due $key"
score=$(rcli ZSCORE "$tag:due" "$key")
if [ -n "$score" ]; then echo "  deadline $(timed "${score%%.*}")"; else echo "  (not scheduled)"; fi

echo "inflight  ZSCORE $tag:inflight $key"
score=$(rcli ZSCORE "$tag:inflight" "$key")
if [ -n "$score" ]; then echo "  lease until $(timed "${score%%.*}")"; else echo "  (no batch in flight)"; fi

echo "buffer    LRANGE $tag:buf:$key 0 -1   ($(rcli LLEN "$tag:buf:$key") messages, TTL $(rcli PTTL "$tag:buf:$key") ms)"
rcli LRANGE "$tag:buf:$key" 0 -1 | sed 's/^/  /'

echo "meta      HGETALL $tag:meta:$key   (TTL $(rcli PTTL "$tag:meta:$key") ms)"
show_hash "$tag:meta:$key"

echo "batch     HGETALL $tag:batch:$key"
show_hash "$tag:batch:$key"

echo "last      HGETALL $tag:last:$key   (the last delivered batch, kept for a discard; only with API_TOKEN)"
show_hash "$tag:last:$key"

count=$(rcli ZCARD "$tag:seen:$key")
echo "seen      ZRANGE $tag:seen:$key 0 -1 WITHSCORES   ($count message ids in the dedupe window; last 5)"
while IFS= read -r id && IFS= read -r at; do
  echo "  $id  $(timed "${at%%.*}")"
done < <(rcli ZRANGE "$tag:seen:$key" -5 -1 WITHSCORES)

echo "dead      ZRANGE $tag:dead 0 -1   (this conversation's dead-lettered batches)"
dead=0
while IFS= read -r id && IFS= read -r at; do
  rest=${id#"$key:"}
  if [ "$rest" != "$id" ] && [[ $rest =~ ^[0-9]+$ ]]; then
    echo "  $id  dead since $(timed "${at%%.*}")   (HGETALL $tag:dead:$id)"
    dead=$((dead + 1))
  fi
done < <(rcli ZRANGE "$tag:dead" 0 -1 WITHSCORES)
if [ "$dead" = 0 ]; then echo "  (none)"; fi
