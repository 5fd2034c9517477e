"""The nightly flow on a real Prefect server, the two ways an installation runs it: served
by ``lienwatch serve``, and deployed from ``prefect.yaml`` to a process work pool.

Either way Prefect loads the flow from its entrypoint for each run and validates the run's
parameters against the flow's signature before the first task: a run with no ``as_of``
(tonight) and a run with one (``--param as_of=...``) must both complete, publish the
night's summary and record the night in the warehouse. And the server's scheduler plans
the served deployment's coming nights.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import duckdb
import pytest

from lienwatch.settings import Settings, load_settings
from tests.landing import landing, ledger

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]
LIENWATCH = [shutil.which("lienwatch", path=Path(sys.executable).parent) or "lienwatch"]
DEPLOYMENT = "lienwatch-nightly/lienwatch-nightly"  # flow name / deployment name
AS_OF = date(2024, 6, 3)
ZONE = ZoneInfo(Settings().schedule.timezone)  # the settings files below keep the default

SERVER_START_SECONDS = 180  # a fresh database is migrated first; a loaded 2-core machine is slow
SERVE_START_SECONDS = 180  # `lienwatch serve` imports the night's code before it registers
RUN_SECONDS = 300  # from the trigger to a terminal state, the flow run's process start included
PLAN_SECONDS = 60  # for the server's scheduler to plan a new deployment's runs (every 5 s)
CLI_SECONDS = 120  # one `prefect ...` command
STOP_SECONDS = 20  # for a process to exit after SIGTERM, then again after SIGKILL


# ----------------------------------------------------------------------------- processes


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux); [] once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _started_at(pid: int) -> int | None:
    """When the process started (clock ticks after boot), which tells it from a later one
    given the same pid; None once it has exited."""
    fields = _stat(pid)
    return int(fields[19]) if fields and fields[0] != "Z" else None


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


class Spawned:
    """A command in a session of its own, its output in a file."""

    def __init__(
        self, name: str, args: list[str], *, env: dict[str, str], cwd: Path, log: Path
    ) -> None:
        self.name, self.log = name, log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}), last {lines} lines:\n" + "\n".join(
            text.splitlines()[-lines:]
        )

    def _family(self) -> dict[int, int]:
        """The command and every process below it now, each with its start time."""
        pids = [self.process.pid, *_descendants(self.process.pid)]
        return {pid: start for pid in pids if (start := _started_at(pid)) is not None}

    def stop(self) -> None:
        """Stop the command and every process it started, its flow runs too (a worker starts
        each in a session of its own): SIGTERM, then SIGKILL what is left. The family is
        looked up again before each signal, for the processes started meanwhile, and
        remembered, for those an exiting parent left to init. Each process gets each signal
        once: Prefect's commands take a second one as the order to kill at once."""
        family: dict[int, int] = {}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            family |= self._family()
            for pid, start in family.items():
                if _started_at(pid) == start:  # the same process, not a new one with its pid
                    with suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
            if self._wait_gone(family):
                return
        left = [pid for pid, start in family.items() if _started_at(pid) == start]
        assert not left, f"{self.name}: processes {left} still running after SIGKILL"

    def _wait_gone(self, family: dict[int, int]) -> bool:
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            self.process.poll()  # reaps the command, which stays a zombie until then
            if all(_started_at(pid) != start for pid, start in family.items()):
                self.process.wait()  # it may have exited since the poll: a zombie, reaped now
                return True
            time.sleep(0.2)
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    """A running ``prefect server start``, and the commands the tests started against it."""

    api: str
    env: dict[str, str]  # for the commands that talk to it: Prefect's CLI, lienwatch, a worker
    started: list[Spawned] = field(default_factory=list)  # the server first

    def spawn(
        self,
        name: str,
        args: list[str],
        *,
        cwd: Path,
        logs: Path,
        env: dict[str, str] | None = None,
    ) -> Spawned:
        """Start a command (the caller stops it); its output goes to ``logs/<name>.log``."""
        spawned = Spawned(
            name, args, env={**self.env, **(env or {})}, cwd=cwd, log=logs / f"{name}.log"
        )
        self.started.append(spawned)
        return spawned

    def logs(self) -> str:
        """The end of every log, the newest command's first: for a failure's message."""
        return "\n".join(spawned.tail() for spawned in reversed(self.started))

    def prefect(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
        """Run one Prefect command to completion: its output, or the test fails with it."""
        done = subprocess.run(
            [*PREFECT, *args],
            env={**self.env, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_SECONDS,
        )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            pytest.fail(
                f"prefect {' '.join(args)} exited {done.returncode}:\n{output}\n" + self.logs()
            )
        return output

    @contextmanager
    def client(self) -> Iterator[Any]:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with (
            temporary_settings(updates={PREFECT_API_URL: self.api}),
            get_client(sync_client=True) as client,
        ):
            yield client

    def forget_deployments(self) -> None:
        """Delete every deployment, so that the next test registers its own."""
        with self.client() as client:
            for deployment in client.read_deployments():
                client.delete_deployment(deployment.id)


def _environment(home: Path) -> dict[str, str]:
    """This process's environment without its Prefect settings, with this checkout's code
    first on the path and no usage statistics sent anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    path = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {
        **env,
        "PYTHONPATH": os.pathsep.join(path),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``prefect server start`` on a free local port, with its own home and SQLite database."""
    root = tmp_path_factory.mktemp("prefect-server")
    base = _environment(root / "home")
    server_env = {
        **base,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / 'prefect.db'}",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    tried: list[Spawned] = []
    try:
        for attempt in range(3):  # the free port may be taken before the server binds it
            port = _free_port()
            api = f"http://127.0.0.1:{port}/api"
            process = Spawned(
                "prefect-server",
                [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=server_env,
                cwd=root,
                log=root / f"server-{attempt}.log",
            )
            tried.append(process)
            deadline = time.monotonic() + SERVER_START_SECONDS
            while process.alive() and not _healthy(api) and time.monotonic() < deadline:
                time.sleep(0.25)
            if _healthy(api):
                break
            if process.alive():
                pytest.fail(
                    f"Prefect server did not answer within {SERVER_START_SECONDS} s\n"
                    + process.tail()
                )
        else:
            pytest.fail(
                "Prefect server exited at start three times\n" + "\n".join(p.tail() for p in tried)
            )
        yield Server(api=api, env={**base, "PREFECT_API_URL": api}, started=[process])
    finally:
        for process in tried:
            process.stop()


# ----------------------------------------------------------------------------- nights


def _landing(root: Path) -> Path:
    return landing(
        root,
        {
            "p1.csv": ledger(
                "T1,L1,2024-03-01,250.00,payment,,", "T2,L2,2024-03-01,400.00,payment,,"
            ),
            "p2.csv": ledger("T3,L1,2024-04-01,250.00,payment,,"),
        },
    )


def _settings_file(path: Path, cron: str = "0 2 * * *") -> Path:
    """Letters as a dry run on one process: the night's decisions without rendering PDFs;
    every day a business day."""
    path.write_text(
        f'[letters]\nrender = false\nrender_workers = 1\n\n[schedule]\ncron = "{cron}"\n'
        # tonight's night runs whatever day the suite runs on
        "business_days_only = false\n",
        encoding="utf-8",
    )
    return path


def _today(config: Path) -> date:
    """The night a run without ``as_of`` is for: today in the schedule's time zone."""
    return datetime.now(ZoneInfo(load_settings(config).schedule.timezone)).date()


def _trigger(server: Server, cwd: Path, *params: str) -> UUID:
    """``prefect deployment run`` as an operator types it; the id of the flow run created."""
    args = ["deployment", "run", DEPLOYMENT]
    for param in params:
        args += ["--param", param]
    output = server.prefect(*args, cwd=cwd)
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found, f"no flow run id in:\n{output}"
    return UUID(found.group(1))


def _finish(server: Server, run_id: UUID, runner: Spawned) -> Any:
    """The flow run once it is in a terminal state (or the test fails, with the logs)."""
    deadline = time.monotonic() + RUN_SECONDS
    with server.client() as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            if not runner.alive():
                pytest.fail(
                    f"{runner.name} exited ({runner.process.returncode}) while flow "
                    f"run {run_id} was {run.state_name}\n" + server.logs()
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"flow run {run_id} still {run.state_name} after {RUN_SECONDS} s\n"
                    + server.logs()
                )
            time.sleep(0.5)


def _run_logs(server: Server, run_id: UUID) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with server.client() as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return "\n".join(f"{log.timestamp:%H:%M:%S} {log.message}" for log in logs[-40:])


def assert_night(server: Server, run: Any, db: Path, nights: set[date]) -> date:
    """The run completed one of ``nights``: it published the night's summary and figures as
    artifacts, and the warehouse records the night as completed. Returns the night."""
    assert run.state.is_completed(), (
        f"flow run {run.name} ({run.id}) ended {run.state_name}: {run.state.message}\n"
        f"--- its logs on the server:\n{_run_logs(server, run.id)}\n" + server.logs()
    )
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with server.client() as client:
        artifacts = {
            a.key: a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
        }
    published = [day for day in nights if f"night-{day}" in artifacts]
    assert published, f"run {run.id} published no night-{sorted(nights)}: {list(artifacts)}"
    night = published[0]
    summary = artifacts[f"night-{night}"]
    assert summary.type == "markdown"
    assert f"night {night} (" in summary.data and "): completed" in summary.data, summary.data
    figures = artifacts.get(f"night-{night}-figures")
    assert figures is not None and figures.type == "table", list(artifacts)
    assert '"step": "ingest"' in figures.data and '"step": "review"' in figures.data, figures.data

    with duckdb.connect(str(db), read_only=True) as con:
        statuses = [
            status
            for (status,) in con.execute(
                "SELECT status FROM runs WHERE as_of_date = ?", [night]
            ).fetchall()
        ]
    assert "completed" in statuses, f"the warehouse's runs for {night}: {statuses}"
    return night


def _two_nights(server: Server, cwd: Path, db: Path, config: Path, runner: Spawned) -> None:
    """A run without ``as_of`` (tonight), then one for AS_OF: each completes its night."""
    before = _today(config)
    tonight = _finish(server, _trigger(server, cwd), runner)
    assert_night(server, tonight, db, {before, _today(config)})

    dated = _finish(server, _trigger(server, cwd, f"as_of={AS_OF.isoformat()}"), runner)
    assert assert_night(server, dated, db, {AS_OF}) == AS_OF


# ----------------------------------------------------------------------------- lienwatch serve


@dataclass
class Served:
    process: Spawned
    deployment: Any
    registered: float  # time.monotonic() when the deployment was found
    folder: Path
    data: Path
    db: Path
    out: Path
    config: Path


@pytest.fixture(scope="class")
def served(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`lienwatch serve` started from an operator's folder, once its deployment is
    registered. Its schedule is daily, twelve hours away from now: the server plans
    its runs, and none of them is due while a test's run uses the warehouse."""
    root = tmp_path_factory.mktemp("serve")
    folder = root / "servicer"
    folder.mkdir()
    data, db, out = _landing(root / "landing"), root / "wh.duckdb", root / "out"
    hour = (datetime.now(ZONE).hour + 12) % 24
    config = _settings_file(folder / "lienwatch.toml", cron=f"0 {hour} * * *")
    process = server.spawn(
        "lienwatch-serve",
        [
            *LIENWATCH,
            "serve",
            "--data",
            str(data),
            "--db",
            str(db),
            "--out",
            str(out),
            "--config",
            str(config),
        ],
        cwd=folder,
        logs=root,
        env={"PREFECT_RUNNER_POLL_FREQUENCY": "1"},
    )
    try:
        from prefect.exceptions import ObjectNotFound

        deadline = time.monotonic() + SERVE_START_SECONDS
        with server.client() as client:
            while True:
                with suppress(ObjectNotFound):
                    deployment = client.read_deployment_by_name(DEPLOYMENT)
                    break
                if not process.alive() or time.monotonic() > deadline:
                    pytest.fail("`lienwatch serve` registered no deployment\n" + server.logs())
                time.sleep(0.5)
        yield Served(process, deployment, time.monotonic(), folder, data, db, out, config)
    finally:
        process.stop()
        server.forget_deployments()


class TestServe:
    def test_deployment_has_the_settings_schedule_and_folders(self, served: Served):
        """The deployment runs on the settings' cron and time zone, over the given folders."""
        schedule = load_settings(served.config).schedule
        assert [(s.schedule.cron, s.schedule.timezone) for s in served.deployment.schedules] == [
            (schedule.cron, schedule.timezone)
        ]
        assert served.deployment.parameters == {
            "data": str(served.data.resolve()),
            "db": str(served.db.resolve()),
            "out": str(served.out.resolve()),
            "config": str(served.config.resolve()),
        }

    def test_triggered_runs_complete_their_nights(self, server: Server, served: Served):
        """`prefect deployment run`, without and with `--param as_of=`, runs a whole night."""
        _two_nights(server, served.folder, served.db, served.config, served.process)

    def test_the_server_plans_the_scheduled_nights(self, server: Server, served: Served):
        """The server's scheduler plans the coming nights of the schedule, for the served
        process to run (it failed to insert them with SQLAlchemy 2.1: pyproject pins 2.0)."""
        hour = int(load_settings(served.config).schedule.cron.split()[1])
        planned = _planned_runs(
            server, served.deployment.id, until=served.registered + PLAN_SECONDS
        )
        assert planned, (
            f"no scheduled runs {PLAN_SECONDS} s after the deployment was registered "
            "(the scheduler's errors are in the server's log)\n" + server.logs()
        )
        for run in planned:
            start = run.expected_start_time.astimezone(ZONE)
            assert (start.hour, start.minute) == (hour, 0), start
            assert run.parameters == served.deployment.parameters


def _planned_runs(server: Server, deployment_id: UUID, until: float) -> list[Any]:
    """The deployment's runs its schedule created, once there are any or at ``until``
    (time.monotonic()): the scheduler runs every few seconds."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    with server.client() as client:
        while True:
            runs = client.read_flow_runs(deployment_filter=of_deployment)
            planned = [run for run in runs if run.auto_scheduled]
            if planned or time.monotonic() > until:
                return planned
            time.sleep(1)


# ----------------------------------------------------------------------------- prefect.yaml


def test_deployment_from_prefect_yaml_runs_on_a_process_worker(server: Server, tmp_path: Path):
    """The repository's prefect.yaml deploys to the process work pool it names, and a worker
    runs the deployment's runs, without and with `--param as_of=`, to completion."""
    data, db, out = _landing(tmp_path / "landing"), tmp_path / "wh.duckdb", tmp_path / "out"
    config = _settings_file(tmp_path / "lienwatch.toml")
    elsewhere = tmp_path / "worker"  # the worker's own folder is not the checkout
    elsewhere.mkdir()
    worker = None
    try:
        server.prefect("work-pool", "create", "lienwatch", "--type", "process", cwd=tmp_path)
        worker = server.spawn(
            "worker",
            [*PREFECT, "worker", "start", "--pool", "lienwatch", "--install-policy", "never"],
            cwd=elsewhere,
            logs=tmp_path,
            # prefect.yaml's pull step starts each run in LIENWATCH_HOME: this checkout
            env={"LIENWATCH_HOME": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1"},
        )
        # The installation's folders, as a servicer edits them into prefect.yaml's parameters.
        server.prefect(
            "--no-prompt",
            "deploy",
            "--name",
            "lienwatch-nightly",
            "--param",
            f"data={data}",
            "--param",
            f"db={db}",
            "--param",
            f"out={out}",
            "--param",
            f"config={config}",
            cwd=REPO,
        )
        _two_nights(server, tmp_path, db, config, worker)
    finally:
        if worker is not None:
            worker.stop()
        server.forget_deployments()
        with server.client() as client:
            client.delete_work_pool("lienwatch")
