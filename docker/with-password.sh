#!/bin/sh
# with-password.sh COMMAND [ARG...]: run COMMAND with the PostgreSQL password in PGPASSWORD.
#
# Every service of compose.yaml starts through this script. It reads the password from the
# Compose secret file (POSTGRES_PASSWORD_FILE, default /run/secrets/postgres_password, made
# from docker/postgres_password), refuses a missing, empty, example or non-alphanumeric one
# (exit 2, saying how to fix it), and exports it as PGPASSWORD, which libpq reads: psql and
# createdb, and psycopg under Optuna, MLflow and the dashboard, whose database URLs then carry
# no password. So the password is on no command line (`ps`) and in no container configuration
# (`docker inspect`); tests/test_scaleout.py runs this script with sh.
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: with-password.sh COMMAND [ARG...]" >&2
    exit 2
fi
file="${POSTGRES_PASSWORD_FILE:-/run/secrets/postgres_password}"
example="change0this0password"

refuse() {
    echo "with-password.sh: $1; write a password of letters and digits to" \
        "docker/postgres_password, e.g. openssl rand -hex 16 > docker/postgres_password" >&2
    exit 2
}

[ -r "$file" ] || refuse "cannot read the database password file $file"
password=$(cat "$file")  # drops the trailing newline
case "$password" in
    "") refuse "the database password in $file is empty" ;;
    "$example") refuse "the database password in $file is the example password" ;;
    *[!A-Za-z0-9]*) refuse "the database password in $file has characters other than letters and digits" ;;
esac
if [ "${#password}" -lt 12 ]; then
    refuse "the database password in $file is shorter than 12 characters"
fi

PGPASSWORD="$password"
export PGPASSWORD
unset password
exec "$@"
