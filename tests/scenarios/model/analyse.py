#!/usr/bin/env python3
"""Issue 15's benchmark table from pipeline-stress reports.

Usage: analyse.py REPORT_DIR [REPORT_DIR ...]   (each a `--report`/`--out` folder of
one scenario in tests/scenarios/model). Prints one Markdown row per report with the
figures the issue asks for: workers held against c*, reversals of workers and buffer
capacity at steady load, time to settle after each step, overshoot over c*, peak
backlog (buffered plus waiting in publishers), p99 end-to-end latency over the whole run
and after settling (the scenario's `latency_window`: from 10 s on at steady load, 25-60 s
for the step's high phase), events lost.

Worker counts per pool are rebuilt from the decision log ("pool NAME: ... A -> B"),
so a run with several stages is read per stage.
"""
import json
import math
import re
import sys

S = 0.020  # mean service time of the model scenarios
TARGET = 0.7

# Load (λS) per scenario and stage, and when the steady part starts / steps happen.
CASES = {
    "steady_load_2": {"work": 2.0},
    "steady_load_2_wait": {"work": 2.0},
    "steady_load_6": {"work": 6.0},
    "steady_load_12": {"work": 12.0},
    "step_10x": {"work": 6.0},
    "cpu_beside_io": {"io": 6.0, "cpu": 0.75},
}


def c_star(load):
    return max(1, math.ceil(load / TARGET - 1e-9))


def reversals(values):
    """Direction changes in a sequence (repeats ignored)."""
    steps = [b - a for a, b in zip(values, values[1:]) if b != a]
    return sum(1 for a, b in zip(steps, steps[1:]) if (a > 0) != (b > 0))


def pool_series(decisions, initial):
    """Per pool: [(t, workers)] from the decision log."""
    series = {}
    pattern = re.compile(r"pool (\S+): .* (\d+) -> (\d+)$")
    for d in decisions:
        m = pattern.search(d["text"])
        if m:
            name, a, b = m.group(1), int(m.group(2)), int(m.group(3))
            s = series.setdefault(name, [(0.0, initial.get(name, a))])
            s.append((d["t"], b))
    return series


def at(series, t):
    value = series[0][1]
    for when, v in series:
        if when <= t:
            value = v
    return value


def last_change(series, start, end):
    changes = [when for when, _ in series if start <= when < end]
    return (max(changes) - start) if changes else 0.0


def ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def row(path):
    d = json.load(open(f"{path}/timeline.json"))
    settled = ms(d.get("p99_window_s"))
    name = d["scenario"]
    timeline = d["timeline"]
    duration = d["duration_s"]
    lost = d["dropped"] + d["unpublished"] + d["left"]
    peak = max((s.get("buffer_len", 0) + s.get("backlog", 0)) for s in timeline)
    caps = [s["buffer_capacity"] for s in timeline]
    workers_total = [s["workers"] for s in timeline]
    loads = CASES.get(name, {})
    series = pool_series(d["decisions"], {})
    out = []
    for stage, load in loads.items():
        s = series.get(stage, [(0.0, 1)])
        if name == "step_10x":
            cs = c_star(load)
            held = at(s, 59.0)
            settle_w = last_change(s, 20.0, 60.0)
            caps_step = [x["buffer_capacity"] for x in timeline if 20.0 <= x["t"] < 60.0]
            cap_times = [x["t"] for x in timeline if 20.0 <= x["t"] < 60.0]
            cap_settle = 0.0
            for i in range(1, len(caps_step)):
                if caps_step[i] != caps_step[i - 1]:
                    cap_settle = cap_times[i] - 20.0
            overshoot = max(v for t, v in s if 20.0 <= t < 60.0) if any(20.0 <= t < 60.0 for t, _ in s) else held
            back = last_change(s, 60.0, duration)
            out.append(
                f"| {name} ({stage}) | {cs} | {held} (end {at(s, duration)}) | "
                f"{reversals([v for t, v in s if 30.0 <= t < 60.0])} / {reversals(caps_step[10:])} | "
                f"workers {settle_w:.0f} s, capacity {cap_settle:.0f} s after the step up; "
                f"back down {back:.0f} s after | {100.0 * (overshoot / cs - 1):+.0f}% | "
                f"{peak} | {d['p99_s'] * 1000:.0f} ms | {settled} | {lost} |"
            )
        else:
            cs = c_star(load) if load else "-"
            held = at(s, duration)
            steady_w = [v for t, v in s if t >= 10.0]
            steady_c = [x["buffer_capacity"] for x in timeline if x["t"] >= 10.0]
            out.append(
                f"| {name} ({stage}) | {cs} | {held} | "
                f"{reversals([at(s, 10.0)] + steady_w)} / {reversals(steady_c)} | "
                f"last worker change at {max([t for t, _ in s] or [0]):.0f} s | - | "
                f"{peak} | {d['p99_s'] * 1000:.0f} ms | {settled} | {lost} |"
            )
    if not out:
        out.append(f"| {name} | ? | {workers_total[-1]} | ? / {reversals(caps)} | | | {peak} | "
                   f"{d['p99_s'] * 1000:.0f} ms | {settled} | {lost} |")
    return out


print("| run | c* | workers held | reversals workers / capacity (steady) | settling | overshoot | peak backlog | p99 | p99 settled | unserved + lost |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for path in sys.argv[1:]:
    for line in row(path):
        print(line.replace("| ", f"| {path.rstrip('/').split('/')[-1].split('-')[0]}: ", 1))
