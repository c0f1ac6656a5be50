"""Pytest harness for the Magnetar broker.

The `Broker` class starts `magnetar standalone` on free ports (port 0) with a fresh data
directory, reads the one machine-readable `{"event":"listening",...}` line from stdout, waits
for `GET /health` to answer 200, and always stops the process at the end of the test (SIGTERM,
then SIGKILL after a timeout).  Every wait loop is bounded in count and time.

Tests never order events by sleeping: they wait for an observable condition with `wait_until`
(a bounded poll), e.g. `subscription_backlog` for "the client's grouped acks reached the
broker". A `time.sleep` left in a test says why in a comment: a time passing is the subject
(an expiry on the real clock), an observation window for something that must NOT happen, a
pace, or a child process waiting to be killed.

Options:
  --bootstrap HOST:PORT   run the Kafka data-path tests against an external broker instead
                          of starting Magnetar (tests that need the binary are skipped).
  --flavor NAME           name of the external broker (`tansu`, `kafka`, ...): tests marked
                          `not_on(NAME)` are skipped for it.
  --magnetar-bin PATH     binary to test (default: $MAGNETAR_BIN or target/debug/magnetar).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, TypeVar

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def wait_until(cond: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1,
               on_timeout: Optional[Callable[[], str]] = None) -> T:
    """Polls `cond` until it returns a truthy value (returned); AssertionError after `timeout_s`.
    Exceptions raised by `cond` count as "not yet" (the last one is reported)."""
    deadline = time.monotonic() + timeout_s
    last_exc: Optional[BaseException] = None
    for _ in range(max(1, int(timeout_s / interval_s) + 10)):
        try:
            value = cond()
            if value:
                return value
            last_exc = None
        except Exception as e:  # noqa: BLE001 - "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    extra = on_timeout() if on_timeout else ""
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what}"
        + (f" (last error: {last_exc!r})" if last_exc else "")
        + (f"\n{extra}" if extra else "")
    )


def subscription_backlog(broker: "Broker", topic: str, subscription: str) -> Optional[int]:
    """`msgBacklog` of a Pulsar subscription from the admin topic stats (None while the topic
    or the subscription is not there): what tells that a client's grouped acks arrived."""
    path = topic.replace("persistent://", "persistent/")
    r = requests.get(f"http://{broker.http}/admin/v2/{path}/stats", timeout=10)
    if r.status_code != 200:
        return None
    sub = r.json().get("subscriptions", {}).get(subscription)
    return None if sub is None else int(sub["msgBacklog"])


def wait_backlog(broker: "Broker", topic: str, subscription: str, backlog: int,
                 timeout_s: float = 20.0) -> None:
    """Waits (bounded) until the subscription's backlog is `backlog`."""
    wait_until(lambda: subscription_backlog(broker, topic, subscription) == backlog, timeout_s,
               f"the backlog of {subscription!r} on {topic} to be {backlog}",
               interval_s=0.05,
               on_timeout=lambda: f"backlog: {subscription_backlog(broker, topic, subscription)}")

STARTUP_TIMEOUT_S = float(os.environ.get("MAGNETAR_TEST_STARTUP_TIMEOUT_S", "30"))
HEALTH_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
STDERR_TAIL_LINES = 60


# --------------------------------------------------------------------------------------------
# options and markers


def pytest_addoption(parser):
    group = parser.getgroup("magnetar")
    group.addoption(
        "--bootstrap",
        default=None,
        help="HOST:PORT of an external Kafka-compatible broker (differential run)",
    )
    group.addoption(
        "--flavor",
        default=None,
        help="name of the external broker for not_on(...) markers, e.g. tansu",
    )
    group.addoption(
        "--magnetar-bin",
        default=None,
        help="path of the magnetar binary (default $MAGNETAR_BIN or target/debug/magnetar)",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "binary: needs the magnetar binary itself (skipped with --bootstrap)",
    )
    config.addinivalue_line(
        "markers",
        "not_on(flavor, reason): skip when running against the named external broker",
    )
    config.addinivalue_line(
        "markers",
        "magnetar_only(reason): Magnetar-specific behaviour (Pulsar names, config); "
        "skipped with --bootstrap",
    )


def pytest_collection_modifyitems(config, items):
    external = config.getoption("--bootstrap")
    flavor = config.getoption("--flavor")
    for item in items:
        if external:
            if item.get_closest_marker("binary"):
                item.add_marker(pytest.mark.skip(reason="needs the magnetar binary"))
                continue
            m = item.get_closest_marker("magnetar_only")
            if m:
                reason = m.args[0] if m.args else "magnetar-specific"
                item.add_marker(pytest.mark.skip(reason=f"magnetar only: {reason}"))
                continue
        for m in item.iter_markers("not_on"):
            if flavor and m.args and m.args[0] == flavor:
                reason = m.args[1] if len(m.args) > 1 else m.kwargs.get("reason", "")
                item.add_marker(pytest.mark.skip(reason=f"not on {flavor}: {reason}"))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _test_failed(request) -> bool:
    for when in ("setup", "call"):
        rep = getattr(request.node, "rep_" + when, None)
        if rep is not None and rep.failed:
            return True
    return False


# --------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for config files that need one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def magnetar_bin(config=None) -> Path:
    opt = config.getoption("--magnetar-bin") if config is not None else None
    path = opt or os.environ.get("MAGNETAR_BIN") or str(REPO_ROOT / "target" / "debug" / "magnetar")
    return Path(path)


def tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "<no stderr file>"
    return "\n".join(data[-lines:])


def wait_tcp(host: str, port: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    for _ in range(1000):
        if time.monotonic() > deadline:
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class BrokerStartError(RuntimeError):
    pass


class Broker:
    """One `magnetar standalone` process over a data directory that outlives restarts."""

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        env: Optional[Dict[str, str]] = None,
        extra_args: Iterable[str] = (),
        data_dir: Optional[Path] = None,
    ):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(data_dir) if data_dir else self.workdir / "data"
        self.env_overrides = dict(env or {})
        self.extra_args = list(extra_args)
        self.proc: Optional[subprocess.Popen] = None
        self.generation = 0
        self.kafka: Optional[str] = None
        self.pulsar: Optional[str] = None
        self.http: Optional[str] = None
        self.listening: Optional[dict] = None
        self.schema_registry: Optional[str] = None
        self.stderr_path: Optional[Path] = None
        self.stdout_path: Optional[Path] = None
        self.exit_codes: List[int] = []
        self._stdout_thread: Optional[threading.Thread] = None

    # -- command line

    def command(self, ports: Optional[Dict[str, int]] = None) -> List[str]:
        ports = ports or {}
        cmd = [
            str(self.binary),
            "standalone",
            "--data-dir",
            str(self.data_dir),
            "--bind",
            "127.0.0.1",
        ]
        if "--config" not in self.extra_args or ports:
            cmd += [
                "--kafka-port",
                str(ports.get("kafka", 0)),
                "--pulsar-port",
                str(ports.get("pulsar", 0)),
                "--http-port",
                str(ports.get("http", 0)),
                "--schema-registry-port",
                str(ports.get("schema_registry", 0)),
            ]
        return cmd + self.extra_args

    def process_env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.env_overrides)
        return env

    # -- lifecycle

    def start(self, ports: Optional[Dict[str, int]] = None, cmd: Optional[List[str]] = None) -> "Broker":
        if not self.binary.exists():
            raise BrokerStartError(
                f"magnetar binary not found at {self.binary}: build it with "
                "`cargo build -p magnetar` or set MAGNETAR_BIN"
            )
        self.generation += 1
        self.stderr_path = self.workdir / f"broker-{self.generation}.stderr"
        self.stdout_path = self.workdir / f"broker-{self.generation}.stdout"
        stderr_f = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            cmd or self.command(ports),
            stdout=subprocess.PIPE,
            stderr=stderr_f,
            stdin=subprocess.DEVNULL,
            env=self.process_env(),
            cwd=str(self.workdir),
        )
        stderr_f.close()
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stdout_thread = threading.Thread(
            target=_pump_stdout, args=(self.proc.stdout, self.stdout_path, lines), daemon=True
        )
        self._stdout_thread.start()
        try:
            self.listening = self._read_listening_line(lines)
            self.kafka = self.listening["kafka"]
            self.pulsar = self.listening.get("pulsar")
            self.http = self.listening.get("http")
            self.schema_registry = self.listening.get("schema_registry")
            self._wait_health()
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def _read_listening_line(self, lines: "queue.Queue[Optional[str]]") -> dict:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        seen = []
        for _ in range(10_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and lines.empty():
                    break
                continue
            if line is None:  # stdout closed
                break
            seen.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("event") == "listening":
                for key in ("kafka", "pulsar", "http"):
                    assert key in obj, f"listening line lacks {key!r}: {line!r}"
                return obj
        try:
            rc = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            rc = None
        raise BrokerStartError(
            f"no listening line (timeout {STARTUP_TIMEOUT_S}s, exit code {rc}); "
            f"stdout: {seen[-10:]!r}\nstderr tail:\n{tail(self.stderr_path)}"
        )

    def _wait_health(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        last = None
        for _ in range(400):
            if time.monotonic() > deadline:
                break
            if self.proc.poll() is not None:
                raise BrokerStartError(
                    f"broker exited with {self.proc.returncode} before /health answered\n"
                    f"{tail(self.stderr_path)}"
                )
            try:
                r = requests.get(f"http://{self.http}/health", timeout=1.0)
                last = r.status_code
                if r.status_code == 200:
                    return
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        raise BrokerStartError(f"/health not 200 within {HEALTH_TIMEOUT_S}s (last: {last})")

    def stop(self, check: bool = True, timeout_s: float = STOP_TIMEOUT_S) -> Optional[int]:
        """SIGTERM, wait, SIGKILL after `timeout_s`. Returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                self.exit_codes.append(proc.returncode)
                if check:
                    raise AssertionError(
                        f"broker did not stop within {timeout_s}s of SIGTERM\n"
                        f"{tail(self.stderr_path)}"
                    )
                return proc.returncode
        self._join_stdout()
        self.exit_codes.append(proc.returncode)
        if check:
            assert proc.returncode == 0, (
                f"broker exited with {proc.returncode} after SIGTERM\n{tail(self.stderr_path)}"
            )
        return proc.returncode

    def kill9(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait(timeout=10)
        self._join_stdout()
        self.exit_codes.append(proc.returncode)

    def restart(self, same_ports: bool = False, env: Optional[Dict[str, str]] = None) -> "Broker":
        """Graceful stop (asserting exit 0) and start again on the same data directory."""
        ports = self.ports() if same_ports else None
        self.stop(check=True)
        if env is not None:
            self.env_overrides.update(env)
        return self.start(ports=ports)

    def ports(self) -> Dict[str, int]:
        return {
            "kafka": int(self.kafka.rsplit(":", 1)[1]),
            "pulsar": int(self.pulsar.rsplit(":", 1)[1]),
            "http": int(self.http.rsplit(":", 1)[1]),
            **({"schema_registry": int(self.schema_registry.rsplit(":", 1)[1])} if self.schema_registry else {}),
        }

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path else ""

    def _join_stdout(self) -> None:
        if self._stdout_thread is not None:
            self._stdout_thread.join(timeout=5)
            self._stdout_thread = None


def _pump_stdout(pipe, path: Path, lines: "queue.Queue[Optional[str]]") -> None:
    with open(path, "w") as out:
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                out.write(line + "\n")
                out.flush()
                lines.put(line)
        finally:
            lines.put(None)
            try:
                pipe.close()
            except OSError:
                pass


class ExternalBroker:
    """An already running broker given with --bootstrap (no lifecycle control)."""

    def __init__(self, bootstrap: str):
        self.kafka = bootstrap
        self.http = None
        self.pulsar = None
        self.schema_registry = None
        self.external = True

    def restart(self, *a, **k):
        pytest.skip("external broker cannot be restarted")

    def kill9(self):
        pytest.skip("external broker cannot be killed")


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def external_bootstrap(pytestconfig) -> Optional[str]:
    return pytestconfig.getoption("--bootstrap")


@pytest.fixture(scope="session")
def flavor(pytestconfig) -> str:
    if pytestconfig.getoption("--bootstrap"):
        return pytestconfig.getoption("--flavor") or "external"
    return "magnetar"


@pytest.fixture(scope="session")
def binary(pytestconfig) -> Path:
    return magnetar_bin(pytestconfig)


@pytest.fixture
def broker_factory(request, tmp_path, binary):
    """Start brokers with per-test env overrides: `broker_factory(env={...})`.

    Every broker started here is stopped at teardown; on failure the stderr tail is printed.
    """
    started: List[Broker] = []

    def make(env=None, extra_args=(), start=True, name=None, data_dir=None) -> Broker:
        b = Broker(
            binary,
            tmp_path / (name or f"broker{len(started)}"),
            env=env,
            extra_args=extra_args,
            data_dir=data_dir,
        )
        started.append(b)
        if start:
            b.start()
        return b

    yield make
    failed = _test_failed(request)
    for b in started:
        if failed and b.stderr_path is not None:
            sys.stderr.write(
                f"\n----- magnetar stderr tail ({b.workdir}) -----\n{tail(b.stderr_path)}\n"
            )
        try:
            b.stop(check=False)
        except Exception as e:  # never leak a process
            sys.stderr.write(f"error stopping broker: {e!r}\n")


@pytest.fixture
def broker(request, external_bootstrap, broker_factory):
    """A broker for one test: a fresh Magnetar, or the external one given with --bootstrap."""
    if external_bootstrap:
        return ExternalBroker(external_bootstrap)
    return broker_factory()


@pytest.fixture(scope="module")
def shared_broker(request, tmp_path_factory, pytestconfig):
    """One broker for a whole module (data-path tests use unique topic names)."""
    ext = pytestconfig.getoption("--bootstrap")
    if ext:
        yield ExternalBroker(ext)
        return
    workdir = tmp_path_factory.mktemp("shared-broker")
    b = Broker(magnetar_bin(pytestconfig), workdir)
    try:
        b.start()
    except BrokerStartError as e:
        pytest.fail(f"could not start magnetar: {e}", pytrace=False)
    failed_before = request.session.testsfailed
    yield b
    rc = b.stop(check=False)
    if rc not in (0, None) or request.session.testsfailed > failed_before:
        sys.stderr.write(
            f"\n----- shared magnetar broker (exit {rc}) stderr tail -----\n"
            f"{tail(b.stderr_path)}\n"
        )


@pytest.fixture
def bootstrap(shared_broker) -> str:
    """The Kafka address of the module's broker; fails clearly if that broker died."""
    if isinstance(shared_broker, Broker) and not shared_broker.alive():
        pytest.fail(
            f"shared magnetar broker is not running (exit {shared_broker.exit_codes or 'n/a'})\n"
            f"{tail(shared_broker.stderr_path)}",
            pytrace=False,
        )
    return shared_broker.kafka
