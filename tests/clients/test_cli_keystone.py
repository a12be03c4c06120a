#!/usr/bin/env python3
"""Real-client test with real identity: the openstack CLI, Keystone and troved.

    python tests/clients/test_cli_keystone.py --troved target/debug/troved \
        --openstack venv/bin/openstack --keystone-python keystone-venv/bin/python

Starts a real Keystone on a free loopback port (tests/keystone/keystone_server.py:
SQLite, fernet tokens), troved with `--auth keystone` and its service user, and
registers troved in Keystone's catalog as the `database` service
(`.../v1.0/%(tenant_id)s`). Then the UNMODIFIED openstack CLI authenticates with
passwords from a clouds.yaml (no --os-endpoint, no token): the CLI finds troved in the
catalog, troved validates the CLI's Keystone token.

Checks: a member of p1 creates, lists, shows and deletes an instance; the member
cannot list all projects' instances (mgmt); a member of p2 neither sees nor shows p1's
instance; an admin sees it with --all-projects; troved's policy file (`instance:restart`
admin-only) refuses the member a restart. Output as tests/clients/test_cli.py.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cli import (  # noqa: E402  (the same harness as the noauth CLI test)
    CLI_TIMEOUT, UUID_RE, Report, Result, Troved, active, by, eq, free_port, has, stop_child,
)

HERE = os.path.dirname(os.path.abspath(__file__))
KEYSTONE_SCRIPT = os.path.join(HERE, "..", "keystone", "keystone_server.py")


class Keystone:
    """A real Keystone: `init` once, `serve` as a child we own, `provision` fixtures."""

    def __init__(self, python, workdir):
        self.python = python
        self.dir = os.path.join(workdir, "keystone")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v3"
        self.proc = None
        self.log = None

    def script(self, *args):
        r = subprocess.run([self.python, KEYSTONE_SCRIPT, *args], capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"keystone_server.py {args[0]} failed: {r.stderr[-2000:]}")
        return r.stdout

    def start(self):
        self.script("init", self.dir, str(self.port))
        self.log = open(os.path.join(self.dir, "serve.log"), "ab")
        self.proc = subprocess.Popen([self.python, KEYSTONE_SCRIPT, "serve", self.dir,
                                      str(self.port)], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keystone exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError("keystone did not answer within 60 s")

    def provision(self, troved_url=None):
        extra = ["--troved-url", troved_url] if troved_url else []
        return json.loads(self.script("provision", self.url, self.dir, *extra))

    def stop(self):
        stop_child(self.proc)
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None


def write_clouds(path, ks, info):
    """clouds.yaml (JSON is YAML) with one cloud per test user, password auth."""
    clouds = {}
    for name in ("alice", "bob", "ops"):
        user = info["users"][name]
        clouds[name] = {
            "auth": {"auth_url": ks.url, "username": name, "password": user["password"],
                     "project_name": user["project"], "user_domain_name": "Default",
                     "project_domain_name": "Default"},
            "region_name": "RegionOne", "identity_api_version": 3, "interface": "public",
        }
    with open(path, "w") as f:
        json.dump({"clouds": clouds}, f, indent=1)


class CloudCli:
    """Runs `openstack --os-cloud NAME ...` with only the clouds.yaml: no endpoint."""

    def __init__(self, openstack, clouds_yaml, cloud):
        self.openstack = openstack
        self.clouds_yaml = clouds_yaml
        self.cloud = cloud

    def __call__(self, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["PYTHONWARNINGS"] = "ignore"
        env["OS_CLIENT_CONFIG_FILE"] = self.clouds_yaml
        argv = [self.openstack, "--os-cloud", self.cloud, *args]
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=CLI_TIMEOUT)
        return Result(["openstack", *argv[1:]], proc)


def instances(cli, *extra):
    return cli("database", "instance", "list", "-f", "json", *extra).json()


def wait_until(what, pred, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what} within {timeout}s")
        time.sleep(0.5)


def checks(report, S, alice, bob, ops, info):
    p1 = info["projects"]["p1"]

    with report.check("keystone: alice (p1 member) creates an instance via the catalog"):
        c = alice("database", "instance", "create", "ks1", "--flavor", "1", "--size", "1",
                  "--datastore", "mysql", "-f", "json").json()
        assert UUID_RE.match(c["id"]), f"id {c['id']!r}"
        S["inst"] = c["id"]
        eq(c["name"], "ks1", "name")

    with report.check("keystone: alice shows it until ACTIVE, and lists it"):
        s = wait_until("ACTIVE", lambda: (lambda s: s if active(s) else None)(
            alice("database", "instance", "show", S["inst"], "-f", "json").json()))
        eq(s["id"], S["inst"], "id")
        row = by(instances(alice), "ID", S["inst"])
        eq((row["Name"], row["Status"]), ("ks1", "ACTIVE"), "list row")

    with report.check("keystone: alice cannot list all projects (mgmt): 401"):
        r = alice("database", "instance", "list", "--all-projects")
        eq(r.rc, 1, "exit code")
        has(r.err, "User does not have admin privileges. (HTTP 401)", "stderr")

    with report.check("keystone: bob (p2 member) neither lists nor shows alice's instance"):
        rows = instances(bob)
        assert not [x for x in rows if x["ID"] == S["inst"]], f"listed in p2: {rows!r}"
        r = bob("database", "instance", "show", S["inst"])
        eq(r.rc, 1, "exit code of show")
        has(r.err, f"No instance with a name or ID of '{S['inst']}' exists.", "stderr")

    with report.check("keystone: ops (admin) sees it with --all-projects, p1's tenant id"):
        row = by(instances(ops, "--all-projects"), "ID", S["inst"])
        eq((row["Name"], row["Tenant ID"]), ("ks1", p1), "name / Tenant ID")

    with report.check("keystone: the policy file refuses alice a restart (role:admin): 403"):
        r = alice("database", "instance", "restart", S["inst"])
        eq(r.rc, 1, "exit code")
        has(r.err, "Policy doesn't allow instance:restart to be performed. (HTTP 403)", "stderr")

    with report.check("keystone: bob cannot delete it; alice deletes it"):
        r = bob("database", "instance", "delete", S["inst"])
        eq(r.rc, 1, "exit code of bob's delete")
        alice("database", "instance", "delete", S["inst"]).ok()
        wait_until("gone from alice's list",
                   lambda: not [x for x in instances(alice) if x["ID"] == S["inst"]])


def run(args):
    report = Report()
    S = {}
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="troved-cli-keystone-")
    ks = Keystone(args.keystone_python, workdir)
    troved = None
    try:
        ks.start()
        info = ks.provision()
        svc = info["users"]["troved"]
        policy = os.path.join(workdir, "policy.yaml")
        with open(policy, "w") as f:
            f.write('# only administrators restart instances\n"instance:restart": "role:admin"\n')
        troved = Troved(args.troved, workdir, "troved", 0,
                        extra=["--auth", "keystone", "--keystone-url", ks.url,
                               "--policy-file", policy],
                        env={"TROVED_KEYSTONE_USER": "troved",
                             "TROVED_KEYSTONE_PASSWORD": svc["password"],
                             "TROVED_KEYSTONE_PROJECT": "service"})
        troved.start()
        print(f"keystone at {ks.url}, troved at {troved.base}", flush=True)
        info = ks.provision(troved_url=troved.base)
        clouds = os.path.join(workdir, "clouds.yaml")
        write_clouds(clouds, ks, info)
        alice, bob, ops = (CloudCli(args.openstack, clouds, n) for n in ("alice", "bob", "ops"))

        with report.check("keystone: the catalog lists troved as the database service"):
            rows = ops("catalog", "list", "-f", "json").json()
            db = by(rows, "Type", "database")
            has(str(db["Endpoints"]), f"{troved.base}/v1.0/", "database endpoints")

        checks(report, S, alice, bob, ops, info)
        with open(troved.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        with report.check("keystone: troved's log never shows the service password"):
            assert svc["password"] not in log, "service password in troved's log"
    except Exception as e:  # the harness itself failed: one failed check, not a crash
        report.failed += 1
        print(f"FAIL keystone harness: {e!r}", flush=True)
    finally:
        if report.failed and troved is not None:
            print(f"--- troved log:\n{troved.log_tail()}", flush=True)
        if troved is not None:
            troved.close()
        ks.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"runtime {time.monotonic() - started:.1f}s", flush=True)
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    return 1 if report.failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--troved", required=True)
    p.add_argument("--openstack", required=True)
    p.add_argument("--keystone-python", required=True,
                   help="python of a venv holding keystone and gunicorn (tests/keystone/install.sh)")
    args = p.parse_args()
    args.troved = os.path.abspath(args.troved)
    sys.exit(run(args))


if __name__ == "__main__":
    main()
