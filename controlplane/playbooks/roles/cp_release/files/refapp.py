#!/usr/bin/env python3
"""The controlplane reference application: a stand-in for a member's real app.

Single file, standard library only: it runs under whatever Python the host's
``ansible_python_interpreter`` is. It reads one JSON config (member, app, version,
address, port, broken, db_password) and serves

* ``GET /healthz``: 200 ``{"status": "ok"}``, or 503 when the config marks the release broken;
* ``GET /version``: ``{"member", "app", "version"}``.

The secret ``db_password`` is read, never logged, printed or served.

Commands (the playbooks drive the ``pidfile`` process manager through them)::

    refapp.py serve  --config C [--pidfile P]           run in the foreground (systemd)
    refapp.py ensure --config C --pidfile P --log L [--restart] [--user U]
    refapp.py stop   --pidfile P
    refapp.py status --pidfile P

``ensure`` converges: it starts the app when it is not running, and restarts it when asked
to or when the running process serves another release or another config than the one
``--config`` points at now (so a crash between a symlink switch and a restart heals on the
next run). It prints one JSON line ``{"action": "running"|"started"|"restarted", ...}``.
The daemon is detached with a double fork, gets a minimal environment (nothing of the
deploying process leaks into it), logs to the ``--log`` file and stops cleanly on SIGTERM.
With ``--user`` (run by root) the daemon drops to that user and its group before it reads
anything, so the app never holds root's rights; a process running as another user than
the one asked for is restarted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import pwd
import select
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

LOG = logging.getLogger("refapp")
REQUIRED = {"member": str, "app": str, "version": str, "address": str, "port": int}
DAEMON_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
EXIT_NOT_RUNNING = 3


class ConfigError(Exception):
    """The config file is missing, unreadable or incomplete (never quotes its values)."""


# -- config ----------------------------------------------------------------------------------


def load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"config {path} is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} is not a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(raw.get(key), kind) or isinstance(raw.get(key), bool):
            raise ConfigError(f"config {path}: {key} is missing or not a {kind.__name__}")
    if not 1 <= raw["port"] <= 65535:
        raise ConfigError(f"config {path}: port is out of range")
    raw["broken"] = bool(raw.get("broken", False))
    return raw


def file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# -- the HTTP service --------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server_version = "refapp/1"
    config: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        cfg = self.config
        if self.path == "/healthz":
            if cfg["broken"]:
                self.reply(503, {"status": "broken"})
            else:
                self.reply(200, {"status": "ok"})
        elif self.path == "/version":
            self.reply(200, {"member": cfg["member"], "app": cfg["app"], "version": cfg["version"]})
        else:
            self.reply(404, {"error": "not found"})

    def reply(self, code: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.info("%s %s", self.address_string(), format % args)


def write_atomic(path: str, text: str, mode: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def serve(config_path: str, pidfile: str | None, ready_fd: int | None) -> int:
    """Bind, write the pidfile, signal readiness, serve until SIGTERM."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        config_path = os.path.realpath(config_path)
        cfg = load_config(config_path)
        digest = file_digest(config_path)
        Handler.config = cfg
        server = ThreadingHTTPServer((cfg["address"], cfg["port"]), Handler)
    except (ConfigError, OSError) as exc:
        LOG.error("cannot start: %s", exc)
        notify(ready_fd, f"error: {exc}")
        return 1
    server.daemon_threads = True
    release = os.path.dirname(config_path)
    if pidfile:
        write_atomic(pidfile, f"{os.getpid()}\n", 0o644)
        state = {
            "pid": os.getpid(),
            "uid": os.getuid(),
            "release": release,
            "config_sha256": digest,
        }
        write_atomic(state_path(pidfile), json.dumps(state) + "\n", 0o600)

    def on_term(signum: int, _frame: object) -> None:
        LOG.info("signal %d: stopping", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    LOG.info(
        "serving %s/%s %s on %s:%d (release %s%s)",
        cfg["member"],
        cfg["app"],
        cfg["version"],
        cfg["address"],
        cfg["port"],
        release,
        ", marked broken" if cfg["broken"] else "",
    )
    notify(ready_fd, "ready")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if pidfile and read_pid(pidfile) == os.getpid():
            for path in (pidfile, state_path(pidfile)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        LOG.info("stopped")
    return 0


def notify(fd: int | None, message: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, message.encode()[:500])
    finally:
        os.close(fd)


# -- process control (the "pidfile" process manager) --------------------------------------------


def state_path(pidfile: str) -> str:
    return f"{pidfile}.state"


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_ours(pid: int, pidfile: str) -> bool:
    """Is ``pid`` alive and a refapp serving with this pidfile (not a reused pid)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    return os.path.abspath(pidfile).encode() in argv and b"serve" in argv


def running_pid(pidfile: str) -> int | None:
    pid = read_pid(pidfile)
    return pid if pid is not None and is_ours(pid, pidfile) else None


def running_state(pidfile: str) -> dict[str, Any]:
    try:
        with open(state_path(pidfile), encoding="utf-8") as fh:
            state = json.load(fh)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def stop(pidfile: str) -> bool:
    """SIGTERM the app, wait, then SIGKILL. True if something was stopped.

    A pidfile left by a process that is gone is removed, so a host moved to systemd keeps
    no trace of the pidfile manager (the playbook's stop step runs only while one exists)."""
    pid = running_pid(pidfile)
    if pid is None:
        # Runs of one member's app never overlap (the engine's locks), so no app is
        # starting under this pidfile now: what is left belongs to a process that is gone.
        if read_pid(pidfile) is not None:
            for path in (pidfile, state_path(pidfile)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not is_ours(pid, pidfile):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for path in (pidfile, state_path(pidfile)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return True


def target_uid(user: str | None) -> int:
    """The uid the app must run as: ``user``'s, or ours when no user is asked for."""
    if user is None:
        return os.getuid()
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise RuntimeError(f"user {user} does not exist") from None
    if os.geteuid() != 0 and uid != os.geteuid():
        raise RuntimeError(f"cannot run the app as {user}: only root can switch users")
    return uid


def drop_to(user: str, paths: list[str]) -> None:
    """Become ``user`` (its own group only, no supplementary groups) and check it can read
    ``paths``, so a closed directory on the way is reported, not a silent exit."""
    entry = pwd.getpwnam(user)
    if os.getuid() != entry.pw_uid:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    for path in paths:
        if not os.access(path, os.R_OK):
            raise RuntimeError(f"user {user} cannot read {path} (a directory on the way is closed)")


def start(config_path: str, pidfile: str, log: str, user: str | None = None) -> int:
    """Daemonise ``serve`` (double fork, new session, clean env, as ``user`` when given);
    wait until it is ready."""
    for path in (pidfile, log):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    script = os.path.realpath(__file__)
    argv = [
        sys.executable,
        script,
        "serve",
        "--config",
        os.path.realpath(config_path),
        "--pidfile",
        os.path.abspath(pidfile),
    ]
    rfd, wfd = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(rfd)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.chdir("/")
            os.umask(0o027)
            if user is not None:
                drop_to(user, [script, os.path.realpath(config_path)])
            out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.set_inheritable(wfd, True)
            os.execve(sys.executable, [*argv, "--ready-fd", str(wfd)], DAEMON_ENV)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(wfd, f"error: {exc}".encode()[:500])
            os._exit(127)
    os.close(wfd)
    os.waitpid(child, 0)
    message = b""
    deadline = time.monotonic() + START_TIMEOUT
    with os.fdopen(rfd, "rb", buffering=0) as pipe:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([pipe], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = pipe.read(512)
            if not chunk:
                break
            message += chunk
    text = message.decode(errors="replace")
    if text != "ready":
        raise RuntimeError(text or f"the app did not report ready within {START_TIMEOUT:.0f}s")
    pid = read_pid(pidfile)
    return pid if pid is not None else -1


def ensure(
    config_path: str, pidfile: str, log: str, restart: bool, user: str | None = None
) -> dict[str, Any]:
    release = os.path.dirname(os.path.realpath(config_path))
    uid = target_uid(user)
    pid = running_pid(pidfile)
    if pid is not None and not restart:
        state = running_state(pidfile)
        if state.get("uid") != uid:
            restart, reason = True, "the app's user changed"
        elif state.get("release") != release:
            restart, reason = True, "the live release changed"
        elif state.get("config_sha256") != file_digest(config_path):
            restart, reason = True, "the config changed"
        else:
            return {"action": "running", "pid": pid, "release": release}
    else:
        reason = "requested" if restart else "not running"
    stopped = stop(pidfile)
    new_pid = start(config_path, pidfile, log, user)
    action = "restarted" if stopped else "started"
    return {"action": action, "pid": new_pid, "release": release, "reason": reason}


# -- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refapp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run in the foreground")
    p_serve.add_argument("--config", required=True)
    p_serve.add_argument("--pidfile")
    p_serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    p_ensure = sub.add_parser("ensure", help="start, or restart when needed, as a daemon")
    p_ensure.add_argument("--config", required=True)
    p_ensure.add_argument("--pidfile", required=True)
    p_ensure.add_argument("--log", required=True)
    p_ensure.add_argument("--restart", action="store_true")
    p_ensure.add_argument("--user", help="run the app as this user (needs root)")
    for name in ("stop", "status"):
        sub.add_parser(name).add_argument("--pidfile", required=True)
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args.config, args.pidfile, args.ready_fd)
    if args.command == "ensure":
        try:
            result = ensure(args.config, args.pidfile, args.log, args.restart, args.user)
        except (ConfigError, OSError, RuntimeError) as exc:
            print(json.dumps({"action": "failed", "error": str(exc)}))
            return 1
        print(json.dumps(result))
        return 0
    if args.command == "stop":
        print(json.dumps({"action": "stopped" if stop(args.pidfile) else "not-running"}))
        return 0
    pid = running_pid(args.pidfile)
    state = running_state(args.pidfile) if pid is not None else {}
    print(json.dumps({"running": pid is not None, "pid": pid, "release": state.get("release")}))
    return 0 if pid is not None else EXIT_NOT_RUNNING


if __name__ == "__main__":
    sys.exit(main())
