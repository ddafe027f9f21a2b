"""Issue 14's faults, each against the real thing: damaged journal files, credentials in
tracking URIs (a real `mlflow server`), read-only folders (a real subprocess without root's
permission override), MLflow's schema-creation race (real processes started at once),
best.json per storage, a dead tracking server behind `benchmark.report`, and the pinned
dependencies that CI and the README install."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmark import report, tracking
from benchmark import study as study_cli
from benchmark.journal import find_damage
from benchmark.reporting import load

try:
    from tests._mlflow import fresh_mlflow_uri
    from tests._servers import MlflowServer, free_port
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _mlflow import fresh_mlflow_uri
    from _servers import MlflowServer, free_port

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--space", "gan", "--dataset", "ring8", "--epochs", "1",
    "--setting", "train_size=256", "--setting", "n_eval=150", "--setting", "heldout_size=150",
    "--setting", "batch_size=128", "--setting", "device=cpu",
]  # fmt: skip
STUDY = "gan-ring8-wasserstein"
SECRET = "S3cretPw"


def _load(path: Path, name: str = STUDY) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(path)))
    return optuna.load_study(study_name=name, storage=storage)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _cli(args: list[str], cwd: Path, *, unprivileged: bool = False, timeout: float = 300):
    """`python -m benchmark.study ARGS` in `cwd`; `unprivileged`: without root's permission
    override (setpriv drops CAP_DAC_OVERRIDE), so that file modes hold as for any user."""
    cmd = [sys.executable, "-m", "benchmark.study", *args]
    if unprivileged and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: a read-only folder is writable")
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    return subprocess.run(
        cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-trial study in results/optuna.journal, and its MLflow store (made by a
    process that has exited, as a user's earlier run would be)."""
    folder = tmp_path_factory.mktemp("finished")
    uri = fresh_mlflow_uri(tmp_path_factory, folder)
    out = _cli([*TINY, "--trials", "2", "--tracking-uri", uri], folder)
    assert out.returncode == 0, out.stderr
    return folder / "results" / "optuna.journal", uri


@pytest.fixture
def here(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path, fresh_mlflow_uri(tmp_path_factory, tmp_path)


# -- 1. a damaged journal -------------------------------------------------------------------


def _damage(raw: bytes, kind: str) -> tuple[bytes, int]:
    """(damaged bytes, byte offset of the first bad line)."""
    if kind == "truncated":  # the repro: truncate -s -37 results/optuna.journal
        bad = raw[:-37]
        return bad, bad.rfind(b"\n") + 1
    if kind == "bad-trailing-line":
        return raw + b'{"op_code": 4, "worker_id": "x", "study_id\n', len(raw)
    if kind == "garbage":
        return b"\x00\x17garbage\xff\n" * 40 + b"\x00tail", 0
    lines = raw.splitlines(keepends=True)  # "bad-middle-line": inside trial 1, RUNNING there
    head = b"".join(lines[:26])
    return head + b"not json\n" + b"".join(lines[26:]), len(head)


@pytest.mark.parametrize("kind", ["truncated", "bad-trailing-line", "garbage", "bad-middle-line"])
def test_damaged_journal_is_refused_untouched_and_repair_keeps_the_readable_prefix(
    finished, here, kind, capsys
):
    folder, uri = here
    journal = folder / "results" / "optuna.journal"
    journal.parent.mkdir()
    damaged, offset = _damage(finished[0].read_bytes(), kind)
    journal.write_bytes(damaged)
    args = [*TINY, "--trials", "3", "--tracking-uri", uri]

    assert study_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "journal file 'results/optuna.journal' is damaged" in err
    assert f"at byte {offset} of {len(damaged)}" in err
    assert "--repair-journal" in err and "nothing was written" in err
    assert journal.read_bytes() == damaged  # byte for byte
    assert sorted(p.name for p in journal.parent.iterdir()) == ["optuna.journal"]
    assert report.main(["--study", STUDY, "--storage", str(journal)]) == 2
    assert f"at byte {offset}" in capsys.readouterr().err
    assert journal.read_bytes() == damaged

    # what Optuna reads from the readable prefix alone: the repaired study must start there
    prefix = folder / "prefix.journal"
    prefix.write_bytes(damaged[:offset])
    names = optuna.study.get_all_study_names(JournalStorage(JournalFileBackend(str(prefix))))
    done = [t for t in _load(prefix).trials if t.state == TrialState.COMPLETE] if names else []
    before = [(t.number, t.values) for t in done]
    kept_lines = damaged[:offset].count(b"\n")

    assert study_cli.main([*args, "--repair-journal"]) == 0
    err = capsys.readouterr().err
    aside = re.search(r"the original is at '([^']+)'", err)
    assert aside, err
    assert Path(aside.group(1)).read_bytes() == damaged
    assert f"kept its first {kept_lines} line(s) ({offset} bytes)" in err
    assert find_damage(journal) is None
    study = _load(journal)
    complete = [(t.number, t.values) for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete[: len(before)] == before  # the readable trials, as they were
    assert len(complete) == 3


# -- 2. credentials in tracking URIs -------------------------------------------------------


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-http")
    server = MlflowServer(
        backend_uri=fresh_mlflow_uri(tmp_path_factory, folder),
        artifacts=folder / "artifacts",
        log_path=folder / "server.log",
    )
    try:
        server.start()
        yield server, folder
    finally:
        server.stop()


def _files_with(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_tracking_uri_password_is_masked_everywhere(http_server, here, capsys):
    server, server_folder = http_server
    folder, _ = here
    secret_uri = f"http://mixuser:{SECRET}@127.0.0.1:{server.port}"
    masked = f"http://mixuser:***@127.0.0.1:{server.port}"
    assert study_cli.main([*TINY, "--trials", "1", "--tracking-uri", secret_uri]) == 0
    out = capsys.readouterr()
    assert SECRET not in out.err + out.out
    assert masked in out.err
    best = json.loads((folder / "results/studies" / STUDY / "best.json").read_text())
    assert best["mlflow_tracking_uri"] == masked
    study = _load(folder / "results/optuna.journal")
    assert study.user_attrs["mlflow_tracking_uri"] == masked

    out_dir = folder / "reports"
    journal = str(folder / "results/optuna.journal")
    argv = ["--study", STUDY, "--storage", journal, "--out", str(out_dir)]
    assert report.main([*argv, "--tracking-uri", secret_uri]) == 0
    markdown = (out_dir / "report.md").read_text()
    assert f"MLflow `{masked}`" in markdown
    assert load.load_study_data(STUDY, journal, tracking_uri=secret_uri).tracking_uri == masked
    # without --tracking-uri the report cannot use the masked URI, and says what to pass
    assert report.main(argv) == 0
    assert "pass --tracking-uri with the password" in capsys.readouterr().err
    # nothing on disk holds the password: results, reports, the server's store and artifacts
    assert _files_with(folder, SECRET) == []
    assert _files_with(server_folder, SECRET) == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://mix:pw1@db:5432/optuna", "postgresql+psycopg://mix:***@db:5432/optuna"),
        ("http://user:pw1@host:5000", "http://user:***@host:5000"),
        ("https://tokenpw1@host/mlflow", "https://***@host/mlflow"),
        ("postgresql://u@h/db?sslmode=require&password=pw1", "postgresql://u@h/db?sslmode=require&password=***"),
        ("sqlite:////abs/optuna.db", "sqlite:////abs/optuna.db"),
        ("results/optuna.journal", "results/optuna.journal"),
    ],
)  # fmt: skip
def test_mask_url_hides_every_password_and_keeps_the_rest(url, shown):
    from benchmark.urls import mask_text, mask_url

    assert mask_url(url) == shown
    if ":pw1@" in url:
        message = f"API request to {url}/api/2.0 failed"
        assert mask_text(message) == f"API request to {shown}/api/2.0 failed"


def test_postgres_tracking_uri_on_a_closed_port_fails_fast_and_masked():
    uri = f"postgresql+psycopg://mix:{SECRET}@127.0.0.1:{free_port()}/mlflow"
    start = time.monotonic()
    with pytest.raises(tracking.TrackingError) as caught:
        tracking.connect(uri)
    assert time.monotonic() - start < 20  # MLflow alone retries for about 116 s
    message = str(caught.value)
    assert "cannot reach MLflow tracking database" in message
    assert SECRET not in message and "mix:***@127.0.0.1" in message


# -- 6. exit 2, not a traceback ------------------------------------------------------------


def test_port_that_is_not_a_number_exits_2_with_the_password_hidden(here, capsys):
    url = f"postgresql+psycopg://a:{SECRET}@h:notaport/db"
    assert study_cli.main([*TINY, "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "the port is not a number" in err and "a:***@h:notaport" in err
    assert SECRET not in err
    assert not Path("results").exists()


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_in_memory_sqlite_is_refused(here, capsys, extra):
    assert study_cli.main([*TINY, "--storage", "sqlite://", *extra]) == 2
    assert "in-memory SQLite database" in capsys.readouterr().err
    assert not Path("results").exists()


def _read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def test_read_only_results_exits_2_and_changes_nothing(finished, here):
    folder, uri = here
    shutil.copytree(finished[0].parent, folder / "results")
    journal = folder / "results/optuna.journal"
    before = journal.read_bytes()
    _read_only(folder / "results")
    try:
        out = _cli([*TINY, "--trials", "3", "--tracking-uri", uri], folder, unprivileged=True)
    finally:
        (folder / "results").chmod(0o755)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "cannot write to journal file 'results/optuna.journal'" in out.stderr
    assert journal.read_bytes() == before


def test_read_only_results_with_storage_elsewhere_exits_2_before_any_mlflow_run(here):
    folder, uri = here
    (folder / "db").mkdir()
    storage = f"sqlite:///{folder / 'db' / 'optuna.db'}"
    (folder / "results").mkdir()
    _read_only(folder / "results")
    try:
        out = _cli([*TINY, "--storage", storage, "--tracking-uri", uri], folder, unprivileged=True)
    finally:
        (folder / "results").chmod(0o755)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert "cannot write to 'results/studies/gan-ring8-wasserstein@sqlite-optuna-" in out.stderr
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(ids) == []  # no parent run left RUNNING (none at all)
    assert optuna.study.get_all_study_names(storage) == []


def test_report_into_an_unwritable_folder_exits_2(finished, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = ["--study", STUDY, "--storage", str(finished[0]), "--tracking-uri", finished[1]]
    assert report.main([*argv, "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write the report to '{blocker}'" in err
    assert "pass --out a writable folder" in err


# -- 8. MLflow's schema-creation race --------------------------------------------------------


def test_processes_opening_a_fresh_mlflow_store_at_once_all_succeed(tmp_path):
    """Three processes open one fresh SQLite tracking store at the same instant (released
    together through their stdin), as invocations started at once in a fresh folder do."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (
        "import sys\nfrom benchmark import tracking\nprint('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "try:\n    t = tracking.connect(sys.argv[1])\nexcept tracking.TrackingError as e:\n"
        "    print(e)\n    sys.exit(2)\nprint('ok', t.experiment_id)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, uri],
            cwd=tmp_path,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 3, outputs
    assert len({o.split()[-1] for o in outputs}) == 1  # one experiment, shared


# -- 9. best.json per storage ----------------------------------------------------------------


def test_same_study_name_on_two_storages_keeps_two_best_json(here, capsys):
    folder, uri = here
    assert study_cli.main([*TINY, "--trials", "1", "--tracking-uri", uri]) == 0
    first = folder / "results/studies" / STUDY / "best.json"
    before = first.read_bytes()
    other = "sqlite:///results/other.db"
    assert study_cli.main([*TINY, "--trials", "1", "--tracking-uri", uri, "--storage", other]) == 0
    assert first.read_bytes() == before
    assert json.loads(before)["storage"] == "results/optuna.journal"
    (second,) = (folder / "results/studies").glob(f"{STUDY}@sqlite-other-*/best.json")
    doc = json.loads(second.read_text())
    assert doc["storage"] == other
    assert f"written to {second.relative_to(folder)}" in capsys.readouterr().out
    # the versions the study ran with are recorded beside its result
    for name in ("torch", "optuna", "mlflow"):
        assert doc["environment"][f"version.{name}"] == metadata.version(name)


def test_storage_in_a_missing_folder_outside_results_is_refused_with_the_fix(here, capsys):
    assert study_cli.main([*TINY, "--storage", "sqlite:///newdir/sub/x.db"]) == 2
    err = capsys.readouterr().err
    assert "folder 'newdir/sub' of --storage 'sqlite:///newdir/sub/x.db' does not exist" in err
    assert "mkdir -p newdir/sub" in err
    assert not Path("newdir").exists()
    assert study_cli.main([*TINY, "--storage", "elsewhere/x.journal"]) == 2
    assert "mkdir -p elsewhere" in capsys.readouterr().err
    assert not Path("elsewhere").exists()


# -- 10. a dead tracking server behind benchmark.report ----------------------------------------


def _study_with_tracking(path: Path, uri: str) -> str:
    url = f"sqlite:///{path}"
    study = optuna.create_study(storage=url, study_name="dead", direction="minimize")
    study.set_user_attr("space", "gan")
    study.set_user_attr("objective", "wasserstein")
    study.set_user_attr("settings", {"epochs": 1, "dataset": "ring8", "seeds": 1})
    study.set_user_attr("mlflow_tracking_uri", uri)
    for i, w1 in enumerate((1.5, 1.2, 1.9)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-4 * (i + 1)},
                distributions={"lr": FloatDistribution(1e-5, 1e-2, log=True)},
                value=w1,
                user_attrs={
                    "seeds": [{"seed": 0, "status": "finished", "w1": w1}],
                    "config": {"trainable": "gan", "params": {}},
                    "mlflow_run_id": "0" * 32,
                },
            )
        )
    return url


@pytest.mark.parametrize("server", ["closed-port", "silent"])
def test_report_with_a_dead_tracking_server_falls_back_at_once(tmp_path, capsys, server):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1] if server == "silent" else free_port()
        url = _study_with_tracking(tmp_path / "s.db", f"http://127.0.0.1:{port}")
        start = time.monotonic()
        code = report.main(["--study", "dead", "--storage", url, "--out", str(tmp_path / "dead")])
        took = time.monotonic() - start
    assert code == 0
    err = capsys.readouterr().err
    assert f"MLflow tracking store http://127.0.0.1:{port} is not reachable" in err
    assert "falling back to the Optuna storage" in err
    assert took < 60, took  # the probe waits 5 s; MLflow alone retried for 257 s
    assert (tmp_path / "dead" / "report.md").exists()
    assert np.isclose(float(_best_w1(tmp_path / "dead" / "summary.csv")), 1.2)


def _best_w1(path: Path) -> str:
    import csv

    with path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] == "w1"]
    return rows[0]["mean"]


# -- 12. pinned dependencies ------------------------------------------------------------------


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_constraints_pin_every_dependency_at_the_installed_version():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    installed = list(project["dependencies"])  # what README and CI install: ".[dev]"
    for extra in ("dev", "postgres"):
        installed += project["optional-dependencies"][extra]
    optional = [
        line
        for extra, lines in project["optional-dependencies"].items()
        if extra not in ("dev", "postgres")
        for line in lines
    ]
    pins = _pins()
    for line in installed + optional:
        name = canonicalize_name(Requirement(line).name)
        assert name in pins, f"{name} is not pinned in constraints.txt"
    for line in installed:
        name = canonicalize_name(Requirement(line).name)
        assert metadata.version(name) == pins[name], f"{name}: installed != pinned"
    for name in ("torch", "torchvision", "optuna", "mlflow"):
        assert pins[name] == metadata.version(name)


def test_ci_runs_exactly_the_readme_set_up_and_test_commands():
    readme = (REPO / "README.md").read_text()

    def block_after(heading: str) -> list[str]:
        section = readme.split(heading, 1)[1]
        body = section.split("```bash\n", 1)[1].split("```", 1)[0]
        return [ln.strip() for ln in body.splitlines() if ln.strip()]

    set_up = [ln for ln in block_after("## Set up and run") if "pip install" in ln]
    tests = block_after("## Run the tests")
    assert set_up == ['python -m pip install -e ".[dev]" -c constraints.txt']
    ci = [ln.strip() for ln in (REPO / ".ci/run").read_text().splitlines()]
    commands = [ln for ln in ci if ln and not ln.startswith("#")]
    assert [ln for ln in commands if "pip install" in ln] == set_up
    assert [ln for ln in commands if "pytest" in ln] == tests


@pytest.mark.parametrize("population", ["1", "2"])
def test_a_failed_trials_reason_never_quotes_a_password(population, here, monkeypatch, capsys):
    """An error quoting a password-bearing URL (as MLflow's do) is masked in the trial's
    reason and in the log, on the one-trial and the population path."""
    from benchmark.trainables.gan import StandardGAN

    leak = f"postgresql://mixbench:{SECRET}@db.example:5432/mlflow"

    def fail(self):
        raise RuntimeError(f"API request to {leak} failed")

    monkeypatch.setattr(StandardGAN, "train_epoch", fail)
    folder, uri = here
    argv = [*TINY, "--trials", "2", "--population", population, "--tracking-uri", uri]
    study_cli.main(argv)
    err = capsys.readouterr().err
    study = _load(folder / "results" / "optuna.journal")
    reasons = [t.user_attrs.get("reason", "") for t in study.trials]
    assert study.trials and all(t.state == TrialState.FAIL for t in study.trials)
    assert all("API request to postgresql://mixbench:***@db.example" in r for r in reasons)
    assert SECRET not in err and not any(SECRET in r for r in reasons)
