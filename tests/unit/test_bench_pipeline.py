"""Smoke test of bench/pipeline.py: a tiny run prints every figure, finite and sane."""

from __future__ import annotations

import math
import re

from bench import pipeline


def test_tiny_run_prints_finite_figures(capsys) -> None:  # type: ignore[no-untyped-def]
    code = pipeline.main(["--events", "300", "--warmup", "300", "--catalogue", "200",
                          "--users", "500", "--breakdown-events", "100", "--profile"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("machine: ") and "CPUs, Python" in out
    rows = {m[0]: m[1:] for m in re.findall(
        r"^(learn|full) +300 +([\d,]+) +([\d.]+) +([\d.]+) +([\d,]+) +([\d.]+) +([\d,]+) "
        r"+([\d.]+)%$",
        out, re.M)}
    assert set(rows) == {"learn", "full"}, out
    for path, (rate, p50, p99, target, ratio, cpu_rate, gc_share) in rows.items():
        rate_f = float(rate.replace(",", ""))
        assert math.isfinite(rate_f) and rate_f > 0
        assert 0 < float(p50) <= float(p99) < 1e6
        assert float(target.replace(",", "")) == pipeline.TARGETS[path]
        assert float(ratio) == round(rate_f / pipeline.TARGETS[path], 2)
        assert float(cpu_rate.replace(",", "")) > 0 and 0 <= float(gc_share) <= 100
    for path, stages in (("learn", ("decode", "pseudonymize", "profile codec",
                                    "learn: mf", "learn: cooccurrence", "segments")),
                         ("full", ("serve/rank", "bids", "learn: mf"))):
        section = out.split(f"where the time goes, {path} path")[1].split("\n\n")[0]
        for stage in stages:
            m = re.search(rf"^  {re.escape(stage)} +(-?[\d.]+) us +(-?[\d.]+)%$", section, re.M)
            assert m, (stage, section)
            assert math.isfinite(float(m[1])) and float(m[1]) >= 0
    assert "cProfile, learn path" in out and "cProfile, full path" in out
