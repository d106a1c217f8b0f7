#!/usr/bin/env bash
# cluster.sh up|down|env|status|stop-rabbit N|start-rabbit N|kill-rabbit N|kill-redis PORT
#
# A local Redis Cluster (3 masters, one replica each) and a 3-node RabbitMQ
# cluster, from the Debian packages (redis-server, redis-cli,
# rabbitmq-server), on ports and Erlang node names of their own and with
# every file in one directory. It never touches the shared Redis
# (127.0.0.1:6379) or RabbitMQ (127.0.0.1:5672): nothing here talks to them,
# and the nodes' names, ports, cookie and data are their own.
#
#   up     start both clusters and print the environment lull needs
#          (REDIS_URL, AMQP_URL); `down` stops them and deletes the directory
#   env    print that environment again (. <(scripts/cluster.sh env))
#   status cluster state of both
#   stop-rabbit N / start-rabbit N   graceful stop / start of RabbitMQ node N (1-3);
#                                    stop waits until every quorum queue keeps a
#                                    majority without N (a rolling restart's step)
#   kill-rabbit N                    kill -9 of RabbitMQ node N
#   ctl N ARGS...                    rabbitmqctl ARGS on node N
#   kill-redis PORT / start-redis PORT   kill -9 / start the redis-server on PORT
#                                    (a restarted old master rejoins as a replica)
#
# Settings (environment):
#   LULL_CLUSTER_DIR         where everything lives; default ${TMPDIR:-/tmp}/lull-cluster
#   LULL_CLUSTER_NAME        Erlang node name prefix; default lullcluster (nodes NAME-1@localhost ...)
#   LULL_CLUSTER_REDIS_PORT  first of 6 Redis ports (masters, then replicas); default 7101
#   LULL_CLUSTER_AMQP_PORT   first of 3 AMQP ports; default 5701
#   LULL_CLUSTER_DIST_PORT   first of 3 Erlang distribution ports; default 25701
#   LULL_CLUSTER_NODE_TIMEOUT  Redis cluster-node-timeout, ms; default 1000 (a dead
#                            master's replica takes over within about 2-3 s)
#   LULL_CLUSTER_REDIS_ONLY=1 / LULL_CLUSTER_RABBIT_ONLY=1  start only one of them
#
# `up` remembers the settings in $LULL_CLUSTER_DIR/settings, so the other
# commands need only LULL_CLUSTER_DIR.
set -euo pipefail

DIR=${LULL_CLUSTER_DIR:-${TMPDIR:-/tmp}/lull-cluster}
say() { printf 'cluster: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

load_settings() {
  if [ -f "$DIR/settings" ]; then
    # shellcheck source=/dev/null
    . "$DIR/settings"
  fi
  NAME=${NAME:-${LULL_CLUSTER_NAME:-lullcluster}}
  REDIS_PORT=${REDIS_PORT:-${LULL_CLUSTER_REDIS_PORT:-7101}}
  AMQP_PORT=${AMQP_PORT:-${LULL_CLUSTER_AMQP_PORT:-5701}}
  DIST_PORT=${DIST_PORT:-${LULL_CLUSTER_DIST_PORT:-25701}}
  NODE_TIMEOUT=${NODE_TIMEOUT:-${LULL_CLUSTER_NODE_TIMEOUT:-1000}}
  WITH_REDIS=${WITH_REDIS:-$([ "${LULL_CLUSTER_RABBIT_ONLY:-}" = 1 ] && echo 0 || echo 1)}
  WITH_RABBIT=${WITH_RABBIT:-$([ "${LULL_CLUSTER_REDIS_ONLY:-}" = 1 ] && echo 0 || echo 1)}
}

# The refusal that keeps the shared servers safe.
check_ports() {
  local p
  for p in "$@"; do
    case $p in 6379 | 5672 | 25672 | 4369 | 15672) die "port $p belongs to the shared servers; choose other ports" ;; esac
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "port $p is in use; set LULL_CLUSTER_*_PORT to free ports"
    fi
  done
}

redis_ports() { local i; for i in 0 1 2 3 4 5; do echo $((REDIS_PORT + i)); done; }

# ---- Redis Cluster --------------------------------------------------------

redis_start_one() {
  local port=$1 d="$DIR/redis/$1"
  mkdir -p "$d"
  # AOF fsync every second: what a restarted node replays. The failover
  # guarantee comes from the replica, not from this file.
  redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --daemonize yes \
    --pidfile "$d/redis.pid" --logfile "$d/redis.log" \
    --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout "$NODE_TIMEOUT" --cluster-replica-validity-factor 0 \
    --cluster-require-full-coverage no \
    --appendonly yes --appendfsync everysec --save ""
}

redis_cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

redis_up() {
  local p addrs=() i
  for p in $(redis_ports); do
    redis_start_one "$p"
    addrs+=("127.0.0.1:$p")
  done
  for p in $(redis_ports); do
    for ((i = 0; i < 100; i++)); do
      [ "$(redis_cli "$p" ping 2>/dev/null)" = PONG ] && break
      sleep 0.1
    done
  done
  # The first three become masters, the last three their replicas.
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/redis/create.log" 2>&1 ||
    die "redis-cli --cluster create failed: $(cat "$DIR/redis/create.log")"
  for ((i = 0; i < 200; i++)); do
    local ok=1
    for p in $(redis_ports); do
      redis_cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
    done
    # Every replica attached to its master and in sync.
    [ "$(redis_cli "$REDIS_PORT" cluster nodes 2>/dev/null | grep -c ' connected')" = 6 ] || ok=0
    [ $ok = 1 ] && break
    sleep 0.1
  done
  [ $ok = 1 ] || die "redis cluster did not become ok: $(redis_cli "$REDIS_PORT" cluster nodes)"
  say "redis cluster up on ports $(redis_ports | tr '\n' ' ')"
}

redis_down() {
  local f
  for f in "$DIR"/redis/*/redis.pid; do
    [ -f "$f" ] || continue
    kill -KILL "$(cat "$f")" 2>/dev/null || true
  done
}

# ---- RabbitMQ cluster -----------------------------------------------------

# Debian's /usr/sbin wrappers switch to the rabbitmq user when run as root,
# losing this environment: use the scripts they wrap.
rabbit_bin() {
  if [ -x "/usr/lib/rabbitmq/bin/$1" ]; then echo "/usr/lib/rabbitmq/bin/$1"; else command -v "$1"; fi
}

node_name() { echo "$NAME-$1@localhost"; }

# The environment of node N's server and of every rabbitmqctl: one HOME, so
# one Erlang cookie for the three nodes and rabbitmqctl.
rabbit_env() {
  local n=$1 d="$DIR/rabbit/$1"
  echo HOME="$DIR/rabbit/home" \
    RABBITMQ_CONF_ENV_FILE="$DIR/rabbit/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$DIR/rabbit/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/rabbit/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/rabbit/enabled_plugins" \
    RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT=$((AMQP_PORT + n - 1)) \
    RABBITMQ_DIST_PORT=$((DIST_PORT + n - 1)) \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_PID_FILE="$d/rabbit.pid" \
    ERL_EPMD_ADDRESS=127.0.0.1
}

ctl() {
  local n=$1
  shift
  # shellcheck disable=SC2046
  env -i PATH="$PATH" $(rabbit_env "$n") "$(rabbit_bin rabbitmqctl)" -n "$(node_name "$n")" "$@"
}

rabbit_prepare() {
  local id
  mkdir -p "$DIR/rabbit/home"
  id=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F')
  printf 'LULLCLUSTER%s\n' "$id" >"$DIR/rabbit/home/.erlang.cookie"
  chmod 400 "$DIR/rabbit/home/.erlang.cookie"
  echo '[].' >"$DIR/rabbit/enabled_plugins"
  : >"$DIR/rabbit/rabbitmq-env.conf"
  # No disk alarm on a full test disk; the node loss is noticed at once on
  # this machine (the distribution link closes), net_ticktime covers the rest.
  printf 'disk_free_limit.absolute = 1MB\nloopback_users = none\n' >"$DIR/rabbit/rabbitmq.conf"
}

rabbit_start() {
  local n=$1 d="$DIR/rabbit/$1"
  mkdir -p "$d"
  # shellcheck disable=SC2046
  env -i PATH="$PATH" $(rabbit_env "$n") \
    RABBITMQ_SERVER_START_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    ERL_CRASH_DUMP="$d/erl_crash.dump" \
    setsid "$(rabbit_bin rabbitmq-server)" >>"$d/server.out" 2>&1 </dev/null &
}

rabbit_await() {
  local n=$1 i
  for ((i = 0; i < 900; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((AMQP_PORT + n - 1))") 2>/dev/null && break
    sleep 0.1
  done
  ctl "$n" await_startup --timeout 90 >/dev/null || die "rabbitmq node $n did not boot: $(tail -20 "$DIR/rabbit/$n/server.out")"
}

rabbit_up() {
  local n
  rabbit_prepare
  for n in 1 2 3; do rabbit_start "$n"; done
  for n in 1 2 3; do rabbit_await "$n"; done
  for n in 2 3; do
    ctl "$n" stop_app >/dev/null
    ctl "$n" join_cluster "$(node_name 1)" >/dev/null
    ctl "$n" start_app >/dev/null
  done
  ctl 1 await_online_nodes 3 --timeout 60 >/dev/null 2>&1 || true
  [ "$(ctl 1 eval 'length(rabbit_nodes:all_running()).' 2>/dev/null)" = 3 ] ||
    die "rabbitmq cluster did not form: $(ctl 1 cluster_status)"
  say "rabbitmq cluster up: $(node_name 1) $(node_name 2) $(node_name 3) on ports $AMQP_PORT-$((AMQP_PORT + 2))"
}

rabbit_pid() { cat "$DIR/rabbit/$1/rabbit.pid" 2>/dev/null || true; }

rabbit_kill() {
  local pid
  pid=$(rabbit_pid "$1")
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
}

upgrade() {
  local n=$1
  shift
  # shellcheck disable=SC2046
  env -i PATH="$PATH" $(rabbit_env "$n") "$(rabbit_bin rabbitmq-upgrade)" -n "$(node_name "$n")" "$@"
}

rabbit_stop() {
  upgrade "$1" await_online_quorum_plus_one --timeout 60 >/dev/null ||
    die "node $1: quorum queues would lose their majority without it"
  ctl "$1" stop >/dev/null 2>&1 || rabbit_kill "$1"
}

rabbit_down() {
  local n
  for n in 1 2 3; do
    [ -d "$DIR/rabbit/$n" ] || continue
    rabbit_kill "$n"
  done
  # The servers' leftovers: epmd stays (the shared one), nothing else of
  # these nodes does. erl_child_setup and the inet helpers die with beam.
  sleep 0.2
}

print_env() {
  local urls=() n
  if [ "$WITH_REDIS" = 1 ]; then
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT?addr=127.0.0.1:$((REDIS_PORT + 1))&addr=127.0.0.1:$((REDIS_PORT + 2))"
  fi
  if [ "$WITH_RABBIT" = 1 ]; then
    for n in 1 2 3; do urls+=("amqp://guest:guest@127.0.0.1:$((AMQP_PORT + n - 1))/"); done
    (IFS=,; echo "AMQP_URL=${urls[*]}")
  fi
}

case ${1:-} in
up)
  load_settings
  [ -e "$DIR/settings" ] && die "$DIR holds a cluster already (scripts/cluster.sh down first)"
  ports=()
  [ "$WITH_REDIS" = 1 ] && mapfile -t ports < <(redis_ports)
  if [ "$WITH_RABBIT" = 1 ]; then
    ports+=("$AMQP_PORT" $((AMQP_PORT + 1)) $((AMQP_PORT + 2)) "$DIST_PORT" $((DIST_PORT + 1)) $((DIST_PORT + 2)))
  fi
  check_ports "${ports[@]}"
  mkdir -p "$DIR"
  printf 'NAME=%s\nREDIS_PORT=%s\nAMQP_PORT=%s\nDIST_PORT=%s\nNODE_TIMEOUT=%s\nWITH_REDIS=%s\nWITH_RABBIT=%s\n' \
    "$NAME" "$REDIS_PORT" "$AMQP_PORT" "$DIST_PORT" "$NODE_TIMEOUT" "$WITH_REDIS" "$WITH_RABBIT" >"$DIR/settings"
  [ "$WITH_REDIS" = 1 ] && redis_up
  [ "$WITH_RABBIT" = 1 ] && rabbit_up
  print_env | tee "$DIR/env"
  ;;
down)
  load_settings
  [ -d "$DIR" ] || exit 0
  redis_down
  rabbit_down
  rm -rf "$DIR"
  say "down"
  ;;
env)
  load_settings
  print_env
  ;;
status)
  load_settings
  [ "$WITH_REDIS" = 1 ] && redis_cli "$REDIS_PORT" cluster nodes
  [ "$WITH_RABBIT" = 1 ] && ctl 1 cluster_status
  ;;
stop-rabbit)
  load_settings
  rabbit_stop "${2:?node 1-3}"
  ;;
start-rabbit)
  load_settings
  rabbit_start "${2:?node 1-3}"
  rabbit_await "$2"
  ;;
kill-rabbit)
  load_settings
  rabbit_kill "${2:?node 1-3}"
  ;;
kill-redis)
  load_settings
  kill -KILL "$(cat "$DIR/redis/${2:?port}/redis.pid")"
  ;;
start-redis)
  load_settings
  redis_start_one "${2:?port}"
  ;;
ctl)
  load_settings
  n=${2:?node 1-3}
  shift 2
  ctl "$n" "$@"
  ;;
*)
  sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
