"""Smoke test of bench/memory_profiles.py: a tiny run prints every figure, sane, and the
fast generator stores records of the sizes ``Engine.process`` stores."""

from __future__ import annotations

import math
import re

from bench import memory_profiles


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def test_tiny_run_prints_sane_figures_and_fast_mode_matches_the_engine(capsys) -> None:  # type: ignore[no-untyped-def]
    code = memory_profiles.main(["--users", "600", "--mode", "both", "--items", "400",
                                 "--max-events", "300", "--sample", "200"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("machine: ") and "CPUs, Python" in out
    assert "target: <= 2,048 bytes of RSS per profile at 1,000,000 users" in out
    sections = re.split(r"\n(?=(?:fast|engine) mode: )", out)[1:]
    assert [s.split(" mode: ")[0] for s in sections] == ["fast", "engine"], out
    means = {}
    for section in sections:
        mode = section.split(" mode: ")[0]
        m = re.search(r"changelog bytes per record: mean ([\d,]+), p50 ([\d,]+), "
                      r"p99 ([\d,]+), max ([\d,]+)", section)
        assert m, section
        mean, p50, p99, top = map(_num, m.groups())
        assert 200 < p50 <= p99 <= top and p50 < mean < top
        means[mode] = mean
        # the profile's fields, the dedupe window and the user's model state are all there
        for field in ("p.rr", "p.ms", "p.r", "p.s", "d", "t", "o"):
            assert re.search(rf"^  {re.escape(field)} +[\d,]+ +[\d,]+ +[\d.]+%$", section,
                             re.M), (field, section)
        ms = re.search(r"model state \(p\.ms, MF factors\): ([\d,]+) JSON bytes", section)
        assert ms and _num(ms[1]) > 172  # 32 float32 factors in base64 are 172 characters
        cost = re.search(r"decode ([\d.]+), encode ([\d.]+), faust encode ([\d.]+), "
                         r"from_dict \+ to_dict ([\d.]+)", section)
        assert cost and all(0 < float(c) < 1e4 for c in cost.groups())
        rss = {}
        for form in ("head", "dict", "compact"):
            row = re.search(rf"^{form}: (-?[\d,]+) bytes per profile \(at 600\): "
                            rf"(meets|misses) the target$", section, re.M)
            assert row, section
            rss[form] = _num(row[1])
            assert math.isfinite(rss[form]) and 0 < rss[form] < 100_000
        # (dict below head too, by ~10%: too little to assert on 600 users' RSS)
        assert rss["compact"] < min(rss["dict"], rss["head"]) / 2
        scan = re.search(r"scan \(retention sweep\), s per 1M records: "
                         r"head ([\d.]+), dict ([\d.]+), compact ([\d.]+)$", section, re.M)
        assert scan and all(0 < float(x) < 1e3 for x in scan.groups()), section
        skip = re.search(r"compact, skipping fresh records by their leading \"t\" "
                         r"\(streams\.tables\.maybe_idle\): ([\d.]+)$", section, re.M)
        assert skip and float(skip[1]) < float(scan[3]), section
    # The fast generator is a stand-in for Engine.process: same record sizes.
    assert abs(means["fast"] - means["engine"]) <= 0.05 * means["engine"], means
