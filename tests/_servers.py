"""Real servers for the scale-out tests, on 127.0.0.1 only: a throw-away PostgreSQL cluster
(made by .ci/postgres.sh, the same script CI uses) and an `mlflow server` process.

Both are plain objects with `stop()`; the fixtures in tests/test_scaleout.py own them and stop
them in finalizers. Waiting is bounded polling on a condition, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PG_SCRIPT",
    "REQUIRE_ENV",
    "URL_ENV",
    "MlflowServer",
    "PostgresServer",
    "ServerError",
    "free_port",
    "postgres_available",
    "start_postgres",
    "wait_for",
]

REPO = Path(__file__).resolve().parents[1]
PG_SCRIPT = REPO / ".ci" / "postgres.sh"
REQUIRE_ENV = "MIXBENCH_REQUIRE_POSTGRES"
"""Set (CI does) to turn "no PostgreSQL here" from a skip into a failure."""
URL_ENV = "MIXBENCH_POSTGRES_URL"
"""A running server's URL (a superuser's): the tests use it instead of starting their own."""


class ServerError(RuntimeError):
    """A test server did not start or answer; the message holds its log's tail."""


def free_port() -> int:
    """A 127.0.0.1 TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.1
) -> Any:
    """Poll `condition` until it returns something truthy (returned); ServerError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ServerError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_available() -> bool:
    """Whether .ci/postgres.sh finds initdb and pg_ctl on this machine."""
    out = subprocess.run(["bash", str(PG_SCRIPT), "bindir"], capture_output=True, text=True)
    return out.returncode == 0 and bool(out.stdout.strip())


@dataclass
class PostgresServer:
    """A PostgreSQL server reachable at `url` (postgresql+psycopg://user:pw@127.0.0.1:port/db).

    `folder` is the throw-away cluster's folder when this process started it (stop() deletes
    it), None for a server given through MIXBENCH_POSTGRES_URL (stop() leaves it running).
    """

    url: str
    folder: Path | None = None
    databases: list[str] = field(default_factory=list)

    def url_for(self, database: str) -> str:
        """The same server and credentials, another database."""
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))

    def connect(self, database: str | None = None) -> Any:
        """A psycopg connection (autocommit) to `database` (None: the URL's)."""
        import psycopg

        url = self.url_for(database) if database else self.url
        return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1),
                               autocommit=True, connect_timeout=10)  # fmt: skip

    def sql(self, query: str, params: Sequence[Any] = (), *, database: str | None = None):
        """Rows of one SQL statement."""
        with self.connect(database) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (dropped by stop()); returns its URL."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.databases.append(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name`, closing its remaining connections."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        with contextlib.suppress(ValueError):
            self.databases.remove(name)

    def stop(self) -> None:
        """Drop the databases made here; stop and delete a cluster this process started."""
        if self.folder is None:
            for name in list(self.databases):
                with contextlib.suppress(Exception):
                    self.drop_database(name)
            return
        out = subprocess.run(
            ["bash", str(PG_SCRIPT), "stop", str(self.folder)], capture_output=True, text=True
        )
        if out.returncode != 0:
            raise ServerError(f"stopping PostgreSQL in {self.folder} failed: {out.stderr}")


def start_postgres(timeout: float = 120.0) -> PostgresServer:
    """MIXBENCH_POSTGRES_URL's server, else a new cluster from `.ci/postgres.sh start`
    (which never installs anything when called from here)."""
    given = os.environ.get(URL_ENV)
    if given:
        return PostgresServer(url=given)
    env = {**os.environ, "MIXBENCH_PG_NO_INSTALL": "1"}
    try:
        out = subprocess.run(
            ["bash", str(PG_SCRIPT), "start"],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        raise ServerError(f".ci/postgres.sh start took over {timeout:g} s") from err
    exports = {}
    for line in out.stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            exports[key] = value
    if out.returncode != 0 or "MIXBENCH_POSTGRES_URL" not in exports:
        raise ServerError(f".ci/postgres.sh start failed ({out.returncode}): {out.stderr}")
    return PostgresServer(
        url=exports["MIXBENCH_POSTGRES_URL"], folder=Path(exports["MIXBENCH_POSTGRES_DIR"])
    )


# -- MLflow tracking server ------------------------------------------------------------------


@dataclass
class MlflowServer:
    """`mlflow server` on 127.0.0.1:`port` with a database backend and served artifacts.

    start() and stop() may be called again (a restart keeps the port, backend and artifacts).
    """

    backend_uri: str
    artifacts: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    allowed_hosts: str | None = None
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]  # fmt: skip
        if self.allowed_hosts:
            cmd += ["--allowed-hosts", self.allowed_hosts]
        return cmd

    def launch(self) -> None:
        """Start the server process without waiting for it to answer (see wait_ready)."""
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError(f"MLflow server already running (pid {self.proc.pid})")
        self.artifacts.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115 - the child process owns it
        log.write(f"--- start {self.starts + 1}: {shlex.join(self.command())}\n")
        log.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(self.artifacts.parent),
            start_new_session=True,  # its own process group: stop() ends uvicorn's too
        )
        log.close()
        self.starts += 1

    def healthy(self) -> bool:
        """True when GET /health answers 200."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Poll /health until it answers; ServerError with the log's tail if the server died."""

        def up() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerError(f"MLflow server exited:\n{self.log_tail()}")
            return self.healthy()

        try:
            wait_for(up, timeout, f"MLflow server on {self.url}", interval=0.2)
        except ServerError as err:
            raise ServerError(f"{err}\n{self.log_tail()}") from None

    def start(self, timeout: float = 180.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server's process group (a graceful stop), SIGKILL it after `timeout`."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # uvicorn's worker may outlive the main process for a moment: wait for the group
        with contextlib.suppress(ServerError):
            wait_for(lambda: not _group_alive(proc.pid), timeout, "MLflow's processes to end")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- REST ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """(HTTP status, body) of one request to the server."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def api(self, method: str, endpoint: str, body: Mapping[str, Any] | None = None) -> dict:
        """JSON of a REST API call, e.g. api('POST', 'runs/search', {...})."""
        status, raw = self.request(method, f"/api/2.0/mlflow/{endpoint}", body)
        if status != 200:
            raise ServerError(f"{method} {endpoint} -> HTTP {status}: {raw[:500]!r}")
        return json.loads(raw or b"{}")

    def experiment_id(self, name: str) -> str:
        query = urllib.parse.urlencode({"experiment_name": name})
        return self.api("GET", f"experiments/get-by-name?{query}")["experiment"]["experiment_id"]

    def search_runs(self, experiment_id: str, filter_string: str = "") -> list[dict]:
        """Every run matching `filter_string` (all pages), as the REST API returns them."""
        runs: list[dict] = []
        token = None
        while True:
            body: dict[str, Any] = {
                "experiment_ids": [experiment_id],
                "filter": filter_string,
                "max_results": 1000,
                "run_view_type": "ALL",
            }
            if token:
                body["page_token"] = token
            page = self.api("POST", "runs/search", body)
            runs += page.get("runs", [])
            token = page.get("next_page_token")
            if not token:
                return runs

    def download(self, run: Mapping[str, Any], path: str) -> bytes:
        """An artifact's bytes through the server's proxied artifact endpoint."""
        root = run["info"]["artifact_uri"]  # mlflow-artifacts:/<experiment>/<run>/artifacts
        if not root.startswith("mlflow-artifacts:/"):
            raise ServerError(f"run artifacts are not served by the server: {root}")
        rel = root.removeprefix("mlflow-artifacts:").lstrip("/")
        status, raw = self.request("GET", f"/api/2.0/mlflow-artifacts/artifacts/{rel}/{path}")
        if status != 200:
            raise ServerError(f"GET artifact {rel}/{path} -> HTTP {status}: {raw[:300]!r}")
        return raw


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tags_of(run: Mapping[str, Any]) -> dict[str, str]:
    """A REST run's tags as a dict."""
    return {t["key"]: t["value"] for t in run.get("data", {}).get("tags", [])}


def metrics_of(run: Mapping[str, Any]) -> dict[str, float]:
    """A REST run's latest metric values as a dict."""
    return {m["key"]: float(m["value"]) for m in run.get("data", {}).get("metrics", [])}


@contextlib.contextmanager
def running(server: MlflowServer) -> Iterator[MlflowServer]:
    """Start `server`, yield it, always stop it."""
    try:
        server.start()
        yield server
    finally:
        server.stop()
