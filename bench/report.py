"""The table printed at the end of a run (Markdown, pasted into the README)."""


def verdict(ok):
    return "met" if ok else "**missed**"


def tls_rows_table(t):
    """The TLS rows (bench/tls.py): origin-pull against nginx, both
    terminating TLS in front of the stand-in bucket."""
    hs = t["handshake"]
    how = ", ".join(f"{p} {v['version']} {v['cipher']}" for p, v in hs.items())
    rows = []
    for size in ("4k", "1m"):
        for proto, label in (("h1", "HTTP/1.1, wrk"), ("h2", "h2, h2load")):
            x = t[f"{proto}_{size}"]
            o, n = x["origin_pull"], x["nginx"]
            target = ">= 1.0x nginx: " + verdict(x["ratio_nginx"] >= 1.0) if size == "1m" else "(measured ratio)"
            rows.append((
                f"HTTPS hit {size.upper()}iB, {label}, 64 conns (stand-in bucket)",
                f"origin-pull {o['rps']:.0f} req/s ({o['MBps']:.0f} MB/s, {o['cpu_s_per_GiB'] or 0:.2f} CPU s/GiB), "
                f"nginx {n['rps']:.0f} ({n['MBps']:.0f} MB/s, {n['cpu_s_per_GiB'] or 0:.2f} CPU s/GiB); {how}",
                f"x{x['ratio_nginx']:.2f} nginx",
                target,
            ))
    return rows


BARES = (("bare_pingora", "bare Pingora"), ("bare_pingora_mimalloc", "bare Pingora + mimalloc"))


def hit_table(r):
    """Rows of the hit group (throughput, CPU, full-load p99) and the latency group."""
    rows = []
    for size in ("4k", "1m"):
        g = r["hit"][f"garage_{size}"]
        # The floor's ratio too: what the framework alone leaves of Garage.
        bares = "".join(f", {label} {g[p]['rps']:.0f} (x{g[p]['ratio_direct']:.2f} direct)"
                        for p, label in BARES if p in g)
        rows.append((
            f"hit {size.upper()}iB, Garage, 64 conns",
            f"origin-pull {g['origin_pull']['rps']:.0f} req/s ({g['origin_pull']['MBps']:.0f} MB/s), "
            f"direct {g['direct']['rps']:.0f}, nginx {g['nginx']['rps']:.0f}{bares}",
            f"x{g['ratio_direct']:.2f} direct, x{g['ratio_nginx']:.2f} nginx",
            f">= 0.9x direct: {verdict(g['ratio_direct'] >= 0.9)}" if size == "4k"
            else f">= 0.95x direct: {verdict(g['ratio_direct'] >= 0.95)}",
        ))
    for size in ("4k", "1m"):
        s = r["hit"][f"standin_{size}"]
        bares = "".join(f", {label} {s[p]['rps']:.0f}" for p, label in BARES if p in s)
        rows.append((
            f"proxy cost {size.upper()}iB (stand-in bucket)",
            f"origin-pull {s['origin_pull']['rps']:.0f} req/s, nginx {s['nginx']['rps']:.0f}{bares}, "
            f"bucket alone {s['direct']['rps']:.0f}",
            f"x{s['ratio_nginx']:.2f} nginx" + (f", x{s['ratio_bare']:.2f} bare" if "ratio_bare" in s else ""),
            (f">= 0.6x nginx (step; 1.0x the goal): {verdict(s['ratio_nginx'] >= 0.6)}" if size == "4k"
             else f">= 1.0x nginx: {verdict(s['ratio_nginx'] >= 1.0)}"),
        ))
    s = r["hit"]["standin_4k"]
    bares = [p for p, _ in BARES if p in s]
    paths = ["origin_pull", *bares, "nginx"]
    if bares and "cpu_us_per_req" in s["origin_pull"]:
        best = min(s[p]["cpu_us_per_req"] for p in bares)
        rows.append((
            "CPU per request, hit 4KiB (stand-in), 64 conns",
            ", ".join(f"{p} {s[p]['cpu_us_per_req']:.0f} us" for p in paths),
            f"x{s['origin_pull']['cpu_us_per_req'] / best:.2f} best bare",
            f"<= best bare Pingora: {verdict(s['origin_pull']['cpu_us_per_req'] <= best)}",
        ))
    g = r["hit"]["garage_4k"]
    gbares = [p for p, _ in BARES if p in g and "cpu_us_per_req" in g[p]]
    if gbares:
        # Garage shares the cores: each microsecond the proxy spends is one
        # Garage does not get, which is what the Garage ratio measures.
        best = min(g[p]["cpu_us_per_req"] for p in gbares)
        rows.append((
            "CPU per request, hit 4KiB (Garage), 64 conns",
            ", ".join(f"{p} {g[p]['cpu_us_per_req']:.0f} us" for p in ["origin_pull", *gbares, "nginx"]),
            f"x{g['origin_pull']['cpu_us_per_req'] / best:.2f} best bare",
            "(no target; explains the Garage ratio)",
        ))
    if "bare_pingora" in s:
        added = s["origin_pull"]["p99_ms"] - s["bare_pingora"]["p99_ms"]
        rows.append((
            "p99 under full load, hit 4KiB (stand-in), 64 conns",
            ", ".join(f"{p} {s[p]['p99_ms']:.2f} ms" for p in paths),
            f"{added:+.2f} ms vs bare",
            f"<= bare + 1 ms: {verdict(added <= 1.0)}",
        ))
    for where, lat in r.get("latency", {}).items():
        shown = [p for p in ("origin_pull", "direct", "nginx", *dict(BARES)) if p in lat]
        cpu = [p for p in shown if "cpu_us_per_req" in lat[p]]
        rows.append((
            f"hit latency 4KiB, {where}, at {lat['target_rps']:.0f} req/s "
            f"(median of {lat.get('rounds', 1)} runs)",
            "p50/p99 ms: " + ", ".join(
                f"{p} {lat[p]['p50_ms']:.2f}/{lat[p]['p99_ms']:.2f} ({lat[p]['rps']:.0f} req/s)" for p in shown)
            + ("; CPU per request: " + ", ".join(f"{p} {lat[p]['cpu_us_per_req']:.0f} us" for p in cpu)
               if cpu else ""),
            f"{lat['p99_over_nginx_ms']:+.2f} ms p99 vs nginx, {lat['added_p99_ms']:+.2f} vs direct"
            if "p99_over_nginx_ms" in lat else f"{lat['added_p99_ms']:+.2f} ms p99",
            f"<= nginx + 1 ms: {verdict(lat['p99_over_nginx_ms'] <= 1.0)}" if "p99_over_nginx_ms" in lat
            else f"<= 1 ms added: {verdict(lat['added_p99_ms'] <= 1.0)}",
        ))
    return rows


def miss_table(r):
    """Rows of the miss, memory and egress groups, each when it ran."""
    rows = []
    if "miss_ttfb" not in r:
        return rows + memory_rows(r)
    t = r["miss_ttfb"]
    rows.append((
        f"miss TTFB, {t['object_MiB']} MiB, origin +50 ms",
        f"origin-pull {t['origin_pull_p50_ms']:.1f} ms, origin {t['direct_p50_ms']:.1f} ms (p50 of {t['samples']})",
        f"+{t['added_ms']:.2f} ms",
        f"<= 2 ms: {verdict(t['added_ms'] <= 2.0)}",
    ))
    hd = r["herd_ttfb"]
    rows.append((
        f"herd TTFB, {hd['clients']} clients on one missing {hd['object_MiB']} MiB key, "
        f"origin +50 ms at {hd['origin_MBps']:.0f} MB/s",
        f"TTFB ms: first {hd['first_ttfb_ms']:.1f}, median {hd['median_ttfb_ms']:.1f}, "
        f"{hd['clients']}th {hd['last_ttfb_ms']:.1f}, max {hd['max_ttfb_ms']:.1f} "
        f"(sent within {hd['send_spread_ms']:.1f} ms); origin GETs {hd['origin_gets']}, "
        f"write-back {hd['write_back']}",
        f"{hd['clients']}th x{hd['ratio_last_first']:.2f} the first",
        "(no target)",
    ))
    for name, label in (("cold_sweep", "origin +50 ms"), ("cold_sweep_fast_origin", "loopback nginx origin")):
        c = r[name]
        rows.append((
            f"cold sweep {c['objects']} x 16 KiB, {label}",
            f"origin-pull {c['origin_pull_s']:.2f} s, origin {c['direct_s']:.2f} s; "
            f"{c['stored_intact']}/{c['objects']} stored intact",
            f"x{c['ratio']:.2f}",
            f"<= 1.1x: {verdict(c['ratio'] <= 1.1)}" if name == "cold_sweep" else "(no target)",
        ))
    rows += memory_rows(r)
    e = r["egress"]
    rows.append((
        f"egress, {e['clients']} concurrent GETs of one missing {e['object_MiB']} MiB key",
        f"origin GETs: origin-pull {e['origin_pull_origin_gets']} (write-back {e['origin_pull_write_back']}), "
        f"nginx DIY {e['nginx_diy_origin_gets']}",
        f"{e['origin_pull_origin_gets']} origin GET{'' if e['origin_pull_origin_gets'] == 1 else 's'}",
        f"1: {verdict(e['origin_pull_origin_gets'] == 1)}",
    ))
    sb = r["slow_bucket"]
    after = (f"{sb['stored_after_s']:.1f} s after the request" if sb["stored_after_s"] is not None
             else "not stored within the bound")
    rows.append((
        f"slow bucket, {sb['object_MiB']} MiB miss, bucket at {sb['bucket_MBps']:.0f} MB/s, origin +50 ms",
        f"origin-pull {sb['origin_pull_s']:.2f} s (same miss, full-speed bucket: {sb['fast_bucket_s']:.2f} s), "
        f"origin {sb['direct_s']:.2f} s (median of {sb['rounds']}); bucket link needs {sb['bucket_link_s']:.1f} s; "
        f"stored {sb['stored']}/{sb['rounds']}, {after}",
        f"x{sb['ratio']:.2f}",
        f"<= 1.1x: {verdict(sb['ratio'] <= 1.1)}",
    ))
    return rows


def memory_rows(r):
    if "memory" not in r:
        return []
    m = r["memory"]
    return [(
        f"memory, {m['clients']} x {m['object_MiB']} MiB misses",
        f"{m['seconds']:.0f} s; write-back stored {m['stored']}, abandoned {m['abandoned']}, "
        f"failed {m.get('failed', 0)}, unfinished after 300 s {m.get('unfinished', 0)}",
        f"peak RSS {m['peak_rss_MiB']:.0f} MiB",
        f"< 100 MiB: {verdict(m['peak_rss_MiB'] < 100)}",
    )]


def print_table(r):
    rows = hit_table(r) if "hit" in r else []
    rows += miss_table(r)
    if "hit" in r:
        cpu = r["hit"]["garage_1m"]
        rows.append((
            "CPU per GiB served, hit 1 MiB",
            f"nginx {cpu['nginx']['cpu_s_per_GiB']:.2f} s/GiB",
            f"{cpu['origin_pull']['cpu_s_per_GiB']:.2f} s/GiB",
            "(no target)",
        ))
    if "tls" in r:
        rows.extend(tls_rows_table(r["tls"]))
    print("| figure | measured | result | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    meta = r["meta"]
    print(f"\n{meta['date']}, {meta['cpus']} CPUs, kernel {meta['kernel']}, loopback quickack {meta['quickack']}, "
          f"{meta['rounds']} x {meta['wrk_seconds']} s per throughput figure (median), run took {meta['seconds']} s")
