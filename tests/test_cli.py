"""The lienwatch command as an operator meets it: exit codes and one-line reasons."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from lienwatch import prefect_local
from lienwatch.errors import LienwatchError
from tests.landing import landing, ledger

LIENWATCH = shutil.which("lienwatch") or "lienwatch"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LIENWATCH, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
class TestRunCommand:
    def test_missing_feed_exits_non_zero_with_one_line(self, tmp_path):
        """A night that cannot complete exits 2 with exactly one line on stderr, naming the file."""
        data = landing(tmp_path / "in", {"p.csv": ledger("T1,L1,2024-03-01,250.00,payment,,")})
        (data / "borrowers.csv").unlink()
        done = run(
            "run",
            "--data",
            str(data),
            "--db",
            str(tmp_path / "wh.duckdb"),
            "--out",
            str(tmp_path / "out"),
            "--as-of",
            "2024-06-03",
            cwd=tmp_path,
        )
        assert done.returncode == 2
        assert done.stderr.splitlines() == ["lienwatch: borrowers.csv: required feed is missing"]

    def test_completed_night_exits_zero_and_says_where(self, tmp_path):
        """A night with quarantined rows still exits 0 and prints where its outputs are."""
        data = landing(
            tmp_path / "in",
            {
                "p.csv": ledger(
                    "T1,L1,2024-03-01,250.00,payment,,", "T2,L1,2024-02-30,250.00,payment,,"
                )
            },
        )
        done = run(
            "run",
            "--data",
            str(data),
            "--db",
            str(tmp_path / "wh.duckdb"),
            "--out",
            str(tmp_path / "out"),
            "--as-of",
            "2024-06-03",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert "rows_quarantined 1" in done.stdout
        assert f"outputs:   {tmp_path / 'out' / '2024-06-03'}" in done.stdout

    def test_bad_settings_and_bad_date(self, tmp_path):
        """A bad settings value or --as-of stops at once with the key or flag named."""
        (tmp_path / "lienwatch.toml").write_text("[risk]\nreview_capacity = 0\n")
        done = run("run", "--as-of", "2024-06-03", cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.startswith("lienwatch: lienwatch.toml: risk.review_capacity: ")
        (tmp_path / "lienwatch.toml").unlink()
        done = run("run", "--as-of", "2024-13-01", cwd=tmp_path)
        assert (
            done.stderr.strip() == "lienwatch: --as-of: not a date in YYYY-MM-DD form: '2024-13-01'"
        )


class TestLocalServer:
    def test_a_configured_api_is_used_as_it_is(self):
        """With a Prefect API configured (a server, the test harness), no server is started."""
        with (
            temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}),
            prefect_local.local_server() as ready,
        ):
            assert ready is None  # nothing to wait for
            assert PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
        assert prefect_local._server is None

    def test_an_api_in_a_profile_stops_the_early_server(self, tmp_path):
        """A fresh process starts the server before it reads Prefect's settings; when a
        profile configures an API after all, that server is stopped unused and the API is
        used."""
        (tmp_path / "profiles.toml").write_text(
            'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
        )
        code = """
import lienwatch.prefect_local as p
started = []
start = p._start
p._start = lambda: started.append(start()) or started[-1]
with p.local_server() as ready:
    from prefect.settings import PREFECT_API_URL
    print(ready is None, PREFECT_API_URL.value(), len(started), started[0][0].poll() is not None, p._server)
"""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_PROFILES_PATH=str(tmp_path / "profiles.toml"),
            PREFECT_HOME=str(tmp_path / "home"),
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["True", "http://127.0.0.1:9/api", "1", "True", "None"]

    @pytest.mark.parametrize(("configured", "expected"), [(None, "None"), ("60", "60")])
    def test_the_temporary_server_gets_no_heartbeats_unless_asked(
        self, tmp_path, configured, expected
    ):
        """Heartbeats let a server's services mark a crashed run; the temporary server runs
        none, so a local night sends none, unless Prefect's setting asks for them."""
        code = """
import atexit, subprocess, sys
import lienwatch.prefect_local as p
idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.DEVNULL)
atexit.register(idle.kill)
p._start = lambda: (idle, "http://127.0.0.1:9/api")  # stands for the server: nothing here calls it
with p.local_server() as ready:
    from prefect.settings import get_current_settings
    print(ready is not None, get_current_settings().flows.heartbeat_frequency)
"""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["PREFECT_HOME"] = str(tmp_path / "home")
        if configured:
            env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = configured
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["True", expected]

    def test_the_temporary_server_sends_no_usage_statistics_unless_asked(self, tmp_path):
        """Unset, then set after Prefect was imported. In a process of its own: in this one,
        the flow tests' harness (session-wide) may have set Prefect's settings in code."""
        code = """
import os
import prefect.settings
import lienwatch.prefect_local as p
print(p._environment()["PREFECT_SERVER_ANALYTICS_ENABLED"])
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "true"
print(p._environment()["PREFECT_SERVER_ANALYTICS_ENABLED"])
"""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env["PREFECT_HOME"] = str(tmp_path / "home")
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["false", "true"]

    def test_a_server_that_exits_at_start_is_a_clear_error(self):
        process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
        with pytest.raises(LienwatchError, match=r"exited at start \(exit 3\); its port was taken"):
            prefect_local._wait_for(process, "http://127.0.0.1:9/api")


class TestGenerateCommand:
    def test_an_unknown_profile_exits_with_one_line(self, tmp_path):
        done = run("generate", "--out", str(tmp_path / "x"), "--profile", "normal", cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "lienwatch: --profile: one of realistic, stressed, not 'normal'"
        ]
        assert not (tmp_path / "x").exists()

    def test_writes_the_profile_asked_for(self, tmp_path):
        done = run(
            "generate",
            "--out",
            "x",
            "--loans",
            "40",
            "--months",
            "2",
            "--profile",
            "stressed",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert "behaviours: on_time" in done.stdout and "rolling" in done.stdout


class TestDemoLanding:
    """The demo's landing folder gets the sample a day at a time (lienwatch.demo)."""

    def sample(self, root: Path) -> Path:
        days = ("2026-11-18", "2026-11-19", "2026-11-20")
        files = {f"payments_{d}.csv": ledger(f"T{d},L1,{d},250.00,payment,,") for d in days}
        return landing(root, {**files, "history.csv": ledger("T0,L1,2024-03-01,250.00,payment,,")})

    def test_stage_holds_the_days_before_the_first_night(self, tmp_path):
        from datetime import date

        from lienwatch import demo

        sample = self.sample(tmp_path / "sample")
        staged = demo.stage(sample, tmp_path / "var" / "demo-landing", date(2026, 11, 19))
        assert sorted(p.name for p in staged.iterdir() if p.is_file()) == [
            "borrowers.csv",
            "loans.csv",
        ]
        assert sorted(p.name for p in (staged / "payments").iterdir()) == [
            "history.csv",
            "payments_2026-11-18.csv",
        ]
        assert demo.release(sample, staged, date(2026, 11, 19)) == ["payments_2026-11-19.csv"]
        assert demo.release(sample, staged, date(2026, 11, 19)) == []
        assert demo.release(sample, staged, date(2026, 11, 20)) == ["payments_2026-11-20.csv"]
        # A new demo starts again from the sample: what a night added is gone.
        (staged / "payments" / "stray.csv").write_text(ledger())
        demo.stage(sample, staged, date(2026, 11, 19))
        assert not (staged / "payments" / "stray.csv").exists()
        assert (sample / "payments" / "payments_2026-11-20.csv").exists()

    @pytest.mark.slow
    def test_each_night_after_the_first_takes_in_a_new_day(self, tmp_path):
        """The first night takes in the history; nights 2 and 3 one day's payment file each."""
        from lienwatch.generate import generate

        sample = tmp_path / "sample"
        generate(sample, loans=400, months=3, seed=2)
        for day in ("2026-11-19", "2026-11-20"):
            assert (sample / "payments" / f"payments_{day}.csv").exists()
        (tmp_path / "lienwatch.toml").write_text(
            f'[paths]\ndata = "{sample}"\ndb = "var/lienwatch.duckdb"\nout = "var/out"\n'
        )
        done = run("demo", "--nights", "3", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        ingested = [line.strip() for line in done.stdout.splitlines() if "ingest:" in line]
        assert len(ingested) == 3
        assert not ingested[0].startswith("ingest: files_loaded 1,")
        assert ingested[1].startswith("ingest: files_loaded 1,")
        assert ingested[2].startswith("ingest: files_loaded 1,")
        assert "night 2026-11-20" in done.stdout
        assert (tmp_path / "var" / "demo-landing" / "payments" / "payments_2026-11-20.csv").exists()
