#!/usr/bin/python3
"""results.py: turns one benchmark case's runs into bench/results/<name>.json, a PNG plot
(gnuplot) and a section appended to bench/RESULTS.md ($BENCH_OUT instead of bench/ if set).

  results.py --name NAME --title TITLE --plot cdf|bars:KEY --manifest RUNS.jsonl [--note TEXT]

RUNS.jsonl has one JSON object per run, written by the case script:
  {"label": "...", "cmd": "ws-bench ...", "bench": "/path/ws-bench.json" (optional),
   "extra": {"gateway_cpu_pct": 41.0, ...}}
Figures in the table come from the ws-bench JSON (--json) of each run; "extra" holds what the
script measured around it (server CPU %, RSS, ratios). Nothing is invented here: a missing
figure is printed as "-".
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# BENCH_OUT: where RESULTS.md and results/ go (default bench/; trial runs point elsewhere)
BASE = os.environ.get("BENCH_OUT") or os.path.join(ROOT, "bench")
OUT = os.path.join(BASE, "results")


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = []
    rev = os.environ.get("BENCH_REV", "")  # set by run.sh: the binaries' revision
    if not rev:
        try:
            rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
        except OSError:
            rev = ""
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "loadavg_at_end": " ".join(load), "git": rev,
            # lib.sh, BENCH_PIN=1: where ws-bench and the servers ran
            "placement": os.environ.get("BENCH_PLACEMENT", "unpinned")}


def summary(b):
    """The figures of one ws-bench JSON document."""
    if not b:
        return {}
    lat = b.get("latency_us", {})
    open_loop = b.get("latency_from") == "due"
    return {
        # open loop: latency is timed from each message's scheduled send; how far the bench
        # itself fell behind that schedule (issue 18: coordinated omission)
        "lag_p99_us": b.get("send_lag_us", {}).get("p99") if open_loop else None,
        "late_pct": b.get("late_sends", {}).get("pct") if open_loop else None,
        "conns": b.get("conns", {}).get("open_at_ready"),
        "sent": b.get("messages", {}).get("sent"),
        "received": b.get("messages", {}).get("received"),
        "errors": b.get("errors", {}).get("total"),
        "msgs_per_s": b.get("msgs_per_s") if b.get("messages", {}).get("received") else None,
        "mb_per_s": b.get("mb_per_s") if b.get("messages", {}).get("received") else None,
        "p50_us": lat.get("p50"), "p90_us": lat.get("p90"), "p99_us": lat.get("p99"),
        "p999_us": lat.get("p999"), "max_us": lat.get("max"),
        "bench_cpu_pct": b.get("bench_cpu", {}).get("pct_of_core"),
        # per connection only means something when connections outweigh fixed buffers
        "bench_bytes_per_conn": b.get("bench_memory", {}).get("bytes_per_conn")
        if (b.get("conns", {}).get("open_at_ready") or 0) >= 1000 else None,
        # recover mode: pushed while the clients were away, and the share of it the recovery
        # gave back in order before its notice; reconnect-to-notice p99
        "away": (b.get("recovery") or {}).get("away") or None,
        "recovered_pct": (b.get("recovery") or {}).get("recovered_pct")
        if (b.get("recovery") or {}).get("away") else None,
        "recovery_p99_us": (b.get("recovery") or {}).get("time_us", {}).get("p99")
        if (b.get("recovery") or {}).get("away") else None,
    }


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 100:
            return "%.0f" % v
        if v >= 10:
            return "%.1f" % v
        return "%.2f" % v
    return str(v)


def us_to_ms(v):
    return None if v is None else v / 1000.0


def plot_cdf(name, title, runs, png):
    """Latency CDF (from the exact histogram buckets) of every run that has latencies."""
    series = []
    for i, r in enumerate(runs):
        b = r.get("bench_doc") or {}
        buckets = b.get("latency_us", {}).get("buckets") or []
        total = sum(c for _, _, c in buckets)
        if not total:
            continue
        dat = os.path.join(OUT, ".%s.%d.tmp" % (name, i))
        seen = 0
        with open(dat, "w") as f:
            for lo, hi, c in buckets:
                seen += c
                f.write("%g %g\n" % (max(hi, 1.0) / 1000.0, 100.0 * seen / total))
        series.append((dat, r["label"]))
    if not series:
        return None
    gp = ["set terminal pngcairo size 900,540 font ',10' noenhanced", "set output '%s'" % png,
          "set title '%s'" % title.replace("'", ""), "set logscale x",
          "set xlabel 'latency (ms, log scale)'", "set ylabel 'messages at or below (%)'",
          "set grid", "set key bottom right", "set yrange [0:100.5]"]
    gp.append("plot " + ", ".join("'%s' using 1:2 with steps lw 2 title '%s'" %
                                  (d, l.replace("'", "")) for d, l in series))
    return gp, [d for d, _ in series]


def plot_bars(name, title, runs, key, png):
    dat = os.path.join(OUT, ".%s.bars.tmp" % name)
    n = 0
    with open(dat, "w") as f:
        for r in runs:
            v = r["extra"].get(key, r["summary"].get(key))
            if v is None:
                continue
            f.write('"%s" %g\n' % (r["label"].replace('"', ""), v))
            n += 1
    if not n:
        return None
    gp = ["set terminal pngcairo size 900,540 font ',10' noenhanced", "set output '%s'" % png,
          "set title '%s'" % title.replace("'", ""), "set style fill solid 0.6",
          "set boxwidth 0.6", "set ylabel '%s'" % key, "set grid ytics", "set yrange [0:*]",
          "set xtics rotate by -20", "unset key",
          "plot '%s' using 0:2:xtic(1) with boxes, '' using 0:2:(sprintf('%%.0f',$2)) "
          "with labels offset 0,1" % dat]
    return gp, [dat]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--title", required=True)
    ap.add_argument("--plot", default="cdf")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--note", default="")
    ap.add_argument("--mode", default="short")
    a = ap.parse_args()

    os.makedirs(OUT, exist_ok=True)
    runs = []
    with open(a.manifest) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            doc = None
            if r.get("bench") and os.path.exists(r["bench"]):
                with open(r["bench"]) as bf:
                    doc = json.load(bf)
            r["bench_doc"] = doc
            r["summary"] = summary(doc)
            r.setdefault("extra", {})
            runs.append(r)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    out = {"name": a.name, "title": a.title, "mode": a.mode, "date": now, "machine": m,
           "note": a.note,
           "runs": [{"label": r["label"], "cmd": r.get("cmd", ""), "summary": r["summary"],
                     "extra": r["extra"], "bench": r["bench_doc"]} for r in runs]}
    jpath = os.path.join(OUT, a.name + ".json")
    text = json.dumps(out, indent=1, sort_keys=True)
    # histogram buckets [low_us, high_us, count] one to a line, not one number to a line
    text = re.sub(r"\[\s+([-0-9.e+]+),\s+([-0-9.e+]+),\s+([0-9]+)\s+\]", r"[\1, \2, \3]", text)
    with open(jpath, "w") as f:
        f.write(text + "\n")

    png = os.path.join(OUT, a.name + ".png")
    plotted = False
    if shutil.which("gnuplot"):
        spec = plot_cdf(a.name, a.title, runs, png) if a.plot == "cdf" else \
            plot_bars(a.name, a.title, runs, a.plot.split(":", 1)[1], png)
        if spec:
            gp, tmps = spec
            r = subprocess.run(["gnuplot"], input="\n".join(gp) + "\n", text=True,
                               capture_output=True)
            plotted = r.returncode == 0
            if not plotted:
                print("gnuplot failed: %s" % r.stderr.strip(), file=sys.stderr)
            for t in tmps:
                os.unlink(t)
    else:
        print("gnuplot not installed (Debian gnuplot-nox): no PNG for %s" % a.name,
              file=sys.stderr)

    # RESULTS.md section
    extra_keys = []
    for r in runs:
        for k in r["extra"]:
            if k not in extra_keys:
                extra_keys.append(k)
    lag = any(r["summary"].get("late_pct") is not None for r in runs)
    rec = any(r["summary"].get("away") is not None for r in runs)
    cols = ["run", "conns", "sent", "received", "errors", "msg/s", "MB/s", "p50 ms", "p90 ms",
            "p99 ms", "p99.9 ms", "max ms", "bench B/conn", "bench cpu %"] + \
        (["send lag p99 ms", "late sends %"] if lag else []) + \
        (["pushed while away", "recovered in order %", "recovery p99 ms"] if rec else []) + \
        extra_keys
    lines = ["", "## %s" % a.title, "",
             "%s · %s mode · nproc %s · %s · kernel %s · load average at the end %s · git %s%s" %
             (now, a.mode, m["nproc"], m["cpu"], m["kernel"], m["loadavg_at_end"], m["git"],
              "" if m["placement"] == "unpinned" else " · " + m["placement"]),
             ""]
    if a.note:
        lines += [a.note, ""]
    lines += ["```"] + [r.get("cmd", "") for r in runs if r.get("cmd")] + ["```", ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in runs:
        s = r["summary"]
        row = [r["label"], fmt(s.get("conns")), fmt(s.get("sent")), fmt(s.get("received")),
               fmt(s.get("errors")), fmt(s.get("msgs_per_s")), fmt(s.get("mb_per_s")),
               fmt(us_to_ms(s.get("p50_us"))), fmt(us_to_ms(s.get("p90_us"))),
               fmt(us_to_ms(s.get("p99_us"))), fmt(us_to_ms(s.get("p999_us"))),
               fmt(us_to_ms(s.get("max_us"))), fmt(s.get("bench_bytes_per_conn")),
               fmt(s.get("bench_cpu_pct"))]
        if lag:
            row += [fmt(us_to_ms(s.get("lag_p99_us"))), fmt(s.get("late_pct"))]
        if rec:
            pct = s.get("recovered_pct")
            row += [fmt(s.get("away")), "-" if pct is None else "%.3f" % pct,
                    fmt(us_to_ms(s.get("recovery_p99_us")))]
        row += [fmt(r["extra"].get(k)) for k in extra_keys]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if lag:
        lines += ["Open-loop runs: latency is timed from each message's scheduled send time; "
                  "send lag = how far ws-bench's own sends fell behind that schedule, late "
                  "sends = more than `--late-threshold` (1 ms) behind.", ""]
    lines.append("Data: [results/%s.json](results/%s.json)%s" %
                 (a.name, a.name, ", plot: ![%s](results/%s.png)" % (a.name, a.name)
                  if plotted else ""))
    md = os.path.join(BASE, "RESULTS.md")
    new = not os.path.exists(md)
    with open(md, "a") as f:
        if new:
            f.write("# wsgw benchmark results\n\nAppended by `make bench` / `make bench-full` "
                    "(bench/run.sh); each section is one run of one case, newest last. "
                    "Client, gateway and API share the machine's cores: read every figure "
                    "with the load average beside it.\n")
        f.write("\n".join(lines) + "\n")
    print("wrote %s%s and a section of %s" % (jpath, " + .png" if plotted else "", md))


if __name__ == "__main__":
    main()
