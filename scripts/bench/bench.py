#!/usr/bin/env python3
"""lienthong against the alternatives, on the same work, in one run on this machine.

    scripts/bench/bench.py [--quick] [--repeats N] [--duration S] [--postgres URL]
                           [--memory-records N] [--write docs/BENCHMARKS.md]
                           [--baseline BIN] [--cache-hit-only]

--baseline BIN adds another lienthong binary (an earlier commit, built separately) to the
cache-hit REST comparison, measured round by round beside this one and the peers, so that a
change can be shown to keep (or not) the speed of the commit before it. --cache-hit-only
stops after that comparison and the herd.

Each system under test (lienthong, nginx, HAProxy, the simulator called directly) runs
pinned to CPU 0; the load generators (wrk, h2load, loadgen) and the shared upstream
simulator run on CPU 1. Every measurement is repeated, the systems interleaved round by
round, and the median is reported with what makes the figures comparable: status counts,
cache hit ratio (from the upstream's own call counter) and the audit settings.

Needs: a release build (cargo build --release, then --example loadgen --example floor), and wrk,
h2load, nginx, haproxy (Debian: wrk nghttp2-client nginx haproxy). Peer configurations are
the templates next to this file.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(ROOT, "target", "release", "lienthong")
LOADGEN = os.path.join(ROOT, "target", "release", "examples", "loadgen")
FLOOR = os.path.join(ROOT, "target", "release", "examples", "floor")

SUT_CPU, LOAD_CPU = "0", "1"
PORTS = {
    "sim_pop": 27081, "sim_biz": 27082, "sim_land": 27083,
    "direct_biz": 27182, "direct_land": 27183, "direct_pop": 27181,
    "lookup": 28080, "admin": 29090, "nginx": 28081, "haproxy": 28082, "floor": 28083,
    "baseline_lookup": 28084, "baseline_admin": 29091,
}
API_KEY = "demo-onestop-key"
CONTEXT = {
    "X-Procedure-Code": "1.001612",
    "X-Dossier-Id": "000.00.53.H48-251128-0001",
    "X-Officer-Id": "canbo01",
}
SIM_TOKEN = "demo-business-token"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def http(url, headers=None, data=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url, what, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        try:
            http(url)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not come up at {url}")


class Procs:
    def __init__(self):
        self.all = []

    def start(self, args, cpu, log_path, env=None):
        p = subprocess.Popen(
            ["taskset", "-c", cpu] + args,
            stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True)
        self.all.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self):
        for p in reversed(self.all):
            self.stop(p)


def sim_calls(port, op):
    _, body = http(f"http://127.0.0.1:{port}/_sim/stats")
    return json.loads(body)["calls"].get(op, 0)


def rss_mb(pid):
    # The child of taskset is the process itself (taskset execs).
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def metric(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def buckets(text, name):
    """A histogram's cumulative buckets, {le: count}, summed over its series."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            le = float(re.search(r'le="([^"]+)"', line).group(1).replace("+Inf", "inf"))
            out[le] = out.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def quantile(before, after, q):
    """The q-quantile (seconds) of what a histogram observed between two scrapes, with
    Prometheus' linear interpolation inside a bucket."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank, lower, below = q * counts[-1], 0.0, 0.0
    for edge, c in zip(edges, counts):
        if c >= rank:
            if edge == float("inf"):
                return lower
            return lower + (edge - lower) * (rank - below) / max(c - below, 1e-9)
        lower, below = edge, c
    return lower


def fsync_probe(directory, n=300):
    """The disk's own latency for a small append + fdatasync, what a sync commit waits on."""
    path = os.path.join(directory, "fsync-probe")
    times = []
    with open(path, "ab") as f:
        for _ in range(n):
            started = time.perf_counter()
            f.write(b"x" * 2048)
            f.flush()
            os.fdatasync(f.fileno())
            times.append((time.perf_counter() - started) * 1000)
    os.remove(path)
    times.sort()
    return {"p50_ms": times[n // 2], "p99_ms": times[int(n * 0.99) - 1]}


def metrics():
    return http(f"http://127.0.0.1:{PORTS['admin']}/metrics")[1].decode()


def cpu_busy(cpu, interval=0.5):
    """The share of `interval` that `cpu` spent busy, from /proc/stat."""
    def sample():
        for line in open("/proc/stat"):
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return sum(v), v[3] + v[4]
        return 1, 1
    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def settle(cpu, quiet=0.1, most=20):
    """Waits (at most `most` seconds) until `cpu` is busy less than `quiet` of the time."""
    deadline = time.time() + most
    while time.time() < deadline and cpu_busy(cpu) > quiet:
        pass


# ---- systems under test ----

def gateway_config(tmp, name, cache_ttl=600, durability="sync", postgres=None, sim=None,
                   lookup=None, admin=None, door=True):
    """The demo config with the benchmark's ports, its own audit store, and a generous quota
    on every grant so the rate limiter runs on every call."""
    sim = sim or {"pop": PORTS["sim_pop"], "biz": PORTS["sim_biz"], "land": PORTS["sim_land"]}
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    demo = os.path.join(ROOT, "config", "demo")
    text = {f: open(os.path.join(demo, f)).read() for f in os.listdir(demo)}
    gw = (text["gateway.toml"]
          .replace("127.0.0.1:8080", f"127.0.0.1:{lookup or PORTS['lookup']}")
          .replace("127.0.0.1:9090", f"127.0.0.1:{admin or PORTS['admin']}")
          .replace('level = "info"', 'level = "warn"')
          .replace('durability = "sync"', f'durability = "{durability}"'))
    if postgres:
        gw += f'\n[storage]\npostgres_url = "{postgres}"\nschema = "bench_{int(time.time())}"\n'
    conn = (text["connectors.toml"]
            .replace("127.0.0.1:7081", f"127.0.0.1:{sim['pop']}")
            .replace("127.0.0.1:7082", f"127.0.0.1:{sim['biz']}")
            .replace("127.0.0.1:7083", f"127.0.0.1:{sim['land']}")
            .replace("ttl_s = 600", f"ttl_s = {cache_ttl}")
            .replace("capacity = 100000", "capacity = 2000000")
            .replace("capacity_rps = 200", "capacity_rps = 100000")
            .replace("burst = 50", "burst = 100000"))
    # The benchmark's own grants: the demo's with a quota no run reaches, so the rate
    # limiter runs on every call without refusing one.
    # Binding to declared dossiers is off: the load looks up many citizens under one
    # context (its cost is a micro-benchmark, see docs/BENCHMARKS.md).
    grants = re.sub(r'(?m)^(quota|binding) = .*\n', '', text["grants.toml"]).replace(
        'legal_basis', 'quota = "1000000000/min"\nlegal_basis')
    # The benchmark's own door: the load generator's address is exempt from the per-source
    # budgets and connection caps (it is one source sending what many would); the global
    # limits stay on. A baseline from before the door has no [door] to read.
    if door:
        gw += '\n[door]\nexempt = ["127.0.0.0/8"]\nmax_in_flight = 100000\n'
    for f, t in [("gateway.toml", gw), ("connectors.toml", conn),
                 ("consumers.toml", text["consumers.toml"]), ("grants.toml", grants),
                 ("procedures.toml", text["procedures.toml"])]:
        open(os.path.join(d, f), "w").write(t)
    return os.path.join(d, "gateway.toml")


def start_gateway(procs, tmp, name, binary=None, **kw):
    main = gateway_config(tmp, name, **kw)
    p = procs.start([binary or BIN, "serve", "--config", main], SUT_CPU, os.path.join(tmp, f"{name}.log"))
    wait_http(f"http://127.0.0.1:{kw.get('admin') or PORTS['admin']}/readyz", "lienthong")
    return p


def render(template, tmp, **values):
    text = open(os.path.join(HERE, template)).read()
    for k, v in {**PORTS, **values, "tmp": tmp, "sim_token": SIM_TOKEN}.items():
        text = text.replace("{{" + k + "}}", str(v))
    path = os.path.join(tmp, template.replace(".tmpl", ""))
    open(path, "w").write(text)
    return path


def start_nginx(procs, tmp):
    conf = render("nginx.conf.tmpl", tmp)
    p = procs.start(["nginx", "-c", conf, "-g", "daemon off;"], SUT_CPU, os.path.join(tmp, "nginx.out"))
    wait_http(f"http://127.0.0.1:{PORTS['nginx']}/", "nginx")
    return p


def start_haproxy(procs, tmp):
    conf = render("haproxy.cfg.tmpl", tmp)
    p = procs.start(["haproxy", "-f", conf], SUT_CPU, os.path.join(tmp, "haproxy.log"))
    wait_http(f"http://127.0.0.1:{PORTS['haproxy']}/", "haproxy")
    return p


# ---- load ----

def wrk(url_base, path_prefix, keys_file, headers, duration, connections, tmp):
    script = os.path.join(tmp, "keys.lua")
    open(script, "w").write(
        'local keys = {}\nfor line in io.lines("%s") do keys[#keys + 1] = line end\n'
        'local i = 0\nrequest = function()\n  i = i + 1\n'
        '  return wrk.format("GET", "%s" .. keys[(i %% #keys) + 1])\nend\n'
        % (keys_file, path_prefix))
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
            "--latency", "-s", script]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args + [url_base], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    return {"rps": rps, "requests": total, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "", "p50_ms": pct(50), "p99_ms": pct(99)}


def loadgen(args):
    out = subprocess.run(["taskset", "-c", LOAD_CPU, LOADGEN] + args,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"loadgen: {out.stderr}")
    return json.loads(out.stdout)


def auth_headers():
    return {"Authorization": f"Bearer {API_KEY}", **CONTEXT}


def header_args(headers):
    out = []
    for k, v in headers.items():
        out += ["--header", f"{k}: {v}"]
    return out


def median(runs, key):
    return statistics.median(r[key] for r in runs)


# ---- gRPC request bodies, encoded by hand (protobuf wire format) ----

def pb_len(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def pb_str(field, s):
    return pb_len(field, s.encode())


def pb_uint(field, n):
    return varint(field << 3) + varint(n)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def grpc_frame(message):
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load(port, path, body_file, headers, duration, clients, tmp):
    args = ["taskset", "-c", LOAD_CPU, "h2load", "-c", str(clients), "-m", "16",
            "-D", str(duration), "-d", body_file,
            "-H", "content-type: application/grpc", "-H", "te: trailers"]
    for k, v in headers.items():
        args += ["-H", f"{k.lower()}: {v}"]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)

    def ms(v):
        return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
    return {"rps": float(m.group(1)), "http_2xx": int(st.group(1)), "http_other": sum(map(int, st.groups()[1:])),
            "mean_ms": ms(mean.group(1)) if mean else 0.0}


def grpc_status_check(port, service, method, message_json):
    """One call with a real gRPC client (h2load ignores grpc-status)."""
    code = (
        "import sys, json\n"
        "from grpc_requests import Client\n"
        f"c = Client.get_by_endpoint('127.0.0.1:{port}')\n"
        f"print(json.dumps(c.request('{service}', '{method}', json.loads(sys.argv[1]), metadata=[('authorization', 'Bearer {API_KEY}')])))\n")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(message_json)], capture_output=True, text=True)
    return out.returncode == 0, (out.stdout or out.stderr)[-300:]


# ---- the run ----

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short runs, for trying the script")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--postgres", default=os.environ.get("LIENTHONG_TEST_POSTGRES_URL"))
    ap.add_argument("--memory-records", type=int, default=1_000_000)
    ap.add_argument("--write", help="write the report (markdown) here")
    ap.add_argument("--baseline", help="another lienthong binary to compare in the cache-hit run")
    ap.add_argument("--baseline-door", action="store_true",
                    help="give the baseline the benchmark's [door] too (a build that reads it)")
    ap.add_argument("--cache-hit-only", action="store_true",
                    help="stop after the cache-hit comparison and the herd")
    a = ap.parse_args()
    if a.quick:
        a.repeats, a.duration, a.memory_records = 1, 3, 50_000
    for tool in ["wrk", "h2load", "nginx", "haproxy", "taskset"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install wrk nghttp2-client nginx haproxy)")
    for b in [BIN, LOADGEN, FLOOR]:
        if not os.path.exists(b):
            raise SystemExit(f"{b} is missing: cargo build --release && "
                             "cargo build --release --example loadgen --example floor")

    tmp = tempfile.mkdtemp(prefix="lienthong-bench-")
    # nginx's workers run as an unprivileged user and write their cache here.
    os.chmod(tmp, 0o777)
    procs = Procs()
    results = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        citizens = max(200_000, a.memory_records)
        # The shared upstream (on the load CPU) and a second simulator on the SUT CPU for the
        # "called directly" baseline.
        procs.start([BIN, "sim", f"--citizens={citizens}",
                     f"--population-addr=127.0.0.1:{PORTS['sim_pop']}",
                     f"--business-addr=127.0.0.1:{PORTS['sim_biz']}",
                     f"--land-addr=127.0.0.1:{PORTS['sim_land']}"], LOAD_CPU, os.path.join(tmp, "sim.log"))
        direct = procs.start([BIN, "sim", f"--population-addr=127.0.0.1:{PORTS['direct_pop']}",
                              f"--business-addr=127.0.0.1:{PORTS['direct_biz']}",
                              f"--land-addr=127.0.0.1:{PORTS['direct_land']}"], SUT_CPU, os.path.join(tmp, "direct.log"))
        wait_http(f"http://127.0.0.1:{PORTS['sim_biz']}/_sim/stats", "simulator", 300)
        wait_http(f"http://127.0.0.1:{PORTS['direct_biz']}/_sim/stats", "simulator")
        keys = subprocess.run([BIN, "sim", "samples", "--dataset", "business.enterprise", "--count", str(a.keys)],
                              capture_output=True, text=True, check=True).stdout.split()
        keys_file = os.path.join(tmp, "enterprises.txt")
        open(keys_file, "w").write("\n".join(keys) + "\n")

        # (a) cache-hit REST: lienthong, nginx, HAProxy, the simulator directly.
        gw = start_gateway(procs, tmp, "sync")
        ng = start_nginx(procs, tmp)
        hp = start_haproxy(procs, tmp)
        # The framework floor: lienthong's HTTP stack answering with a fixed copy of one of its
        # own answers, doing nothing else.
        answer = os.path.join(tmp, "answer.json")
        open(answer, "wb").write(http(f"http://127.0.0.1:{PORTS['lookup']}/v1/enterprises/{keys[0]}",
                                      auth_headers())[1])
        bl = None
        if a.baseline:
            bl = start_gateway(procs, tmp, "baseline", binary=a.baseline,
                               lookup=PORTS["baseline_lookup"], admin=PORTS["baseline_admin"],
                               door=a.baseline_door)
        fl = procs.start([FLOOR, "--addr", f"127.0.0.1:{PORTS['floor']}", "--body", answer], SUT_CPU,
                         os.path.join(tmp, "floor.log"))
        wait_http(f"http://127.0.0.1:{PORTS['floor']}/", "floor")
        targets = {
            "lienthong": (f"http://127.0.0.1:{PORTS['lookup']}", "/v1/enterprises/", auth_headers()),
            "nginx": (f"http://127.0.0.1:{PORTS['nginx']}", "/v1/enterprises/", auth_headers()),
            "haproxy": (f"http://127.0.0.1:{PORTS['haproxy']}", "/v1/enterprises/", auth_headers()),
            "direct": (f"http://127.0.0.1:{PORTS['direct_biz']}", "/api/dkkd/v1/doanhnghiep/",
                       {"Authorization": f"Bearer {SIM_TOKEN}"}),
            "floor": (f"http://127.0.0.1:{PORTS['floor']}", "/v1/enterprises/", auth_headers()),
        }
        if bl:
            targets["baseline"] = (f"http://127.0.0.1:{PORTS['baseline_lookup']}", "/v1/enterprises/", auth_headers())
        log("warming caches")
        for name, (base, prefix, headers) in targets.items():
            for k in keys:
                http(f"{base}{prefix}{k}", headers)
        runs = {n: [] for n in targets}
        for rep in range(a.repeats):
            for name, (base, prefix, headers) in targets.items():
                # The previous system's background work (a gateway's audit indexing) must
                # not run into this one's measurement on the shared core.
                settle(SUT_CPU)
                before = sim_calls(PORTS["sim_biz"], "ChiTietDoanhNghiep")
                r = wrk(base, prefix, keys_file, headers, a.duration, a.connections, tmp)
                r["upstream_calls"] = sim_calls(PORTS["sim_biz"], "ChiTietDoanhNghiep") - before
                runs[name].append(r)
                log(f"(a) round {rep + 1} {name}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms, non-2xx {r['non2xx']}")
        results["cache_hit_rest"] = {
            n: {"rps": median(rs, "rps"), "p50_ms": median(rs, "p50_ms"), "p99_ms": median(rs, "p99_ms"),
                "non2xx": sum(r["non2xx"] for r in rs), "requests": sum(r["requests"] for r in rs),
                "upstream_calls": sum(r["upstream_calls"] for r in rs), "runs": [round(r["rps"]) for r in rs]}
            for n, rs in runs.items()}
        m = metrics()
        results["cache_hit_rest"]["lienthong"]["records_per_commit"] = (
            metric(m, "lienthong_audit_records_total") / max(1, metric(m, "lienthong_audit_commits_total")))

        # (d) a herd: N concurrent misses on one key.
        herd = {}
        for i, (name, (base, prefix, headers)) in enumerate([(n, t) for n, t in targets.items() if n not in ("direct", "floor", "baseline")]):
            # A key no system has been asked for yet.
            warmed = set(keys)
            fresh = [k for k in subprocess.run([BIN, "sim", "samples", "--dataset", "business.enterprise",
                                                "--count", str(2 * a.keys + 50)], capture_output=True, text=True).stdout.split()
                     if k not in warmed][i]
            before = sim_calls(PORTS["sim_biz"], "ChiTietDoanhNghiep")
            r = loadgen(["--url", f"{base}{prefix}{{key}}", "--key", fresh, "--burst", "200"] + header_args(headers))
            herd[name] = {"requests": r["requests"], "statuses": r["statuses"],
                          "upstream_calls": sim_calls(PORTS["sim_biz"], "ChiTietDoanhNghiep") - before}
            log(f"(d) herd {name}: {herd[name]}")
        results["herd"] = herd
        procs.stop(ng)
        procs.stop(hp)
        procs.stop(fl)
        if bl:
            procs.stop(bl)
            r = results["cache_hit_rest"]
            log(f"(a) this build against the baseline: {r['lienthong']['rps'] / r['baseline']['rps']:.3f}x "
                f"({r['lienthong']['rps']:.0f} vs {r['baseline']['rps']:.0f} req/s); "
                f"against nginx: {r['lienthong']['rps'] / r['nginx']['rps']:.3f}x, "
                f"baseline {r['baseline']['rps'] / r['nginx']['rps']:.3f}x")
        if a.cache_hit_only:
            procs.stop(gw)
            print(json.dumps(results, indent=2))
            return

        # (b) cache-hit gRPC: lienthong GetLandParcel vs the land simulator's own gRPC.
        parcel = subprocess.run([BIN, "sim", "samples", "--dataset", "land.parcel", "--count", "1"],
                                capture_output=True, text=True, check=True).stdout.split()[0]
        ctx = pb_str(1, CONTEXT["X-Procedure-Code"]) + pb_str(2, CONTEXT["X-Dossier-Id"]) + pb_str(3, CONTEXT["X-Officer-Id"])
        body_gw = os.path.join(tmp, "get_land.bin")
        open(body_gw, "wb").write(grpc_frame(pb_len(1, ctx) + pb_str(2, parcel)))
        commune, sheet, number = parcel.split("-")
        body_direct = os.path.join(tmp, "tracuu.bin")
        open(body_direct, "wb").write(grpc_frame(pb_str(1, commune) + pb_uint(2, int(sheet)) + pb_uint(3, int(number))))
        ok_gw, said_gw = grpc_status_check(PORTS["lookup"], "lienthong.v1.LookupService", "GetLandParcel",
                                           {"context": {"procedure_code": CONTEXT["X-Procedure-Code"], "dossier_id": CONTEXT["X-Dossier-Id"], "officer_id": CONTEXT["X-Officer-Id"]}, "parcel_id": parcel})
        grpc_runs = {"lienthong": [], "direct": []}
        for rep in range(a.repeats):
            grpc_runs["lienthong"].append(h2load(PORTS["lookup"], "/lienthong.v1.LookupService/GetLandParcel", body_gw,
                                                 {"authorization": f"Bearer {API_KEY}"}, a.duration, 16, tmp))
            grpc_runs["direct"].append(h2load(PORTS["direct_land"], "/cadastre.v1.CadastreService/TraCuuThuaDat", body_direct,
                                              {}, a.duration, 16, tmp))
            log(f"(b) round {rep + 1}: lienthong {grpc_runs['lienthong'][-1]['rps']:.0f}, direct {grpc_runs['direct'][-1]['rps']:.0f} req/s")
        results["cache_hit_grpc"] = {n: {"rps": median(rs, "rps"), "mean_ms": median(rs, "mean_ms"),
                                         "http_2xx": sum(r["http_2xx"] for r in rs), "http_other": sum(r["http_other"] for r in rs)}
                                     for n, rs in grpc_runs.items()}
        results["cache_hit_grpc"]["grpc_status_checked"] = {"ok": ok_gw, "answer": said_gw if not ok_gw else "OK"}

        # (f) memory: idle, then with N cached records (filled through the batch API).
        procs.stop(gw)
        gw = start_gateway(procs, tmp, "memory")
        time.sleep(1)
        idle = rss_mb(gw.pid)
        ids = subprocess.run([BIN, "sim", "samples", "--dataset", "population.citizen", "--count", str(a.memory_records),
                              f"--citizens={citizens}"],
                             capture_output=True, text=True, check=True).stdout.split()
        started = time.time()
        def send(chunk):
            body = json.dumps({"items": [{"dataset": "population.citizen", "key": k, "fields": ["personal_id"]} for k in chunk]}).encode()
            return http(f"http://127.0.0.1:{PORTS['lookup']}/v1/batch", {**auth_headers(), "Content-Type": "application/json"}, body, "POST")[0]
        chunks = [ids[i:i + 100] for i in range(0, len(ids), 100)]
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            statuses = list(ex.map(send, chunks))
        m = metrics()
        cached = metric(m, 'lienthong_cache_entries{dataset="population.citizen"}') if "lienthong_cache_entries" in m else None
        full = rss_mb(gw.pid)
        results["memory"] = {"idle_mb": idle, "records": len(ids), "filled_mb": full,
                             "fill_seconds": time.time() - started, "batch_statuses": {str(s): statuses.count(s) for s in set(statuses)},
                             "cache_entries_metric": cached,
                             "bytes_per_record": (full - idle) * 1024 * 1024 / max(1, len(ids))}
        log(f"(f) memory: {results['memory']}")
        procs.stop(gw)

        # (e) audit: sync against async durability, SQLite (and PostgreSQL when given).
        audit = {}
        stores = [("sqlite", None)] + ([("postgres", a.postgres)] if a.postgres else [])
        for store, url in stores:
            for durability in ["sync", "async"]:
                g = start_gateway(procs, tmp, f"audit-{store}-{durability}", durability=durability, postgres=url)
                base, prefix, headers = targets["lienthong"]
                for k in keys:
                    http(f"{base}{prefix}{k}", headers)
                m0 = metrics()
                rs = [wrk(base, prefix, keys_file, headers, a.duration, a.connections, tmp) for _ in range(a.repeats)]
                m1 = metrics()
                records = metric(m1, "lienthong_audit_records_total") - metric(m0, "lienthong_audit_records_total")
                commits = metric(m1, "lienthong_audit_commits_total") - metric(m0, "lienthong_audit_commits_total")
                audit[f"{store}-{durability}"] = {"rps": median(rs, "rps"), "p99_ms": median(rs, "p99_ms"),
                                                  "records_per_commit": records / max(1, commits),
                                                  "non2xx": sum(r["non2xx"] for r in rs)}
                log(f"(e) {store} {durability}: {audit[f'{store}-{durability}']}")
                procs.stop(g)
                if url and shutil.which("psql"):
                    # The run's schema goes with it.
                    schema = re.search(r'schema = "(bench_\d+)"', open(os.path.join(tmp, f"audit-{store}-{durability}", "gateway.toml")).read()).group(1)
                    subprocess.run(["psql", "-q", url, "-c", f"DROP SCHEMA {schema} CASCADE"], capture_output=True)
        results["audit"] = audit

        # (c) the miss path: lienthong with its cache off against the simulator it calls.
        # The provider is the shared one, on the load's CPU: on lienthong's own core it
        # would measure the two competing for that core, not what lienthong adds. Both
        # rows call that same provider, with the load beside it.
        g = start_gateway(procs, tmp, "miss", cache_ttl=0)
        miss_targets = {
            "lienthong": targets["lienthong"],
            "direct": (f"http://127.0.0.1:{PORTS['sim_biz']}", "/api/dkkd/v1/doanhnghiep/",
                       {"Authorization": f"Bearer {SIM_TOKEN}"}),
        }
        sat = {"lienthong": [], "direct": []}
        for rep in range(a.repeats):
            for name in ["lienthong", "direct"]:
                base, prefix, headers = miss_targets[name]
                sat[name].append(wrk(base, prefix, keys_file, headers, a.duration, a.connections, tmp))
        half = median(sat["lienthong"], "rps") / 2
        fixed = {"lienthong": [], "direct": []}
        commits_before = buckets(metrics(), "lienthong_audit_commit_duration_seconds")
        for rep in range(a.repeats):
            for name in ["lienthong", "direct"]:
                base, prefix, headers = miss_targets[name]
                fixed[name].append(loadgen(["--url", f"{base}{prefix}{{key}}", "--keys", keys_file,
                                            "--rate", str(int(half)), "--duration", str(a.duration)] + header_args(headers)))
        commits_after = buckets(metrics(), "lienthong_audit_commit_duration_seconds")
        results["miss_commit_ms"] = {
            "p50": 1000 * quantile(commits_before, commits_after, 0.5),
            "p99": 1000 * quantile(commits_before, commits_after, 0.99)}
        results["fsync_probe"] = fsync_probe(tmp)
        results["miss"] = {
            "saturation_rps": {n: median(rs, "rps") for n, rs in sat.items()},
            "fixed_rate_rps": int(half),
            "fixed": {n: {"p50_ms": median(rs, "p50_ms"), "p99_ms": median(rs, "p99_ms"),
                          "statuses": rs[-1]["statuses"]} for n, rs in fixed.items()},
        }
        log(f"(c) miss: {results['miss']}")
        procs.stop(g)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    results["machine"] = machine()
    print(json.dumps(results, indent=2))
    if a.write:
        open(a.write, "w").write(report(results, a))
        log(f"wrote {a.write}")


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = open("/proc/meminfo").readline().split(":")[1].strip()
    except OSError:
        pass
    versions = {}
    for tool, args in [("nginx", ["-v"]), ("haproxy", ["-v"]), ("wrk", ["-v"]), ("h2load", ["--version"])]:
        out = subprocess.run([tool] + args, capture_output=True, text=True)
        versions[tool] = (out.stdout + out.stderr).strip().splitlines()[0]
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory": mem, "kernel": platform.release(), "tools": versions}


def report(r, a):
    h = r["cache_hit_rest"]
    lt = h["lienthong"]
    rows = "\n".join(
        f"| {n} | {v['rps']:,.0f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['non2xx']} | "
        f"{1 - v['upstream_calls'] / max(1, v['requests']):.4f} | {lt['rps'] / v['rps']:.2f} |"
        for n, v in h.items() if isinstance(v, dict))
    g = r["cache_hit_grpc"]
    au = r["audit"]
    audit_rows = "\n".join(f"| {k} | {v['rps']:,.0f} | {v['p99_ms']:.2f} | {v['records_per_commit']:.1f} | {v['non2xx']} |"
                           for k, v in au.items())
    herd_rows = "\n".join(f"| {k} | {v['requests']} | {v['upstream_calls']} | {v['statuses']} |" for k, v in r["herd"].items())
    mi = r["miss"]
    mem = r["memory"]
    m = r["machine"]
    # An async run that shed calls (its audit queue full) answered fast 503s: its req/s is not
    # comparable, and neither is a sync cost computed from it.
    sync_cost = {s: (f"{1 - au[f'{s}-sync']['rps'] / au[f'{s}-async']['rps']:.0%}"
                     if au[f"{s}-async"]["non2xx"] == 0 else
                     f"not comparable (async shed {au[f'{s}-async']['non2xx']:,} calls with a full audit queue)")
                 for s in ["sqlite", "postgres"] if f"{s}-sync" in au}
    return f"""# Benchmarks

Generated by `scripts/bench/bench.py` on {r['started']} ({a.repeats} interleaved rounds of {a.duration} s each;
medians). The machine is shared and noisy: absolute figures mean little, ratios measured in the
same run mean a lot.

## Method

- **Pinning**: every system under test runs alone on CPU 0 (`taskset -c 0`); wrk, h2load, the
  load generator (`examples/loadgen.rs`) and the shared upstream simulator run on CPU 1.
- **Same work**: `GET /v1/enterprises/{{code}}` over {a.keys} enterprise codes, {a.connections} connections,
  after one warm-up pass over every key, so every system answers from its cache.
  - **lienthong** runs its whole pipeline: API-key auth, context validation, grant check with
    field projection, a quota on every grant, the cache, **a synchronous audit record per call
    (a group commit to SQLite's commit file, `fsync = true`)** and metrics.
  - **nginx** (`scripts/bench/nginx.conf.tmpl`): `proxy_cache` + `proxy_cache_lock` +
    `limit_req` + a JSON access log.
  - **HAProxy** (`scripts/bench/haproxy.cfg.tmpl`): its cache + a stick-table rate limit + a
    JSON log.
  - **direct**: the simulator's own GET, on CPU 0.
  - **floor** (`examples/floor.rs`): lienthong's HTTP stack (tokio, hyper through axum,
    the system allocator) answering every request with a fixed copy of a lienthong answer and doing
    nothing else. No real gateway on this stack can be faster; it is not a peer, it shows
    how much of lienthong's cost is the stack itself.
  - The peers do far less per request: no per-consumer grants, no field projection, no
    durable audit.
- **Cache hit ratio** is `1 - upstream calls / requests`, from the upstream simulator's own
  counter. Non-2xx counts are shown. A run with errors is not comparable.

## Machine

{m['cpu']}, {m['cpus']} CPUs, {m['memory']}, Linux {m['kernel']}.
Tools: {'; '.join(m['tools'].values())}.

## (a) Cache-hit REST lookups

| system | req/s | p50 ms | p99 ms | non-2xx | cache hit ratio | lienthong ÷ this |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

Per-round req/s: {', '.join(f"{n} {v['runs']}" for n, v in h.items() if isinstance(v, dict))}.
Audit records per commit during the lienthong runs: {lt.get('records_per_commit', 0):.1f}.

Target: lienthong ≥ 1.5 × nginx and ≥ HAProxy. This run: **{lt['rps'] / h['nginx']['rps']:.2f} × nginx**, **{lt['rps'] / h['haproxy']['rps']:.2f} × HAProxy**.
The framework floor itself reaches {h['floor']['rps'] / h['nginx']['rps']:.2f} × nginx; lienthong does {lt['rps'] / h['floor']['rps']:.2f} of the floor's throughput.

## (b) Cache-hit gRPC lookups

h2load, 16 clients × 16 streams, one pre-encoded `GetLandParcel` (lienthong) and `TraCuuThuaDat`
(the land simulator directly). h2load does not read `grpc-status`, so one call was checked
first with a real gRPC client: {g['grpc_status_checked']['answer']}.

| system | req/s | mean ms | HTTP 2xx | other |
| --- | ---: | ---: | ---: | ---: |
| lienthong | {g['lienthong']['rps']:,.0f} | {g['lienthong']['mean_ms']:.2f} | {g['lienthong']['http_2xx']} | {g['lienthong']['http_other']} |
| direct | {g['direct']['rps']:,.0f} | {g['direct']['mean_ms']:.2f} | {g['direct']['http_2xx']} | {g['direct']['http_other']} |

## (c) The miss path: what lienthong adds to a provider call

lienthong (CPU 0) with its cache off, against the simulator it calls, which runs on CPU 1
beside the load (on lienthong's core the two would compete for it): the provider is the
same in both rows.
- Saturation: lienthong {mi['saturation_rps']['lienthong']:,.0f} req/s; the provider
  directly {mi['saturation_rps']['direct']:,.0f} req/s (ratio
  {mi['saturation_rps']['lienthong'] / mi['saturation_rps']['direct']:.2f}).
- At {mi['fixed_rate_rps']} req/s, half of lienthong's saturation, open loop:
  - p50: {mi['fixed']['lienthong']['p50_ms']:.2f} ms against {mi['fixed']['direct']['p50_ms']:.2f} ms;
  - p99: {mi['fixed']['lienthong']['p99_ms']:.2f} ms against {mi['fixed']['direct']['p99_ms']:.2f} ms.

  **lienthong adds {mi['fixed']['lienthong']['p99_ms'] - mi['fixed']['direct']['p99_ms']:.2f} ms at p99**
  (target: under 1 ms). Statuses: {mi['fixed']}.
- What a sync answer waits on: the audit group commit took {r['miss_commit_ms']['p50']:.2f} ms
  at p50 and {r['miss_commit_ms']['p99']:.2f} ms at p99 during the fixed-rate runs (from
  `lienthong_audit_commit_duration_seconds`). This disk's own small append + `fdatasync`,
  measured alone: {r['fsync_probe']['p50_ms']:.2f} ms at p50, {r['fsync_probe']['p99_ms']:.2f} ms at p99.

## (d) A herd: 200 concurrent misses on one key

| system | requests | upstream calls | statuses |
| --- | ---: | ---: | --- |
{herd_rows}

## (e) Audit writer

Cache-hit REST as in (a), lienthong alone. Sync: a response leaves after its record is
committed; async: once queued. fsync on.

| store-durability | req/s | p99 ms | records per commit | non-2xx |
| --- | ---: | ---: | ---: | ---: |
{audit_rows}

What sync costs in throughput against async (target: under 20%): {'; '.join(f'{k} {v}' for k, v in sync_cost.items())}.

## (f) Memory

Resident set size:
- idle: {mem['idle_mb']:.0f} MB;
- with {mem['records']:,} cached citizen records: {mem['filled_mb']:.0f} MB, about
  {mem['bytes_per_record']:.0f} bytes a record. They were filled in {mem['fill_seconds']:.0f} s
  through the batch API (statuses {mem['batch_statuses']}).
"""


if __name__ == "__main__":
    main()
