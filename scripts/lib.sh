# Shared by run.sh and test-deps.sh (sourced): Debian packages, and this
# machine's PostgreSQL and dockerd, started when they are not running.

# install_packages installs the Debian packages named, as root.
install_packages() {
  [ $# -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing $*: install them, or run this as root" >&2
    exit 1
  fi
  echo "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PG_SOCKET_DIR and PG_PORT name the socket this machine's tools and the
# exporter connect to (Debian's default: /var/run/postgresql, port 5432).
PG_SOCKET_DIR=/var/run/postgresql
PG_PORT=${PGPORT:-5432}

# start_postgres starts the cluster behind that socket, if it is not
# answering: the cluster on that port, not the first pg_lsclusters lists
# (a machine may hold several).
start_postgres() {
  if pg_isready -q -h "$PG_SOCKET_DIR" -p "$PG_PORT"; then
    return 0
  fi
  local cluster
  cluster=$(pg_lsclusters -h | awk -v port="$PG_PORT" '$3 == port && $4 != "online" {print $1, $2; exit}')
  if [ -z "$cluster" ]; then
    echo "no stopped PostgreSQL cluster on port $PG_PORT to start (pg_lsclusters):" >&2
    pg_lsclusters >&2
    exit 1
  fi
  echo "starting PostgreSQL cluster $cluster (port $PG_PORT)"
  # shellcheck disable=SC2086
  setsid pg_ctlcluster $cluster start
  for _ in $(seq 1 30); do pg_isready -q -h "$PG_SOCKET_DIR" -p "$PG_PORT" && return 0; sleep 1; done
  echo "PostgreSQL on port $PG_PORT did not answer within 30s" >&2
  exit 1
}

# start_docker starts dockerd if no engine answers at the default socket.
start_docker() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  echo "starting dockerd"
  # Its own session: it outlives whatever started it.
  setsid nohup dockerd >/tmp/stale-exporter-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  echo "dockerd did not start:" >&2
  tail -20 /tmp/stale-exporter-dockerd.log >&2
  exit 1
}

# as_postgres runs a command as PostgreSQL's superuser account.
as_postgres() {
  if [ "$(id -un)" = postgres ]; then
    "$@"
  elif [ "$(id -u)" = 0 ]; then
    # From /: postgres may not enter the caller's directory.
    (cd / && runuser -u postgres -- "$@")
  else
    echo "creating the exporter's role and database needs root (or the postgres account)" >&2
    exit 1
  fi
}
