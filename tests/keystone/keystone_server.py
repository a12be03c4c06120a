#!/usr/bin/env python3
"""A real Keystone on loopback for troved's identity tests (issue #16).

Run with the Python of a venv that holds PyPI `keystone` and `gunicorn`
(tests/keystone/install.sh makes one). Three steps, so that the caller owns the
server's process (it can stop and restart it):

  keystone_server.py init DIR PORT [--expiration SECS]
      keystone.conf (SQLite database, fernet tokens) in DIR, `keystone-manage
      db_sync`, `fernet_setup`, `credential_setup` and `bootstrap` (user `admin`
      in project `admin`, roles admin/member/reader, the identity endpoints).
      The admin's password is written to DIR/admin-password.
  keystone_server.py serve DIR PORT
      Replaces itself with gunicorn serving Keystone on 127.0.0.1:PORT (foreground:
      kill the pid to stop it; serve again on the same DIR to restart it).
  keystone_server.py provision URL DIR [--troved-url URL]
      With the admin's password: the `service` role and troved's service user in
      the `service` project, projects `p1` and `p2`, member users `alice` (p1) and
      `bob` (p2), a second admin `ops` (admin project); with --troved-url also the
      `database` service and its endpoints `URL/v1.0/%(tenant_id)s`. Prints JSON
      with every id and password. Safe to run again: it finds what exists, keeps
      each user's password (DIR/passwords.json) and replaces the database endpoints.

Nothing here is troved's code: it only prepares a cloud for the tests, as an
operator would with `openstack` commands (docs/operations.md).
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def conf_path(d):
    return os.path.join(d, "keystone.conf")


def write_conf(d, port, expiration):
    d = os.path.abspath(d)
    text = f"""[DEFAULT]
log_file = {d}/keystone.log
use_stderr = false
public_endpoint = http://127.0.0.1:{port}/

[database]
connection = sqlite:///{d}/keystone.db

[token]
provider = fernet
expiration = {expiration}

[fernet_tokens]
key_repository = {d}/fernet-keys

[fernet_receipts]
key_repository = {d}/fernet-keys

[credential]
key_repository = {d}/credential-keys

[identity]
# Tests log in often: bcrypt's default 12 rounds cost ~0.25 s a login.
password_hash_rounds = 4
"""
    with open(conf_path(d), "w") as f:
        f.write(text)


def manage(d, *args):
    exe = os.path.join(os.path.dirname(sys.executable), "keystone-manage")
    cmd = [exe, "--config-file", conf_path(d), *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{r.stdout}\n{r.stderr}")


def init(args):
    d = os.path.abspath(args.dir)
    os.makedirs(d, exist_ok=True)
    for sub in ("fernet-keys", "credential-keys"):
        os.makedirs(os.path.join(d, sub), mode=0o700, exist_ok=True)
    write_conf(d, args.port, args.expiration)
    password = secrets.token_urlsafe(16)
    with open(os.path.join(d, "admin-password"), "w") as f:
        f.write(password)
    user = os.environ.get("USER") or "root"
    manage(d, "db_sync")
    manage(d, "fernet_setup", "--keystone-user", user, "--keystone-group", user)
    manage(d, "credential_setup", "--keystone-user", user, "--keystone-group", user)
    url = f"http://127.0.0.1:{args.port}/v3"
    manage(d, "bootstrap", f"--bootstrap-password={password}",
           "--bootstrap-admin-url", url, "--bootstrap-internal-url", url,
           "--bootstrap-public-url", url, "--bootstrap-region-id", "RegionOne")


def serve(args):
    d = os.path.abspath(args.dir)
    wsgi = os.path.join(d, "keystone_wsgi.py")
    # oslo.config parses the process's own arguments: gunicorn's must not reach it.
    with open(wsgi, "w") as f:
        f.write("import sys\nsys.argv = sys.argv[:1]\n"
                "from keystone.server import wsgi\n"
                "application = wsgi.initialize_public_application()\n")
    os.environ["OS_KEYSTONE_CONFIG_FILES"] = conf_path(d)
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.execv(gunicorn, [gunicorn, "--chdir", d, "--bind", f"127.0.0.1:{args.port}",
                        "--workers", "1", "--threads", "8", "--timeout", "60",
                        "--error-logfile", os.path.join(d, "gunicorn.log"),
                        "keystone_wsgi:application"])


class Keystone:
    def __init__(self, url, token=None):
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, ok=(200, 201, 204)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("X-Auth-Token", self.token)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, dict(r.headers), json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return e.code, dict(e.headers), None
            raise SystemExit(f"{method} {path}: {e.code} {e.read()[:300]!r}")

    def login(self, user, password, project, domain="Default"):
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "password": password, "domain": {"name": domain}}}},
            "scope": {"project": {"name": project, "domain": {"name": domain}}}}}
        _, headers, _ = self.call("POST", "/auth/tokens?nocatalog", body)
        return headers["X-Subject-Token"]

    def find_or_create(self, kind, name, body, query=""):
        _, _, found = self.call("GET", f"/{kind}s?name={name}{query}")
        if found[f"{kind}s"]:
            return found[f"{kind}s"][0]["id"]
        _, _, made = self.call("POST", f"/{kind}s", {kind: body})
        return made[kind]["id"]

    def grant(self, project, user, role):
        self.call("PUT", f"/projects/{project}/users/{user}/roles/{role}")


def provision(args):
    d = os.path.abspath(args.dir)
    with open(os.path.join(d, "admin-password")) as f:
        admin_password = f.read().strip()
    ks = Keystone(args.url)
    ks.token = ks.login("admin", admin_password, "admin")
    out = {"url": ks.url, "admin": {"user": "admin", "password": admin_password,
                                    "project": "admin"}}
    ids = {}
    for role in ("admin", "member", "reader", "service"):
        ids[role] = ks.find_or_create("role", role, {"name": role})
    projects = {}
    for name in ("admin", "service", "p1", "p2"):
        projects[name] = ks.find_or_create(
            "project", name, {"name": name, "domain_id": "default"})
    out["projects"] = projects
    users = [("troved", "service", ["service"]), ("alice", "p1", ["member"]),
             ("bob", "p2", ["member"]), ("ops", "admin", ["admin", "member"])]
    out["users"] = {}
    # Each user's password is made once and kept in DIR, so that running this again
    # (e.g. to register troved's endpoint once its port is known) changes nothing.
    saved = os.path.join(d, "passwords.json")
    passwords = {}
    if os.path.exists(saved):
        with open(saved) as f:
            passwords = json.load(f)
    fresh = {name for name, _, _ in users if name not in passwords}
    for name in fresh:
        passwords[name] = secrets.token_urlsafe(12)
    with open(saved, "w") as f:
        json.dump(passwords, f)
    for name, project, roles in users:
        password = passwords[name]
        uid = ks.find_or_create("user", name, {"name": name, "domain_id": "default",
                                               "password": password})
        if name in fresh:
            # An existing user made before passwords.json: set the known password
            # (only then: a password change revokes the user's tokens).
            ks.call("PATCH", f"/users/{uid}", {"user": {"password": password}})
        for role in roles:
            ks.grant(projects[project], uid, ids[role])
        out["users"][name] = {"id": uid, "password": password, "project": project,
                              "project_id": projects[project]}
    out["admin"]["project_id"] = projects["admin"]
    if args.troved_url:
        sid = ks.find_or_create("service", "trove",
                                {"name": "trove", "type": "database", "enabled": True})
        _, _, eps = ks.call("GET", f"/endpoints?service_id={sid}")
        for ep in eps["endpoints"]:
            ks.call("DELETE", f"/endpoints/{ep['id']}")
        url = args.troved_url.rstrip("/") + "/v1.0/%(tenant_id)s"
        for iface in ("public", "internal", "admin"):
            ks.call("POST", "/endpoints", {"endpoint": {
                "service_id": sid, "interface": iface, "url": url,
                "region_id": "RegionOne", "enabled": True}})
        out["database_service"] = sid
    json.dump(out, sys.stdout, indent=1)
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("init")
    a.add_argument("dir")
    a.add_argument("port", type=int)
    a.add_argument("--expiration", type=int, default=3600)
    a.set_defaults(fn=init)
    a = sub.add_parser("serve")
    a.add_argument("dir")
    a.add_argument("port", type=int)
    a.set_defaults(fn=serve)
    a = sub.add_parser("provision")
    a.add_argument("url")
    a.add_argument("dir")
    a.add_argument("--troved-url")
    a.set_defaults(fn=provision)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
