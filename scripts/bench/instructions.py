#!/usr/bin/env python3
"""User-space instructions per cache-hit call, counted by callgrind: a figure that does not
drift with the shared host's speed, for comparing builds of lienthong with each other.

    scripts/bench/instructions.py BIN [BIN ...] [--seconds S]

Each binary serves the (a) load's configuration under `valgrind --tool=callgrind` with
instrumentation off; after a warm-up, instrumentation is switched on while wrk sends cache
hits over 64 connections for S seconds (default 10), and the total of instructions is
divided by the requests answered. Every thread of the gateway is counted (the audit writer,
sealing, the blocking pool).

Read it with its limits: valgrind hides the CPU's SHA extensions, so the chain hash and the
HMACs run in software here and count about ten times what they cost natively; the kernel's
work (sockets, fsync) is not counted; and sealing, once per log of about 27,000 records, falls
inside a run or not. Compare builds with each other, never with wall-clock figures.

Needs: valgrind, wrk, a release (or `--profile quick`) build of each binary.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    for tool in ["valgrind", "callgrind_control", "wrk", "taskset"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install valgrind wrk)")
    tmp = tempfile.mkdtemp(prefix="lienthong-instructions-")
    procs = b.Procs()
    try:
        first = os.path.abspath(a.binaries[0])
        procs.start([first, "sim", "--citizens=2000",
                     f"--population-addr=127.0.0.1:{b.PORTS['sim_pop']}",
                     f"--business-addr=127.0.0.1:{b.PORTS['sim_biz']}",
                     f"--land-addr=127.0.0.1:{b.PORTS['sim_land']}"], b.LOAD_CPU, os.path.join(tmp, "sim.log"))
        b.wait_http(f"http://127.0.0.1:{b.PORTS['sim_biz']}/_sim/stats", "simulator", 300)
        keys = subprocess.run([first, "sim", "samples", "--dataset", "business.enterprise", "--count", "500"],
                              capture_output=True, text=True, check=True).stdout.split()
        keys_file = os.path.join(tmp, "keys.txt")
        open(keys_file, "w").write("\n".join(keys) + "\n")
        for n, binary in enumerate(a.binaries):
            lookup, admin = b.PORTS["lookup"] + 100 + n, b.PORTS["admin"] + 100 + n
            config = b.gateway_config(tmp, f"g{n}", lookup=lookup, admin=admin)
            out = os.path.join(tmp, f"callgrind{n}.out")
            p = procs.start(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                             os.path.abspath(binary), "serve", "--config", config], b.SUT_CPU,
                            os.path.join(tmp, f"g{n}.log"))
            b.wait_http(f"http://127.0.0.1:{admin}/readyz", "lienthong", 300)
            base = f"http://127.0.0.1:{lookup}"
            for k in keys:
                b.http(f"{base}/v1/enterprises/{k}", b.auth_headers())
            b.wrk(base, "/v1/enterprises/", keys_file, b.auth_headers(), 3, 64, tmp)
            subprocess.run(["callgrind_control", "-i", "on", str(p.pid)], capture_output=True, check=True)
            w = b.wrk(base, "/v1/enterprises/", keys_file, b.auth_headers(), a.seconds, 64, tmp)
            subprocess.run(["callgrind_control", "-i", "off", str(p.pid)], capture_output=True, check=True)
            subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, check=True)
            time.sleep(1)
            total = 0
            for f in glob.glob(out + "*"):
                for line in open(f):
                    if line.startswith("totals:"):
                        total += int(line.split()[1])
            procs.stop(p)
            print(f"{binary}: {w['requests']} requests ({w['non2xx']} non-2xx), "
                  f"{total / max(1, w['requests']):,.0f} instructions a call", flush=True)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
