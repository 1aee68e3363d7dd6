"""The results table: ratios to the direct call and to the bare relay."""


from __future__ import annotations

import datetime as dt
import math
import statistics

from bench_common import Target


def med(t: Target, key: str, metric: str) -> float | None:
    """The repeats of one metric folded into one number: their median, or with --aggregate best the
    best of them (highest req/s, lowest latency/CPU) -- the least disturbed run on a shared machine."""
    vals = [r[metric] for r in t.results.get(key, []) if metric in r and not math.isnan(r[metric])]
    if not vals:
        return None
    if t.aggregate == "best":
        return max(vals) if metric == "rps" else min(vals)
    return statistics.median(vals)


def errs(t: Target, key: str) -> int:
    return sum(r["errors"] for r in t.results.get(key, []))


def fmt(v: float | None, nd: int = 0, suffix: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:,.{nd}f}{suffix}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def per_pass(t: Target, relay: Target, direct: Target | None) -> str:
    """Each pass's figures as ratios to the relay's in the same pass (measured seconds apart), and
    their median. On a machine whose speed changes from one minute to the next this pairing holds
    up better than a ratio of two medians taken over different minutes."""

    def pairs(key: str, fn) -> list[float]:
        mine = t.results.get(key, [])
        base = direct.results.get(key, []) if direct is not None else [None] * len(mine)
        rows = zip(mine, relay.results.get(key, []), base, strict=False)  # a failed target has fewer
        out = []
        for g, r, d in rows:
            try:
                value = fn(g, r, d)
            except (KeyError, TypeError, ZeroDivisionError):
                continue
            if value is not None and not math.isnan(value):
                out.append(value)
        return out

    def show(label: str, vals: list[float], unit: str) -> str:
        each = " ".join(f"{x:.2f}{unit}" for x in vals)
        return f"{label} {each} (median {statistics.median(vals):.2f}{unit})"

    parts = []
    for label, key in (("ns c64 req/s", "ns_c64"), ("stream req/s", "st_c16")):
        if vals := pairs(key, lambda g, r, d: g["rps"] / r["rps"]):
            parts.append(show(label, vals, "x"))
    if vals := pairs("ns_c1", lambda g, r, d: (g["p50_ms"] - d["p50_ms"]) / (r["p50_ms"] - d["p50_ms"])):
        parts.append(show("added p50", vals, "x"))
    if vals := pairs("ttfc", lambda g, r, d: g["ttfc_ms"] - d["ttfc_ms"]):
        parts.append(show("first chunk over direct", vals, " ms"))
    return "; ".join(parts)


def report(targets: list[Target], args, info: dict[str, str], pin_desc: str, driver: str, gw_version: str) -> str:
    by = {t.name: t for t in targets}
    direct, relay = by.get("direct"), by.get("relay")

    def v(t, key, metric):
        return med(t, key, metric) if t is not None else None

    lines = []
    lines.append(f"### llm-gateway benchmark — {dt.datetime.now().isoformat(timespec='seconds')}")
    lines.append("")
    lines.append(
        f"- machine: {info['nproc']} CPU ({info['cpu']}), {info['platform']}, load avg {info.get('loadavg')}, "
        f"CPU steal during the run {info.get('steal', '?')}"
    )
    lines.append(
        f"- python {info['python']}, aiohttp {info['aiohttp']}, uvloop {info['uvloop']}, "
        f"orjson {info['orjson']}" + (f", gateway {gw_version}" if gw_version else "")
    )
    drv = (
        f"wrk ({info.get('wrk')}, 1 thread, benchmarks/wrk_post.lua)"
        if driver == "wrk"
        else "Python aiohttp driver (wrk not installed or --driver python): client-bound, compare ratios only"
    )
    lines.append(f"- load generator: {drv}; TTFC: Python aiohttp client, 1 connection, sequential")
    lines.append(f"- {pin_desc}")
    lines.append(
        f"- {args.duration}s per scenario, warm-up {args.warmup}s, repeat {args.repeat} ({args.aggregate}), "
        f"{args.chunks} chunks per stream, TTFC over {args.ttfc_requests} requests "
        f"(upstream holds {args.ttfc_hold_ms:g} ms after chunk 1)" + (" — QUICK mode" if args.quick else "")
    )
    lines.append("")
    c64, st = f"ns c{args.conns_high}", f"st c{args.conns_stream}"
    head = [
        "target",
        "ns c1 req/s",
        "ns c1 p50 ms",
        "ns c1 p99 ms",
        "+p50 vs direct µs",
        f"{c64} req/s",
        "xdirect",
        "xrelay",
        "CPU µs/req",
        f"{st} req/s",
        "xdirect",
        "xrelay",
        "CPU µs/stream",
        "TTFC p50 ms",
        "stream p50 ms",
        "RSS idle MiB",
        "RSS after MiB",
    ]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    d_p50 = v(direct, "ns_c1", "p50_ms")
    for t in targets:
        if t.error and not t.results:
            lines.append(f"| {t.name} | " + " | ".join(["n/a"] * (len(head) - 1)) + " |")
            continue
        p50 = med(t, "ns_c1", "p50_ms")
        added = (p50 - d_p50) * 1000 if p50 is not None and d_p50 is not None else None
        flag = {k: (" ⚠" if errs(t, k) else "") for k in ("ns_c1", "ns_c64", "st_c16", "ttfc")}
        row = [
            t.name,
            fmt(med(t, "ns_c1", "rps")) + flag["ns_c1"],
            fmt(p50, 2),
            fmt(med(t, "ns_c1", "p99_ms"), 2),
            fmt(added) if t.name != "direct" else "0",
            fmt(med(t, "ns_c64", "rps")) + flag["ns_c64"],
            ratio(med(t, "ns_c64", "rps"), v(direct, "ns_c64", "rps")),
            ratio(med(t, "ns_c64", "rps"), v(relay, "ns_c64", "rps")),
            fmt(med(t, "ns_c64", "cpu_us_per_req")),
            fmt(med(t, "st_c16", "rps")) + flag["st_c16"],
            ratio(med(t, "st_c16", "rps"), v(direct, "st_c16", "rps")),
            ratio(med(t, "st_c16", "rps"), v(relay, "st_c16", "rps")),
            fmt(med(t, "st_c16", "cpu_us_per_req")),
            fmt(med(t, "ttfc", "ttfc_ms"), 2) + flag["ttfc"],
            fmt(med(t, "ttfc", "total_ms"), 2),
            fmt(t.rss_idle, 1),
            fmt(t.rss_after, 1),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    # summary sentences against the floor
    r_p50 = v(relay, "ns_c1", "p50_ms")
    relay_added = (r_p50 - d_p50) * 1000 if r_p50 is not None and d_p50 is not None else None
    for t in targets:
        if not t.name.startswith("gateway") or not t.results:
            continue
        p50 = med(t, "ns_c1", "p50_ms")
        added = (p50 - d_p50) * 1000 if p50 is not None and d_p50 is not None else None
        parts = [
            f"req/s {c64} {ratio(med(t, 'ns_c64', 'rps'), v(relay, 'ns_c64', 'rps'))} relay, "
            f"{st} {ratio(med(t, 'st_c16', 'rps'), v(relay, 'st_c16', 'rps'))} relay",
            "CPU per request "
            f"{ratio(med(t, 'ns_c64', 'cpu_us_per_req'), v(relay, 'ns_c64', 'cpu_us_per_req'))} relay's, "
            f"per stream {ratio(med(t, 'st_c16', 'cpu_us_per_req'), v(relay, 'st_c16', 'cpu_us_per_req'))}",
        ]
        if added is not None and relay_added is not None:
            parts.append(
                f"added p50 latency over direct {added:.0f} µs vs relay's {relay_added:.0f} µs "
                f"({ratio(added, relay_added)})"
            )
        tt, rt = med(t, "ttfc", "ttfc_ms"), v(relay, "ttfc", "ttfc_ms")
        if tt is not None and rt is not None:
            parts.append(f"TTFC {tt - rt:+.2f} ms vs relay")
        lines.append(f"- **{t.name}**: " + "; ".join(parts))
        if relay is not None and args.repeat > 1 and (paired := per_pass(t, relay, direct)):
            lines.append(f"- **{t.name}** per pass, against the relay's same pass: {paired}")
    if relay_added is not None:
        lines.append(f"- relay adds {relay_added:.0f} µs p50 over direct at 1 connection")
    for t in targets:
        if t.error:
            why = " / ".join(x.strip() for x in t.error.splitlines() if x.strip())
            lines.append(f"- **{t.name} FAILED**: {why[:600]}")
        for k in ("ns_c1", "ns_c64", "st_c16", "ttfc"):
            if errs(t, k):
                lines.append(f"- ⚠ {t.name} {k}: {errs(t, k)} failed requests (non-2xx, socket errors, timeouts)")
        lines += [f"- **{t.name}** {n}" for n in t.notes if n.startswith("⚠")]
        plain = [n for n in t.notes if not n.startswith("⚠")]
        if plain:
            lines.append(f"- {t.name}: " + "; ".join(plain))
    lines.append(
        "- columns: req/s higher is better; xdirect/xrelay = this target's req/s over theirs; "
        "`+p50 vs direct` = latency this hop adds at 1 connection; CPU = user+sys time of the relay/gateway "
        "process (the upstream's for direct) per request, steadier than req/s on a shared machine; "
        "RSS = VmRSS incl. children"
    )
    return "\n".join(lines)


