#!/usr/bin/env python3
"""Real-client test: drives `troved serve` with the real OpenStack CLI.

    python tests/clients/test_cli.py [--troved target/debug/troved] [--openstack venv/bin/openstack]

Starts troved on a free loopback port with a temporary data dir and
`--sim-latency-ms 0` (embedded defaults otherwise), points the CLI at it without
Keystone (`OS_AUTH_TYPE=none`, `OS_ENDPOINT=http://127.0.0.1:PORT/v1.0/<project>`,
see shared/spec/clients.md section 1) and runs `openstack database ...` commands,
asserting on what they print. A second troved with a long simulated latency keeps an
instance in BUILD for the "delete while building" check.

Prints one line per check (`PASS name` / `FAIL name: why`) and ends with
`N passed, M failed`; exits 1 if anything failed. Standard library only.
"""

import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NET_ID = "a5330d7d-0e8c-48b4-9f6c-0f2c4ab1b854"
CLI_TIMEOUT = 90  # seconds for one `openstack` call
POLL_TIMEOUT = 30  # seconds to wait for an instance to reach a state


# ---- the server under test -----------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_child(proc):
    """Stops a child process we started: SIGTERM, then SIGKILL after 10 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Troved:
    """One `troved serve` child on a free loopback port with its own data dir."""

    def __init__(self, binary, workdir, name, latency_ms, provider="sim", extra=(), env=None):
        self.binary = binary
        self.env = dict(env or {})
        self.dir = os.path.join(workdir, name)
        self.latency_ms = latency_ms
        self.provider = provider
        self.extra = list(extra)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.dir, "troved.log")
        self.log = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        # Embedded defaults: no TROVED_* variable from the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TROVED_")}
        env.setdefault("RUST_LOG", "warn")
        env.update(self.env)
        self.log = open(self.log_path, "ab")
        last = "never started"
        for _ in range(5):  # the port can be taken between free_port() and bind
            self.port = free_port()
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "serve",
                    "--provider",
                    self.provider,
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--data-dir",
                    os.path.join(self.dir, "data"),
                    "--sim-latency-ms",
                    str(self.latency_ms),
                    *self.extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = f"troved exited with {self.proc.returncode}"
                    break
                try:
                    with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as r:
                        doc = json.loads(r.read())
                    # Our child is alive and ready: the port is ours.
                    if doc.get("status") == "ready" and self.proc.poll() is None:
                        return
                    last = f"unexpected readiness document {doc!r}"
                except Exception as e:  # not listening yet
                    last = repr(e)
                time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"troved did not start: {last}; log:\n{self.log_tail()}")

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, project):
        return f"{self.base}/v1.0/{project}"

    def stop(self):
        stop_child(self.proc)
        self.proc = None

    def close(self):
        self.stop()
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"


# ---- the client ------------------------------------------------------------------------


class Result:
    def __init__(self, argv, proc):
        self.argv = argv
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self):
        if self.rc != 0:
            raise AssertionError(f"exit {self.rc}; {self.describe()}")
        try:
            return json.loads(self.out)
        except ValueError:
            raise AssertionError(f"stdout is not JSON; {self.describe()}")

    def ok(self):
        if self.rc != 0:
            raise AssertionError(f"exit {self.rc}; {self.describe()}")
        return self

    def describe(self):
        cmd = " ".join(self.argv)
        return f"`{cmd}` stdout={self.out.strip()[:600]!r} stderr={self.err.strip()[:600]!r}"


class Cli:
    """Runs `openstack` against one troved, as one project, without Keystone."""

    def __init__(self, openstack, server, project="p1", token=None):
        self.openstack = openstack
        self.server = server
        self.project = project
        self.token = token
        self.calls = 0

    def as_(self, project=None, token=None):
        return Cli(self.openstack, self.server, project or self.project, token)

    def __call__(self, *args):
        # Any OS_PROJECT_* etc. breaks noauth (clients.md section 1): clear them all.
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["PYTHONWARNINGS"] = "ignore"
        endpoint = self.server.endpoint(self.project)
        if self.token is None:
            env["OS_AUTH_TYPE"] = "none"
            env["OS_ENDPOINT"] = endpoint
            argv = [self.openstack, *args]
        else:  # a fixed token implies the admin_token plugin
            argv = [self.openstack, "--os-endpoint", endpoint, "--os-token", self.token, *args]
        self.calls += 1
        proc = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        return Result(["openstack", *argv[1:]], proc)


# ---- checks ----------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name):
        return _Check(self, name)


class _Check:
    """`with report.check("name"):` - an exception inside marks the check failed."""

    def __init__(self, report, name):
        self.report = report
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.report.passed += 1
            print(f"PASS {self.name}", flush=True)
        else:
            self.report.failed += 1
            if isinstance(exc, AssertionError):
                why = str(exc) or "assertion failed"
            elif isinstance(exc, KeyError) and exc.args and exc.args[0] in STATE_KEYS:
                why = f"needs {exc.args[0]!r} from an earlier check that failed"
            else:
                why = "".join(traceback.format_exception_only(exc_type, exc)).strip()
            print(f"FAIL {self.name}: {why}", flush=True)
        return True  # keep going


STATE_KEYS = {"inst", "inst_name", "cfg", "rep1", "rep2", "other", "v57", "v80", "slow", "mysql_id",
              "act"}


def eq(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def has(haystack, needle, what):
    if needle not in haystack:
        raise AssertionError(f"{what}: {needle!r} not in {haystack!r}")


def by(rows, key, value):
    found = [r for r in rows if r.get(key) == value]
    if len(found) != 1:
        raise AssertionError(f"expected one row with {key}={value!r}, got {len(found)} in {rows!r}")
    return found[0]


def show(cli, ref):
    return cli("database", "instance", "show", ref, "-f", "json").json()


def wait_show(cli, ref, pred, what, timeout=POLL_TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = show(cli, ref)
        if pred(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{ref} never {what} within {timeout}s; last show: {last!r}")
        time.sleep(0.3)


def active(inst):
    return inst.get("status") == "ACTIVE"


def list_instances(cli, *extra):
    return cli("database", "instance", "list", "-f", "json", *extra).json()


# ---- real databases (the local provider) -----------------------------------------------

# The client of each datastore: argv connecting as `user` with `password` to `db` on
# host:port and running one statement.
CLIENTS = {
    "postgresql": lambda host, port, user, password, db, sql: [
        "psql", f"postgresql://{user}:{password}@{host}:{port}/{db}?connect_timeout=10",
        "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
    ],
    "mariadb": lambda host, port, user, password, db, sql: [
        "mariadb", "--no-defaults", "-h", host, "-P", str(port), "-u", user,
        f"-p{password}", "--connect-timeout=10", "-N", "-B", db, "-e", sql,
    ],
}


def local_missing():
    """Why the local provider's session cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (database servers run as the troved-db user)"
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        return "no PostgreSQL server (Debian package postgresql)"
    if not (shutil.which("mariadbd") or os.path.exists("/usr/sbin/mariadbd")):
        return "no MariaDB server (Debian package mariadb-server)"
    if not (shutil.which("psql") and shutil.which("mariadb")):
        return "no psql or mariadb client"
    return None


def endpoint_of(inst):
    """(host, port) from a shown instance: the first address and its port."""
    addresses = inst.get("addresses") or []
    if not addresses:
        raise AssertionError(f"no address in {inst!r}")
    first = addresses[0]
    if "port" in first:
        return first["address"], int(first["port"])
    host, _, port = first["address"].rpartition(":")
    return host, int(port)


def sql(datastore, host, port, user, password, db, statement):
    argv = CLIENTS[datastore](host, port, user, password, db, statement)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def local_sessions(args, report, workdir, servers):
    """The README's quick start with the real CLI against `--provider local`: create with a
    database and a user, connect as that user with its password (and fail with another),
    delete; for PostgreSQL and MariaDB."""
    why = local_missing()
    if why:
        print(f"SKIP local provider session: {why}", flush=True)
        return
    os.chmod(workdir, 0o755)  # the database user must reach the local root inside it
    local = Troved(args.troved, workdir, "local", 0, provider="local",
                   extra=["--local-ports", "31800-31849"])
    servers.append(local)
    local.start()
    print(f"troved (provider local) at {local.base}", flush=True)
    cli = Cli(args.openstack, local)
    versions = {"postgresql": "15", "mariadb": "10.11"}
    shown = {}
    for ds, version in versions.items():
        name = f"orders-{ds}"
        with report.check(f"local {ds}: create --databases orders --users app:s3cret-pw -> ACTIVE/HEALTHY"):
            cli("database", "instance", "create", name, "--flavor", "1", "--size", "1",
                "--datastore", ds, "--datastore-version", version,
                "--databases", "orders", "--users", "app:s3cret-pw", "-f", "json").json()
            inst = wait_show(cli, name, lambda i: i.get("operating_status") == "HEALTHY",
                             "HEALTHY", timeout=120)
            eq(inst["status"], "ACTIVE", "status")
            shown[ds] = inst
        with report.check(f"local {ds}: the user connects to its database with its password"):
            host, port = endpoint_of(shown[ds])
            eq(host, "127.0.0.1", "private address")
            r = sql(ds, host, port, "app", "s3cret-pw", "orders",
                    "CREATE TABLE t (v INT); INSERT INTO t VALUES (42); SELECT v FROM t")
            eq((r.returncode, r.stdout.strip()), (0, "42"), f"psql/mariadb ({r.stderr.strip()})")
        with report.check(f"local {ds}: a wrong password is refused"):
            r = sql(ds, host, port, "app", "wrong-pw", "orders", "SELECT 1")
            if r.returncode == 0:
                raise AssertionError("logged in with a wrong password")
            has(r.stderr.lower(), "password authentication failed" if ds == "postgresql"
                else "access denied", "error")
        with report.check(f"local {ds}: backup create, then instance create --backup has the row"):
            bk = cli("database", "backup", "create", f"{name}-bk", "--instance", name,
                     "-f", "json").json()
            deadline = time.monotonic() + 120
            while True:
                bk = cli("database", "backup", "show", bk["id"], "-f", "json").json()
                if bk["status"] == "COMPLETED":
                    break
                if bk["status"] == "FAILED" or time.monotonic() > deadline:
                    raise AssertionError(f"backup not COMPLETED: {bk!r}")
                time.sleep(0.5)
            r = sql(ds, host, port, "app", "s3cret-pw", "orders", "INSERT INTO t VALUES (43)")
            eq(r.returncode, 0, f"insert after the backup ({r.stderr.strip()})")
            cli("database", "instance", "create", f"{name}-copy", "--flavor", "1", "--size", "1",
                "--datastore", ds, "--datastore-version", version,
                "--backup", bk["id"], "-f", "json").json()
            copy = wait_show(cli, f"{name}-copy", lambda i: i.get("operating_status") == "HEALTHY",
                             "HEALTHY", timeout=120)
            chost, cport = endpoint_of(copy)
            r = sql(ds, chost, cport, "app", "s3cret-pw", "orders", "SELECT v FROM t ORDER BY v")
            eq((r.returncode, r.stdout.strip()), (0, "42"), f"restored rows ({r.stderr.strip()})")
            cli("database", "instance", "delete", f"{name}-copy").ok()
            cli("database", "backup", "delete", bk["id"]).ok()
        with report.check(f"local {ds}: delete stops the server and frees the port"):
            cli("database", "instance", "delete", name).ok()
            deadline = time.monotonic() + 60
            while show_rc(cli, name) == 0:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} still shown 60 s after delete")
                time.sleep(0.5)
            with socket.socket() as s:
                s.settimeout(2)
                if s.connect_ex((host, port)) == 0:
                    raise AssertionError(f"something still listens on {host}:{port}")


def replica_source_actions(cli, report):
    """`database instance promote` (promote to replica source) and `database instance
    eject` (eject replica source), issue #15: a replica becomes the source and the old
    source its replica; the refusals upstream gives come back as the CLI's messages."""
    ids = {}
    with report.check("database instance promote <replica name> (promote to replica source)"):
        src = cli("database", "instance", "create", "promo-src", "--flavor", "m1.small",
                  "--size", "1", "--datastore", "mysql", "-f", "json").json()
        ids["src"] = src["id"]
        wait_show(cli, "promo-src", active, "became ACTIVE")
        rep = cli("database", "instance", "create", "promo-rep", "--replica-of", "promo-src",
                  "-f", "json").json()
        ids["rep"] = rep["id"]
        wait_show(cli, "promo-rep", active, "became ACTIVE")
        r = cli("database", "instance", "promote", "promo-rep").ok()
        eq(r.out.strip(), "", "stdout")
        s = wait_show(cli, ids["rep"], lambda i: active(i) and "replica_of" not in i,
                      "became the replica source")
        eq(s.get("replicas"), ids["src"], "the new source's replicas")
        s = wait_show(cli, ids["src"], lambda i: active(i) and i.get("replica_of") == ids["rep"],
                      "became a replica of the promoted one")
        rows = list_instances(cli)
        eq(by(rows, "ID", ids["src"])["Role"], "replica", "old source's Role")

    with report.check("promote a non-replica / eject a replica / eject a healthy source: 400"):
        r = cli("database", "instance", "promote", "promo-rep")
        eq(r.rc, 1, "exit code")
        has(r.out + r.err, f"Instance {ids['rep']} is not a replica. (HTTP 400)", "output")
        r = cli("database", "instance", "eject", "promo-src")
        eq(r.rc, 1, "exit code")
        has(r.out + r.err, f"Instance {ids['src']} is not a replica source. (HTTP 400)", "output")
        r = cli("database", "instance", "eject", "promo-rep")
        eq(r.rc, 1, "exit code")
        has(r.out + r.err, f"Replica Source {ids['rep']} cannot be ejected as it has a current "
            "heartbeat (HTTP 400)", "output")

    with report.check("database instance delete of the switched set"):
        cli("database", "instance", "delete", ids["src"]).ok()
        wait_gone = time.monotonic() + POLL_TIMEOUT
        while ids["src"] in {row["ID"] for row in list_instances(cli)}:
            if time.monotonic() > wait_gone:
                raise AssertionError("the old source is still listed")
            time.sleep(0.3)
        cli("database", "instance", "delete", ids["rep"]).ok()


def instance_actions(args, report, S, cli, slow):
    """`database instance restart|resize flavor|resize volume|reset status` (issue #15)
    on the fast troved; `reset status` and `delete --force` of the slow troved's
    instance stuck in BUILD."""
    admin = cli.as_(token="admin:p1")

    with report.check("database instance restart: REBOOT, then ACTIVE"):
        c = cli("database", "instance", "create", "act1", "--flavor", "m1.small", "--size", "1",
                "--datastore", "mysql", "-f", "json").json()
        S["act"] = c["id"]
        wait_show(cli, "act1", active, "became ACTIVE")
        r = cli("database", "instance", "restart", "act1").ok()
        eq(r.out.strip(), "", "stdout")
        has(["REBOOT", "ACTIVE"], show(cli, "act1")["status"], "status after restart")
        wait_show(cli, "act1", active, "became ACTIVE after the restart")

    with report.check("database instance resize flavor act1 m1.medium"):
        cli("database", "instance", "resize", "flavor", "act1", "m1.medium").ok()
        s = wait_show(cli, "act1", lambda i: active(i) and i.get("flavor") == "3",
                      "ran on m1.medium")
        eq(s["flavor"], "3", "flavor")

    with report.check("database instance resize flavor to the same flavor: 400"):
        r = cli("database", "instance", "resize", "flavor", "act1", "m1.medium")
        eq(r.rc, 1, "exit code")
        has(r.out + r.err,
            "The new flavor id must be different than the current flavor id of '3'.", "output")

    with report.check("database instance resize volume act1 3, then 2 is refused"):
        cli("database", "instance", "resize", "volume", "act1", "3").ok()
        s = wait_show(cli, "act1", lambda i: active(i) and i.get("volume") == 3, "grew to 3 GB")
        eq(s["volume"], 3, "volume")
        r = cli("database", "instance", "resize", "volume", "act1", "2")
        eq(r.rc, 1, "exit code")
        has(r.out + r.err,
            "The new volume 'size' must be larger than the current volume size of '3'.",
            "output")

    with report.check("database instance reset status: admin only"):
        r = cli("database", "instance", "reset", "status", "act1")
        eq(r.rc, 1, "exit code (member)")
        has(r.out + r.err, "Policy doesn't allow instance:reset_status to be performed.",
            "output")
        admin("database", "instance", "reset", "status", S["act"]).ok()
        eq(show(cli, "act1")["status"], "ACTIVE", "status after reset")
        cli("database", "instance", "delete", "act1").ok()

    with report.check("database instance reset status + delete of a stuck BUILD"):
        sadmin = Cli(args.openstack, slow).as_(token="admin:p1")
        eq(show(sadmin, S["slow"])["status"], "BUILD", "stuck in BUILD")
        sadmin("database", "instance", "reset", "status", S["slow"]).ok()
        r = sadmin("database", "instance", "delete", S["slow"]).ok()
        has(r.out, f"Request to delete database instance {S['slow']} has been accepted.",
            "stdout")
        rows = list_instances(sadmin)
        if any(row["ID"] == S["slow"] for row in rows):
            eq(by(rows, "ID", S["slow"])["Status"], "SHUTDOWN", "listed while torn down")

    with report.check("database instance delete --force (reset status, then delete)"):
        sadmin = Cli(args.openstack, slow).as_(token="admin:p1")
        c = sadmin("database", "instance", "create", "slow2", "--flavor", "ds1G", "--size", "1",
                   "--datastore", "postgresql", "-f", "json").json()
        eq(c["status"], "BUILD", "building")
        sadmin("database", "instance", "delete", "--force", c["id"]).ok()
        rows = list_instances(sadmin)
        if any(row["ID"] == c["id"] for row in rows):
            eq(by(rows, "ID", c["id"])["Status"], "SHUTDOWN", "listed while torn down")


def show_rc(cli, ref):
    return cli("database", "instance", "show", ref, "-f", "json").rc


# ---- databases, users and root (issue #15) ---------------------------------------------


def guest_admin_sessions(cli, report):
    """`openstack database db ...`, `database user ...` and `database root ...` on an
    instance of their own (the simulated cloud records the changes)."""
    S = {}
    with report.check("databases/users: an instance with a database and a user at create"):
        c = cli("database", "instance", "create", "gdb1", "--flavor", "m1.small", "--size", "1",
                "--datastore", "mysql", "--databases", "db1", "--users", "alice:secret1",
                "-f", "json").json()
        S["gdb"] = c["id"]
        wait_show(cli, S["gdb"], active, "became ACTIVE")

    with report.check("database db create / list / delete"):
        rows = cli("database", "db", "list", "gdb1", "-f", "json").json()
        eq([r["Name"] for r in rows], ["db1"], "the create's database is listed")
        cli("database", "db", "create", "gdb1", "shop", "--character_set", "utf8mb4").ok()
        cli("database", "db", "create", "gdb1", "archive").ok()
        rows = cli("database", "db", "list", "gdb1", "-f", "json").json()
        eq(sorted(r["Name"] for r in rows), ["archive", "db1", "shop"], "after create")
        cli("database", "db", "delete", "gdb1", "archive").ok()
        rows = cli("database", "db", "list", "gdb1", "-f", "json").json()
        eq(sorted(r["Name"] for r in rows), ["db1", "shop"], "after delete")

    with report.check("database db create mysql: reserved (HTTP 400)"):
        r = cli("database", "db", "create", "gdb1", "mysql")
        eq(r.rc, 1, "exit code")
        has(r.out + r.err, "is on the reserved list", "output")
        has(r.out + r.err, "HTTP 400", "output")

    with report.check("database user create / list / show"):
        cli("database", "user", "create", "gdb1", "carl", "secret3", "--databases", "shop").ok()
        cli("database", "user", "create", "gdb1", "dora", "secret4", "--host", "10.0.0.1").ok()
        rows = cli("database", "user", "list", "gdb1", "-f", "json").json()
        eq(sorted((r["Name"], r["Host"]) for r in rows),
           [("alice", "%"), ("carl", "%"), ("dora", "10.0.0.1")], "users")
        eq(by(rows, "Name", "carl")["Databases"], "shop", "carl's databases")
        u = cli("database", "user", "show", "gdb1", "dora", "--host", "10.0.0.1", "-f", "json").json()
        eq((u["name"], u["host"]), ("dora", "10.0.0.1"), "show with --host")

    with report.check("database user grant access / show access / revoke access"):
        cli("database", "user", "grant", "access", "gdb1", "carl", "db1").ok()
        rows = cli("database", "user", "show", "access", "gdb1", "carl", "-f", "json").json()
        eq(sorted(r["Name"] for r in rows), ["db1", "shop"], "after grant")
        cli("database", "user", "revoke", "access", "gdb1", "carl", "shop").ok()
        rows = cli("database", "user", "show", "access", "gdb1", "carl", "-f", "json").json()
        eq([r["Name"] for r in rows], ["db1"], "after revoke")

    # The issue's `user set` is `user update attributes` in this CLI (troveclient 8.11).
    with report.check("database user update attributes (new name and password) / delete"):
        cli("database", "user", "update", "attributes", "gdb1", "carl", "--new_name", "carla",
            "--new_password", "secret5").ok()
        u = cli("database", "user", "show", "gdb1", "carla", "-f", "json").json()
        eq(u["name"], "carla", "renamed")
        r = cli("database", "user", "show", "gdb1", "carl")
        eq(r.rc, 1, "old name is gone")
        cli("database", "user", "delete", "gdb1", "dora", "--host", "10.0.0.1").ok()
        rows = cli("database", "user", "list", "gdb1", "-f", "json").json()
        eq(sorted(r["Name"] for r in rows), ["alice", "carla"], "after delete")

    with report.check("database user show unknown: HTTP 404"):
        r = cli("database", "user", "show", "gdb1", "nobody")
        eq(r.rc, 1, "exit code")
        has(r.out + r.err, "User nobody cannot be found on the instance.", "output")

    with report.check("database root show / enable / disable"):
        eq(cli("database", "root", "show", "gdb1", "-f", "json").json(),
           {"is_root_enabled": False}, "before")
        e = cli("database", "root", "enable", "gdb1", "-f", "json").json()
        eq(e["name"], "root", "name")
        eq(len(e["password"]), 36, "generated password length")
        e = cli("database", "root", "enable", "gdb1", "--root_password", "MyRoot-Pw1",
                "-f", "json").json()
        eq(e["password"], "MyRoot-Pw1", "given password")
        eq(cli("database", "root", "show", "gdb1", "-f", "json").json(),
           {"is_root_enabled": True}, "after enable")
        cli("database", "root", "disable", "gdb1").ok()
        eq(cli("database", "root", "show", "gdb1", "-f", "json").json(),
           {"is_root_enabled": False}, "after disable")

    with report.check("databases/users: the instance is deleted"):
        cli("database", "instance", "delete", "gdb1").ok()


# ---- the scenario ----------------------------------------------------------------------


def run(args):
    report = Report()
    S = {}  # ids and names carried from check to check
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="troved-cli-")
    fast = Troved(args.troved, workdir, "fast", 0)
    slow = Troved(args.troved, workdir, "slow", 600000)
    servers = [fast, slow]
    cli = None
    try:
        fast.start()
        print(f"troved (latency 0) at {fast.base}", flush=True)
        cli = Cli(args.openstack, fast)  # noauth, project p1
        admin = cli.as_(token="admin:p1")

        # -- catalog ---------------------------------------------------------------------
        with report.check("database flavor list: the six embedded flavors"):
            rows = cli("database", "flavor", "list", "-f", "json").json()
            small = by(rows, "Name", "m1.small")
            eq(small["ID"], 2, "m1.small ID (an integer for numeric flavors)")
            eq((small["RAM"], small["vCPUs"], small["Disk"], small["Ephemeral"]),
               (2048, 1, 20, 0), "m1.small RAM/vCPUs/Disk/Ephemeral")
            eq(sorted(r["Name"] for r in rows),
               sorted(["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge", "ds1G"]),
               "flavor names")

        with report.check("database flavor show m1.small (by name) and 3 (by id)"):
            f = cli("database", "flavor", "show", "m1.small", "-f", "json").json()
            eq((f["id"], f["name"], f["ram"], f["vcpus"]), (2, "m1.small", 2048, 1),
               "flavor show m1.small")
            f = cli("database", "flavor", "show", "3", "-f", "json").json()
            eq((f["id"], f["name"]), (3, "m1.medium"), "flavor show 3")

        with report.check("database flavor show unknown: error message"):
            r = cli("database", "flavor", "show", "no-such-flavor")
            eq(r.rc, 1, "exit code")
            has(r.err, "No flavor with a name or ID of 'no-such-flavor' exists.", "stderr")

        with report.check("datastore list: mysql, mariadb, postgresql"):
            rows = cli("datastore", "list", "-f", "json").json()
            eq(sorted(r["Name"] for r in rows), ["mariadb", "mysql", "postgresql"], "names")
            for r in rows:
                assert UUID_RE.match(r["ID"]), f"datastore ID {r['ID']!r} is not a UUID"
            S["mysql_id"] = by(rows, "Name", "mysql")["ID"]

        with report.check("datastore version list mysql: 5.7 and 8.0"):
            rows = cli("datastore", "version", "list", "mysql", "-f", "json").json()
            eq(sorted(r["Name"] for r in rows), ["5.7", "8.0"], "version names")
            eq(by(rows, "Name", "5.7")["Version"], "5.7.29", "5.7 Version")
            eq(by(rows, "Name", "8.0")["Version"], "8.0.36", "8.0 Version")
            S["v57"] = by(rows, "Name", "5.7")["ID"]
            S["v80"] = by(rows, "Name", "8.0")["ID"]

        with report.check("datastore show mysql: id, default version, versions (id)"):
            d = cli("datastore", "show", "mysql", "-f", "json").json()
            eq(d["name"], "mysql", "name")
            eq(d["id"], S["mysql_id"], "id (as in datastore list)")
            eq(d["default_version"], "8.0", "default_version")
            versions = d["versions (id)"]
            has(versions, f"5.7 ({S['v57']})", "versions (id)")
            has(versions, f"8.0 ({S['v80']})", "versions (id)")

        # -- create / show / list ----------------------------------------------------------
        with report.check("database instance create with every option"):
            c = cli(
                "database", "instance", "create", "inst1",
                "--flavor", "m1.small", "--size", "2",
                "--datastore", "mysql", "--datastore-version", "5.7",
                "--databases", "db1", "db2",
                "--users", "alice:secret1", "bob:secret2",
                "--nic", f"net-id={NET_ID}",
                "--is-public", "--allowed-cidr", "10.0.0.0/24", "--allowed-cidr", "10.1.0.0/24",
                "-f", "json",
            ).json()
            assert UUID_RE.match(c["id"]), f"id {c['id']!r} is not a UUID"
            S["inst"] = c["id"]
            S["inst_name"] = "inst1"
            eq(c["name"], "inst1", "name")
            has(["BUILD", "ACTIVE"], c["status"], "status right after create")
            eq(c["flavor"], "2", "flavor")
            eq(c["volume"], 2, "volume")
            eq((c["datastore"], c["datastore_version"], c["datastore_version_number"]),
               ("mysql", "5.7", "5.7.29"), "datastore")
            eq(c["public"], True, "public")
            eq(c["allowed_cidrs"], ["10.0.0.0/24", "10.1.0.0/24"], "allowed_cidrs")
            eq(c["region"], "RegionOne", "region")

        with report.check("database instance show <id>: polled until ACTIVE / HEALTHY"):
            s = wait_show(cli, S["inst"], active, "became ACTIVE")
            eq(s["operating_status"], "HEALTHY", "operating_status")
            eq(s["id"], S["inst"], "id")
            private = [a for a in s["addresses"] if a.get("type") == "private"]
            public = [a for a in s["addresses"] if a.get("type") == "public"]
            eq([a.get("network") for a in private], [NET_ID], "private address network (--nic)")
            assert public, f"--is-public instance has no public address: {s['addresses']!r}"
            eq(s["ip"], ", ".join(a["address"] for a in s["addresses"]), "ip")
            for key in ("created", "updated", "service_status_updated"):
                assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", s[key]), f"{key}={s[key]!r}"

        with report.check("database instance show <name>"):
            s = show(cli, "inst1")
            eq((s["id"], s["name"], s["status"]), (S["inst"], "inst1", "ACTIVE"), "show by name")

        with report.check("database instance list"):
            rows = list_instances(cli)
            row = by(rows, "ID", S["inst"])
            eq((row["Name"], row["Status"], row["Operating Status"]), ("inst1", "ACTIVE", "HEALTHY"),
               "name/status")
            eq((row["Datastore"], row["Datastore Version"]), ("mysql", "5.7"), "datastore")
            eq((row["Flavor ID"], row["Size"], row["Public"], row["Role"]), ("2", 2, True, ""),
               "flavor/size/public/role")

        with report.check("database instance create in another project (flavor by id)"):
            other = cli.as_(project="p2")
            c = other("database", "instance", "create", "other1", "--flavor", "1", "--size", "1",
                      "--datastore", "mariadb", "-f", "json").json()
            S["other"] = c["id"]
            eq((c["name"], c["flavor"], c["datastore"]), ("other1", "1", "mariadb"), "create")
            rows = list_instances(cli)
            assert not [r for r in rows if r["ID"] == S["other"]], "p2's instance listed in p1"

        with report.check("database instance list --all-projects as admin (--os-token admin:p1)"):
            rows = list_instances(admin, "--all-projects")
            mine = by(rows, "ID", S["inst"])
            theirs = by(rows, "ID", S["other"])
            eq((mine["Tenant ID"], theirs["Tenant ID"]), ("p1", "p2"), "Tenant ID column")
            eq(theirs["Name"], "other1", "p2 instance name")
            assert mine.get("Server ID"), f"no Server ID: {mine!r}"

        with report.check("database instance list --all-projects as non-admin: 401"):
            r = cli("database", "instance", "list", "--all-projects")
            eq(r.rc, 1, "exit code")
            has(r.err, "User does not have admin privileges. (HTTP 401)", "stderr")

        with report.check("database instance show unknown name: error message"):
            r = cli("database", "instance", "show", "no-such-instance")
            eq(r.rc, 1, "exit code")
            has(r.err, "No instance with a name or ID of 'no-such-instance' exists.", "stderr")

        # -- update ------------------------------------------------------------------------
        with report.check("database instance update <name> --name"):
            r = cli("database", "instance", "update", "inst1", "--name", "inst1-renamed").ok()
            eq(r.out.strip(), "", "stdout")
            s = show(cli, S["inst"])
            eq(s["name"], "inst1-renamed", "name after rename")
            S["inst_name"] = "inst1-renamed"
            rows = list_instances(cli)
            eq(by(rows, "ID", S["inst"])["Name"], "inst1-renamed", "name in list")

        with report.check("database instance update <id> --is-private (access update)"):
            cli("database", "instance", "update", S["inst"], "--is-private").ok()
            # UPDATING shows status ACTIVE with operating_status "": wait for task NONE
            s = wait_show(cli, S["inst"],
                          lambda i: i.get("public") is False and active(i)
                          and i.get("operating_status") == "HEALTHY",
                          "became private and ACTIVE / HEALTHY")
            eq(s.get("allowed_cidrs"), [], "allowed_cidrs (sending only is_public clears them)")
            # the user port is made private: its floating IP goes (spec instances-api
            # 11.7 step 3, instance-lifecycle 7.7)
            eq([a for a in s.get("addresses", []) if a.get("type") == "public"], [],
               "public addresses after --is-private")
            eq(s["ip"], ", ".join(a["address"] for a in s["addresses"]), "ip")

        # -- configuration groups ----------------------------------------------------------
        with report.check("database configuration create (mysql 5.7, max_connections 200)"):
            c = cli("database", "configuration", "create", "cfg1", '{"max_connections": 200}',
                    "--datastore", "mysql", "--datastore-version", "5.7",
                    "--description", "cli test", "-f", "json").json()
            assert UUID_RE.match(c["id"]), f"id {c['id']!r}"
            S["cfg"] = c["id"]
            eq((c["name"], c["description"]), ("cfg1", "cli test"), "name/description")
            eq((c["datastore_name"], c["datastore_version_name"]), ("mysql", "5.7"), "datastore")
            eq(json.loads(c["values"]), {"max_connections": 200}, "values")

        with report.check("database configuration list"):
            rows = cli("database", "configuration", "list", "-f", "json").json()
            row = by(rows, "ID", S["cfg"])
            eq((row["Name"], row["Datastore Name"], row["Datastore Version Name"],
                row["Datastore Version Number"]), ("cfg1", "mysql", "5.7", "5.7.29"), "row")

        with report.check("database configuration show <name>"):
            c = cli("database", "configuration", "show", "cfg1", "-f", "json").json()
            eq(c["id"], S["cfg"], "id")
            eq(json.loads(c["values"]), {"max_connections": 200}, "values")
            eq(c["instance_count"], 0, "instance_count before attach")

        with report.check("database configuration attach <inst name> <cfg name>"):
            r = cli("database", "configuration", "attach", S["inst_name"], "cfg1").ok()
            s = wait_show(cli, S["inst"], lambda i: "configuration" in i, "showed the configuration")
            eq(s["configuration"], S["cfg"], "configuration")
            # max_connections is dynamic: applied live, no RESTART_REQUIRED
            eq(s["status"], "ACTIVE", "status after attaching a dynamic-only group")
            c = cli("database", "configuration", "show", S["cfg"], "-f", "json").json()
            eq(c["instance_count"], 1, "instance_count after attach")

        with report.check("database configuration default <inst>"):
            d = cli("database", "configuration", "default", S["inst_name"], "-f", "json").json()
            assert isinstance(d, dict) and d, f"empty default configuration: {d!r}"
            has(d, "max_connections", "default configuration keys")
            assert "datadir" in d, f"no datadir in {sorted(d)}"

        with report.check("database configuration detach <inst id>"):
            cli("database", "configuration", "detach", S["inst"]).ok()
            s = wait_show(cli, S["inst"], lambda i: "configuration" not in i and active(i),
                          "dropped the configuration")
            c = cli("database", "configuration", "show", S["cfg"], "-f", "json").json()
            eq(c["instance_count"], 0, "instance_count after detach")

        # -- replicas ----------------------------------------------------------------------
        with report.check("database instance create --replica-of <name>"):
            c = cli("database", "instance", "create", "rep1", "--replica-of", S["inst_name"],
                    "-f", "json").json()
            S["rep1"] = c["id"]
            eq(c["name"], "rep1", "name")
            eq(c["replica_of"], S["inst"], "replica_of")
            eq((c["datastore"], c["datastore_version"], c["flavor"], c["volume"]),
               ("mysql", "5.7", "2", 2), "copied from the primary")
            wait_show(cli, S["rep1"], active, "became ACTIVE")

        with report.check("list/show: replica and primary roles"):
            rows = list_instances(cli)
            eq(by(rows, "ID", S["rep1"])["Role"], "replica", "replica's Role")
            eq(by(rows, "ID", S["inst"])["Role"], "primary", "primary's Role")
            eq(show(cli, S["inst"]).get("replicas"), S["rep1"], "primary's replicas")

        with report.check("database instance delete <primary with replicas>: 403"):
            r = cli("database", "instance", "delete", S["inst"])
            eq(r.rc, 1, "exit code")
            has(r.out, "Detach replicas before deleting replica source. (HTTP 403)", "stdout")
            has(r.err, "Unable to delete the specified database instance(s).", "stderr")
            eq(show(cli, S["inst"])["status"], "ACTIVE", "primary still there")

        with report.check("database instance update <replica id> --detach-replica-source"):
            cli("database", "instance", "update", S["rep1"], "--detach-replica-source").ok()
            wait_show(cli, S["rep1"], lambda i: "replica_of" not in i and active(i),
                      "stopped being a replica")
            s = show(cli, S["inst"])
            assert "replicas" not in s, f"primary still lists replicas: {s.get('replicas')!r}"

        with report.check("database instance detach <replica name>"):
            c = cli("database", "instance", "create", "rep2", "--replica-of", S["inst"],
                    "-f", "json").json()
            S["rep2"] = c["id"]
            eq(c["replica_of"], S["inst"], "replica_of")
            wait_show(cli, S["rep2"], active, "became ACTIVE")
            cli("database", "instance", "detach", "rep2").ok()
            wait_show(cli, S["rep2"], lambda i: "replica_of" not in i and active(i),
                      "stopped being a replica")
            rows = list_instances(cli)
            eq(by(rows, "ID", S["rep2"])["Role"], "", "detached replica's Role")

        with report.check("database configuration attach <inst id> <cfg id> (UUIDs, no lookups)"):
            cli("database", "configuration", "attach", S["rep2"], S["cfg"]).ok()
            s = wait_show(cli, S["rep2"], lambda i: "configuration" in i, "showed the configuration")
            eq(s["configuration"], S["cfg"], "configuration")
            c = cli("database", "configuration", "show", S["cfg"], "-f", "json").json()
            eq(c["instance_count"], 1, "instance_count after attach")

        # -- upgrade -----------------------------------------------------------------------
        with report.check("database instance upgrade <name> 8.0"):
            cli("database", "instance", "upgrade", S["inst_name"], "8.0").ok()
            s = wait_show(cli, S["inst"],
                          lambda i: i.get("datastore_version") == "8.0" and active(i),
                          "ran 8.0 and became ACTIVE")
            eq(s["datastore_version_number"], "8.0.36", "datastore_version_number")
            eq(s["operating_status"], "HEALTHY", "operating_status")

        with report.check("database instance upgrade to an unknown version: error"):
            r = cli("database", "instance", "upgrade", S["inst"], "9.9")
            eq(r.rc, 1, "exit code")
            has(r.err, "Datastore version '9.9' cannot be found.", "stderr")

        # -- backups (simulated artifacts in the real backup store) -----------------------
        with report.check("database backup create <name> --instance <inst name>: NEW, then COMPLETED"):
            b = cli("database", "backup", "create", "nightly", "--instance", S["inst_name"],
                    "--description", "before the change", "-f", "json").json()
            S["backup"] = b["id"]
            eq((b["name"], b["instance_id"], b["status"]), ("nightly", S["inst"], "NEW"), "create")
            deadline = time.monotonic() + POLL_TIMEOUT
            while True:
                b = cli("database", "backup", "show", S["backup"], "-f", "json").json()
                if b["status"] == "COMPLETED":
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"backup not COMPLETED: {b!r}")
                time.sleep(0.2)
            eq(len(b["checksum"]), 64, "checksum is a SHA-256")
            has(b["locationRef"], S["backup"], "locationRef names the backup")

        with report.check("database backup list: the backup, with its instance"):
            rows = cli("database", "backup", "list", "-f", "json").json()
            row = by(rows, "ID", S["backup"])
            eq((row["Instance ID"], row["Status"]), (S["inst"], "COMPLETED"), "row")

        with report.check("database backup create --instance unknown: the CLI refuses it (its own lookup, before any request)"):
            r = cli("database", "backup", "create", "nope", "--instance", "no-such-instance")
            eq(r.rc, 1, "exit code")

        with report.check("database instance create --backup <id>: restored, ACTIVE"):
            c = cli("database", "instance", "create", "restored1", "--flavor", "2", "--size", "2",
                    "--datastore", "mysql", "--datastore-version", "8.0",
                    "--backup", S["backup"], "-f", "json").json()
            S["restored"] = c["id"]
            wait_show(cli, S["restored"], active, "became ACTIVE")

        with report.check("database backup delete <id>: gone"):
            cli("database", "backup", "delete", S["backup"]).ok()
            r = cli("database", "backup", "show", S["backup"], "-f", "json")
            eq(r.rc, 1, "show after delete fails")
        # -- backups -----------------------------------------------------------------------
        with report.check("database backup list instance <name> (no backups)"):
            rows = cli("database", "backup", "list", "instance", S["inst_name"], "-f", "json").json()
            eq(rows, [], "backups of the instance")

        with report.check("database backup list --instance <name> (no backups)"):
            rows = cli("database", "backup", "list", "--instance", S["inst_name"], "-f", "json").json()
            eq(rows, [], "backups filtered by instance")

        with report.check("database backup list (no backups)"):
            eq(cli("database", "backup", "list", "-f", "json").json(), [], "backups")

        # -- quotas and limits ---------------------------------------------------------------
        # A UUID-like project: the CLI resolves any other name through Keystone.
        qp = "5e1f0c2a9b8d4e7f8a6b5c4d3e2f1a0b"
        member = cli.as_(project=qp)
        with report.check("database quota update <project> instances 1 (admin)"):
            q = admin("database", "quota", "update", qp, "instances", "1", "-f", "json").json()
            eq(q, {"instances": 1}, "the limit set")

        with report.check("database quota show <project> (admin): in use, reserved, limit"):
            member("database", "instance", "create", "q1", "--flavor", "1", "--size", "1",
                   "--datastore", "mysql", "-f", "json").ok()
            rows = admin("database", "quota", "show", qp, "-f", "json").json()
            eq(by(rows, "Resource", "instances"),
               {"Resource": "instances", "In Use": 1, "Reserved": 0, "Limit": 1}, "instances row")
            eq(by(rows, "Resource", "backups")["Limit"], 50, "backups default")

        with report.check("database instance create over the lowered quota: 413"):
            r = member("database", "instance", "create", "q2", "--flavor", "1", "--size", "1",
                       "--datastore", "mysql")
            eq(r.rc, 1, "exit code")
            has(r.err, "Quota exceeded for resources: ['instances']. (HTTP 413)", "stderr")

        with report.check("database quota update as non-admin: 401"):
            r = member("database", "quota", "update", qp, "instances", "9")
            eq(r.rc, 1, "exit code")
            has(r.err, "User does not have admin privileges. (HTTP 401)", "stderr")

        with report.check("database quota update <project> cpus 2: unknown resource"):
            r = admin("database", "quota", "update", qp, "cpus", "2")
            eq(r.rc, 1, "exit code")
            has(r.err, "Unknown quota resources cpus. (HTTP 404)", "stderr")

        with report.check("database limit list: the project's absolute limits"):
            r = member("database", "limit", "list").ok()
            for key, value in (("max_instances", "1"), ("max_backups", "50"), ("verb", "ABSOLUTE")):
                if not re.search(rf"\|\s*{key}\s*\|\s*{value}\s*\|", r.out):
                    raise AssertionError(f"no {key} = {value} in:\n{r.out}")

        # -- delete ------------------------------------------------------------------------
        with report.check("database instance delete unknown UUID: 404 message"):
            ghost = "11111111-2222-3333-4444-555555555555"
            r = cli("database", "instance", "delete", ghost)
            eq(r.rc, 1, "exit code")
            has(r.out, f"Resource {ghost} cannot be found. (HTTP 404)", "stdout")
            has(r.err, "Unable to delete the specified database instance(s).", "stderr")

        with report.check("database instance delete <id> <name> <name>"):
            r = cli("database", "instance", "delete", S["inst"], "rep1", "rep2").ok()
            for i in (S["inst"], S["rep1"], S["rep2"]):
                has(r.out, f"Request to delete database instance {i} has been accepted.", "stdout")
            deadline = time.monotonic() + POLL_TIMEOUT
            while True:
                ids = {row["ID"] for row in list_instances(cli)}
                if not ids & {S["inst"], S["rep1"], S["rep2"]}:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"still listed after {POLL_TIMEOUT}s: {ids!r}")
                time.sleep(0.3)

        with report.check("database instance show <deleted id>: not found"):
            r = cli("database", "instance", "show", S["inst"])
            eq(r.rc, 1, "exit code")
            has(r.err, f"No instance with a name or ID of '{S['inst']}' exists.", "stderr")

        with report.check("database configuration show after its instance was deleted"):
            c = cli("database", "configuration", "show", "cfg1", "-f", "json").json()
            eq(c["instance_count"], 0, "instance_count")

        # -- promote / eject (issue #15) ------------------------------------------------------
        replica_source_actions(cli, report)
        # -- databases, users and root -------------------------------------------------------
        guest_admin_sessions(cli, report)

        # -- an instance that stays in BUILD -------------------------------------------------
        with report.check("delete while BUILD: 422 not ready (second troved, long latency)"):
            slow.start()
            print(f"troved (latency 600 s) at {slow.base}", flush=True)
            scli = Cli(args.openstack, slow)
            c = scli("database", "instance", "create", "slow1", "--flavor", "ds1G", "--size", "1",
                     "--datastore", "postgresql", "-f", "json").json()
            S["slow"] = c["id"]
            eq((c["status"], c["operating_status"]), ("BUILD", ""), "create")
            r = scli("database", "instance", "delete", "slow1")
            eq(r.rc, 1, "exit code")
            has(r.out, f"Instance {S['slow']} is not ready. (Status is BUILD). (HTTP 422)", "stdout")
            has(r.err, "Unable to delete the specified database instance(s).", "stderr")
            eq(show(scli, S["slow"])["status"], "BUILD", "still building")
            rows = list_instances(scli)
            eq(by(rows, "ID", S["slow"])["Status"], "BUILD", "listed as BUILD")

        # -- instance actions: restart, resize, reset status -------------------------------
        instance_actions(args, report, S, cli, slow)

        # -- real databases: README's quick start, as a user runs it ---------------------
        local_sessions(args, report, workdir, servers)
    except Exception:
        report.failed += 1
        print("FAIL harness:", flush=True)
        traceback.print_exc(file=sys.stdout)
    finally:
        for s in servers:
            s.stop()
        if report.failed:
            for s in servers:
                tail = s.log_tail() if s.port is not None else ""
                if tail.strip():
                    print(f"--- troved log ({s.dir}):\n{tail}", flush=True)
        for s in servers:
            s.close()
        if report.failed and args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    elapsed = time.monotonic() - started
    print(f"runtime {elapsed:.1f}s", flush=True)
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    return 1 if report.failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--troved", default=os.path.join(here, "..", "..", "target", "debug", "troved"))
    p.add_argument("--openstack", default=os.path.join(os.path.dirname(sys.executable), "openstack"),
                   help="the openstack executable (default: next to this python)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir when a check fails")
    args = p.parse_args()
    args.troved = os.path.abspath(args.troved)
    if not os.access(args.troved, os.X_OK):
        sys.exit(f"no troved binary at {args.troved} (build it first: cargo build)")
    if not shutil.which(args.openstack):
        sys.exit(f"no openstack executable at {args.openstack}")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
