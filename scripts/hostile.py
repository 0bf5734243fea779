#!/usr/bin/env python3
"""A hostile client against `lienthong demo`, on loopback only.

Starts the demo (release binary if built, else debug) in a temporary directory on free
ports, then runs each attack of issue 17 from 127.0.0.1 while a legitimate caller probes
from 127.0.0.2 (`/healthz` on the admin listener and an authenticated lookup). For each
attack it prints what it saw: answers by status, audit records added (from
`lienthong_audit_records_total`), door refusals by reason, and whether the probes were
answered during the attack.

    python3 scripts/hostile.py [--binary target/release/lienthong] [--quick]

Needs wrk and h2load (Debian: wrk nghttp2-client) for the floods; without them those
attacks are skipped, and say so. Counts are bounded and every connection targets loopback.
"""

import argparse
import http.client
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTACKER = "127.0.0.1"
PROBE = "127.0.0.2"
KEY = "demo-onestop-key"
CTX = {
    "X-Procedure-Code": "1.001612",
    "X-Dossier-Id": "000.00.53.H48-251128-0001",
    "X-Officer-Id": "canbo01",
}


def binary(arg):
    if arg:
        return os.path.abspath(arg)
    for b in ("target/release/lienthong", "target/debug/lienthong"):
        p = os.path.join(ROOT, b)
        if os.path.exists(p):
            return p
    sys.exit("build lienthong first (cargo build --release)")


class Demo:
    def __init__(self, exe):
        self.dir = tempfile.mkdtemp(prefix="hostile-")
        self.log = open(os.path.join(self.dir, "demo.out"), "w+")
        env = dict(os.environ, LIENTHONG_LOG__LEVEL="warn")
        self.proc = subprocess.Popen([exe, "demo", "--ephemeral-ports"], cwd=self.dir,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            text = open(self.log.name).read()
            lookup = re.search(r"lookup API \(REST \+ gRPC\)\s+http://([\d.]+):(\d+)", text)
            admin = re.search(r"admin\s+http://([\d.]+):(\d+)/dashboard", text)
            citizen = re.search(r"/v1/citizens/(\d{12})", text)
            if lookup and admin and citizen:
                self.lookup = int(lookup.group(2))
                self.admin = int(admin.group(2))
                self.citizen = citizen.group(1)
                return
            time.sleep(0.2)
        sys.exit("the demo did not start:\n" + open(self.log.name).read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the source port at connect, by the whole 4-tuple


def connect_from(source, port, timeout):
    """A connection from `source`. The port is chosen at connect time, so that the attacker's
    20,000 sockets on 127.0.0.1 do not exhaust the ports a bind would pick from."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def request(port, path, headers=None, source=PROBE, method="GET", body=None, timeout=5):
    """(status, seconds) of one request from `source`, or (error, seconds) if unanswered."""
    started = time.perf_counter()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.sock = connect_from(source, port, timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, time.perf_counter() - started
    except OSError as e:
        return f"{type(e).__name__}: {e}", time.perf_counter() - started


def metrics(demo):
    c = http.client.HTTPConnection("127.0.0.1", demo.admin, timeout=5)
    c.sock = connect_from(PROBE, demo.admin, 5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {"records": 0.0, "refusals": {}}
    for line in text.splitlines():
        if line.startswith("lienthong_audit_records_total "):
            out["records"] = float(line.split()[-1])
        m = re.match(r'lienthong_door_refusals_total\{listener="(\w+)",reason="(\w+)"\} (\S+)', line)
        if m:
            out["refusals"][f"{m.group(1)}/{m.group(2)}"] = float(m.group(3))
    return out


class Prober:
    """Probes /healthz and an authenticated lookup from 127.0.0.2 while an attack runs."""

    def __init__(self, demo):
        self.demo, self.stop_flag, self.results = demo, False, {"healthz": [], "lookup": []}
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        headers = dict(CTX, Authorization=f"Bearer {KEY}")
        while not self.stop_flag:
            self.results["healthz"].append(request(self.demo.admin, "/healthz"))
            self.results["lookup"].append(
                request(self.demo.lookup, f"/v1/citizens/{self.demo.citizen}", headers))
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop_flag = True
        self.thread.join()

    def summary(self):
        def one(name, ok):
            rs = self.results[name]
            answered = sum(1 for s, _ in rs if s == ok)
            worst = max((t for _, t in rs), default=0)
            failures = sorted({str(s) for s, _ in rs if s != ok})
            why = f", failed: {failures}" if failures else ""
            return f"{name} {answered}/{len(rs)} answered {ok} (slowest {worst * 1000:.0f} ms{why})"
        return one("healthz", 200) + "; " + one("lookup", 200)


def attack(demo, title, run):
    before = metrics(demo)
    with Prober(demo) as probe:
        seen = run()
    # The door sums refusals per window: wait for the window to close.
    time.sleep(11)
    after = metrics(demo)
    refusals = {k: int(v - before["refusals"].get(k, 0)) for k, v in after["refusals"].items()
                if v - before["refusals"].get(k, 0) > 0}
    print(f"\n== {title}")
    print(f"   saw: {seen}")
    own = sum(1 for s, _ in probe.results["lookup"] if isinstance(s, int))
    print(f"   audit records added: {int(after['records'] - before['records']) - own} "
          f"(besides the probe's own {own} lookups, each recorded)")
    print(f"   door refusals: {refusals or 'none'}")
    print(f"   during it: {probe.summary()}")


def wrk(url, seconds, headers, connections=10):
    if not shutil.which("wrk"):
        return "skipped: wrk is not installed"
    script = os.path.join(tempfile.gettempdir(), "hostile-status.lua")
    with open(script, "w") as f:
        f.write("codes = {}\nresponse = function(status) codes[status] = (codes[status] or 0) + 1 end\n"
                "done = function() end\n")
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (f"{total.group(1) if total else '?'} requests, "
            f"{non2xx.group(1) if non2xx else 0} not 2xx")


def h2load_grpc(port, seconds):
    if not shutil.which("h2load"):
        return "skipped: h2load is not installed"
    body = os.path.join(tempfile.gettempdir(), "hostile-grpc.bin")
    with open(body, "wb") as f:
        f.write(b"\x00\x00\x00\x00\x00")
    out = subprocess.run(
        ["h2load", "-c", "10", "-m", "10", "-D", str(seconds), "-d", body,
         "-H", "content-type: application/grpc", "-H", "te: trailers",
         f"http://127.0.0.1:{port}/lienthong.v1.LookupService/GetCitizen"],
        capture_output=True, text=True).stdout
    done = re.search(r"requests: .*?(\d+) done", out)
    return f"{done.group(1) if done else '?'} gRPC calls answered"


def hold(port, payload, limit=60):
    """Seconds until the server closes a connection that sent `payload` and then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    started = time.perf_counter()
    if payload:
        s.sendall(payload)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                break
    except (socket.timeout, OSError):
        pass
    s.close()
    return time.perf_counter() - started


def hold_idle(port, count, out):
    """Opens `count` connections from 127.0.0.1 and holds them; puts (opened, failed, still
    open after 2 s) on `out`. Runs in a process of its own, so that the probe's descriptors
    are not the attacker's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 100), max(hard, count + 100)))
    except (ValueError, OSError):
        pass
    socks, failed = [], 0
    for _ in range(count):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            failed += 1
    time.sleep(2)
    open_now = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                continue
            open_now += 1
        except BlockingIOError:
            open_now += 1
        except OSError:
            pass
    out.put((len(socks), failed, open_now))
    time.sleep(1)
    for s in socks:
        s.close()


def idle_flood(demo, count):
    import multiprocessing
    # Two processes, so that the attacker's own descriptor limit is not what stops it.
    out = multiprocessing.Queue()
    halves = [count // 2, count - count // 2]
    procs = [multiprocessing.Process(target=hold_idle, args=(demo.lookup, n, out)) for n in halves]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    opened, failed, open_now = (sum(r[i] for r in results) for i in range(3))
    return (f"{count} connections tried from 127.0.0.1: {opened} opened, {failed} failed at the "
            f"client, {open_now} still open after 2 s")


def forms(demo):
    lines = []
    authed = dict(CTX, Authorization=f"Bearer {KEY}")

    def show(label, port, path, headers, method="GET", body=b""):
        # A raw exchange: the server may answer (413) before the body is all sent.
        s = connect_from(PROBE, port, 10)
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        try:
            s.sendall(head.encode() + body)
        except OSError:
            pass
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
        s.close()
        text = answer.decode(errors="replace")
        status = text.split(" ", 2)[1] if text.startswith("HTTP/") else "no answer"
        ct = re.search(r"(?im)^content-type: (.*?)\r$", text)
        code = re.search(r'"code":"(\w+)"', text)
        rid = re.search(r"(?im)^x-request-id:", text)
        lines.append(f"{label}: {status} {ct.group(1) if ct else '-'} "
                     f"code={code.group(1) if code else '-'} request-id={'yes' if rid else 'no'}")

    show("unknown path", demo.lookup, "/v1/nothing", authed)
    show("413", demo.lookup, "/v1/batch", dict(authed, **{"Content-Type": "application/json"}),
         "POST", b" " * (5 * 1024 * 1024))
    show("duplicated parameter", demo.lookup, f"/v1/citizens/{demo.citizen}?fields=a&fields=b", authed)
    items = ",".join(['{"dataset":"population.citizen","key":"%s"}' % demo.citizen] * 101)
    show("unauthenticated batch of 101", demo.lookup, "/v1/batch", {"Content-Type": "application/json"},
         "POST", ('{"items":[%s]}' % items).encode())
    show("raw non-ASCII X-Officer-Id", demo.lookup, f"/v1/citizens/{demo.citizen}",
         dict(authed, **{"X-Officer-Id": "c\u00e1n"}))
    show("unauthenticated malformed batch", demo.lookup, "/v1/batch", {}, "POST", b"{")
    for purpose in ("abc%ZZ", "abc%", "%C3%28"):
        show(f"X-Purpose {purpose}", demo.lookup, f"/v1/citizens/{demo.citizen}",
             dict(authed, **{"X-Purpose": purpose}))
    c = http.client.HTTPConnection("127.0.0.1", demo.lookup)
    c.sock = connect_from(PROBE, demo.lookup, 10)
    c.request("GET", f"/v1/citizens/{demo.citizen}", headers=authed)
    r = c.getresponse()
    r.read()
    lines.append(f"RateLimit-Limit {r.getheader('ratelimit-limit')}, RateLimit-Remaining {r.getheader('ratelimit-remaining')}")
    return lines


def latency(demo, n=300):
    headers = dict(CTX, Authorization=f"Bearer {KEY}")
    c = http.client.HTTPConnection("127.0.0.1", demo.lookup, timeout=10)
    c.sock = connect_from(PROBE, demo.lookup, 10)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        c.request("GET", f"/v1/citizens/{demo.citizen}", headers=headers)
        c.getresponse().read()
        times.append(time.perf_counter() - started)
    c.close()
    times.sort()
    return times[int(len(times) * 0.99) - 1] * 1000, statistics.median(times) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary")
    ap.add_argument("--quick", action="store_true", help="shorter floods, fewer idle connections")
    a = ap.parse_args()
    flood_s = 3 if a.quick else 10
    idle_n = 2000 if a.quick else 20100
    demo = Demo(binary(a.binary))
    try:
        lookup = f"http://127.0.0.1:{demo.lookup}"
        print(f"demo: lookup {demo.lookup}, admin {demo.admin}; attacker {ATTACKER}, probe {PROBE}")
        unloaded = latency(demo)
        attack(demo, f"unauthenticated REST flood, wrk -t1 -c10 -d{flood_s}s",
               lambda: wrk(f"{lookup}/v1/citizens/{demo.citizen}", flood_s, {}))
        attack(demo, "unauthenticated gRPC GetCitizen flood, h2load 5 s",
               lambda: h2load_grpc(demo.lookup, 5))
        attack(demo, "admin token guessing, 3 s",
               lambda: wrk(f"http://127.0.0.1:{demo.admin}/admin/v1/grants", 3,
                           {"Authorization": "Bearer guess"}))
        attack(demo, "an idle connection, a half-sent header, a declared-but-unsent body",
               lambda: "held open {:.1f} s, {:.1f} s, {:.1f} s".format(
                   hold(demo.lookup, b""),
                   hold(demo.lookup, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"),
                   hold(demo.lookup, ("POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                      "Content-Length: 100\r\n\r\n" % KEY).encode())))
        attack(demo, f"{idle_n} idle connections from one client", lambda: idle_flood(demo, idle_n))
        print("\n== answers outside the documented form, and context")
        for line in forms(demo):
            print("   " + line)
        # An authenticated caller's latency during an unauthenticated flood.
        results = {}
        flood = threading.Thread(target=lambda: results.setdefault(
            "flood", wrk(f"{lookup}/v1/citizens/{demo.citizen}", flood_s, {})))
        flood.start()
        time.sleep(0.5)
        loaded = latency(demo)
        flood.join()
        print("\n== an authenticated caller (127.0.0.2), 300 sequential cache hits")
        print(f"   unloaded: p50 {unloaded[1]:.2f} ms, p99 {unloaded[0]:.2f} ms")
        print(f"   during an unauthenticated flood ({results.get('flood')}): "
              f"p50 {loaded[1]:.2f} ms, p99 {loaded[0]:.2f} ms ({loaded[0] / unloaded[0]:.1f}x)")
    finally:
        demo.stop()


if __name__ == "__main__":
    main()
