#!/usr/bin/env bash
# A throw-away PostgreSQL server for the scale-out tests (tests/test_scaleout.py) and for trying
# MixBench's PostgreSQL storage on one machine.
#
#   bash .ci/postgres.sh install          apt-get install postgresql when initdb is missing
#   eval "$(bash .ci/postgres.sh start)"  new cluster in a temp dir, on 127.0.0.1 only, on a
#                                         free port; prints `export` lines for
#                                         MIXBENCH_POSTGRES_URL (postgresql+psycopg://...) and
#                                         MIXBENCH_POSTGRES_DIR (installs first when missing,
#                                         unless MIXBENCH_PG_NO_INSTALL=1)
#   bash .ci/postgres.sh stop [DIR]       stop that cluster and delete DIR
#                                         (default: $MIXBENCH_POSTGRES_DIR)
#   bash .ci/postgres.sh bindir           print the folder holding initdb and pg_ctl
#
# The binaries are looked up in $MIXBENCH_PG_BIN, then Debian's /usr/lib/postgresql/<ver>/bin
# (newest first), then PATH. initdb refuses to run as root, so as root the cluster belongs to
# the `postgres` user Debian's package creates (runuser). The unix socket lives in the temp dir;
# TCP listens on 127.0.0.1 only and needs the random password in the URL.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  if [ -n "${MIXBENCH_PG_BIN:-}" ]; then
    if [ -x "$MIXBENCH_PG_BIN/initdb" ] && [ -x "$MIXBENCH_PG_BIN/pg_ctl" ]; then
      echo "$MIXBENCH_PG_BIN"
      return 0
    fi
    log "MIXBENCH_PG_BIN=$MIXBENCH_PG_BIN holds no initdb/pg_ctl"
    return 1
  fi
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4 -rn); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

install_postgres() {
  if find_bindir >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "PostgreSQL server binaries not found and cannot apt-get here;" \
      "install them (Debian/Ubuntu: apt-get install postgresql) or set MIXBENCH_PG_BIN"
    return 1
  fi
  log "installing PostgreSQL from Debian packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  find_bindir >/dev/null
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_cluster() {
  if [ "${MIXBENCH_PG_NO_INSTALL:-0}" != 1 ]; then
    install_postgres
  fi
  local bin
  if ! bin=$(find_bindir); then
    log "PostgreSQL server binaries (initdb, pg_ctl) not found;" \
      "run: bash .ci/postgres.sh install, or set MIXBENCH_PG_BIN"
    return 1
  fi
  local dir owner=() password port url
  dir=$(mktemp -d "${TMPDIR:-/tmp}/mixbench-pg.XXXXXX")
  chmod 700 "$dir"
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      log "running as root but there is no 'postgres' user to own the cluster" \
        "(initdb refuses root); create one: useradd --system postgres"
      rm -rf "$dir"
      return 1
    fi
    chown postgres: "$dir"
    owner=(runuser -u postgres --)
  fi
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  (umask 077 && printf '%s\n' "$password" >"$dir/pwfile")
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/pwfile"; fi
  "${owner[@]}" "$bin/initdb" -D "$dir/data" -U mixbench --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
    { log "initdb failed:"; cat "$dir/initdb.log" >&2; rm -rf "$dir"; return 1; }
  rm -f "$dir/pwfile"
  mkdir "$dir/sock"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/sock"; fi
  local tries
  for tries in 1 2 3 4 5; do
    port=$(free_port)
    # fsync off: a throw-away cluster trades durability for speed
    if "${owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
      "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c fsync=off \
       -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2; then
      break
    fi
    if [ "$tries" = 5 ]; then
      log "pg_ctl start failed; server log:"
      cat "$dir/server.log" >&2 || true
      rm -rf "$dir"
      return 1
    fi
    log "port $port taken; trying another"
  done
  "${owner[@]}" "$bin/psql" -h "$dir/sock" -p "$port" -U mixbench -d postgres -qAt \
    -c "CREATE DATABASE mixbench" >&2
  url="postgresql+psycopg://mixbench:$password@127.0.0.1:$port/mixbench"
  log "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
  printf "export MIXBENCH_POSTGRES_URL='%s'\n" "$url"
  printf "export MIXBENCH_POSTGRES_DIR='%s'\n" "$dir"
}

stop_cluster() {
  local dir=${1:-${MIXBENCH_POSTGRES_DIR:-}}
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    log "stop: no cluster folder given (argument or MIXBENCH_POSTGRES_DIR)"
    return 1
  fi
  case "$(basename "$dir")" in
    mixbench-pg.*) ;;
    *) log "stop: $dir is not a folder made by this script"; return 1 ;;
  esac
  local bin owner=()
  bin=$(find_bindir)
  if [ "$(id -u)" = 0 ]; then owner=(runuser -u postgres --); fi
  if [ -f "$dir/data/postmaster.pid" ]; then
    "${owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  install) install_postgres ;;
  start) start_cluster ;;
  stop) stop_cluster "${2:-}" ;;
  bindir) find_bindir ;;
  *)
    echo "usage: bash .ci/postgres.sh install|start|stop [DIR]|bindir" >&2
    exit 2
    ;;
esac
