"""pCTR model choice: our FTRL-Proximal ``PctrModel`` against River's logistic regression.

Both learn the same hashed features (``models.ads.pctr.ad_features``) of the Open Bandit
Dataset random-policy sample, pooled (30,000 impressions, test-then-train, labels learned
at once); the script prints prequential log loss, calibration and microseconds per
predict+learn step, and the machine. Run from the repository root:
``python -m bench.pctr_models``.
"""

from __future__ import annotations

import os
import platform
import time

from river import linear_model, optim

from models.ads.pctr import PctrModel, PctrQuality, RunningMeanBaseline, ad_features
from streams.offline.evaluate_ads import request_for
from streams.offline.obd import load_obd


def main() -> None:
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    sample = load_obd("random", "pooled")
    rows = []
    for imp in sample.impressions:
        req = request_for(imp, sample.items[imp.campaign][imp.item_id])
        c = req.candidates[0]
        x = ad_features(req.view, c.ad_id, c.campaign_id, c.categories, req.slot,
                        (req.ts_ms // 3_600_000) % 24, req.context)
        rows.append((x, imp.click))
    print(f"{len(rows):,} impressions, {sum(y for _, y in rows)} clicks, "
          f"{sum(len(x) for x, _ in rows) / len(rows):.1f} features each")

    def ftrl() -> tuple[object, object]:
        m = PctrModel()
        return (lambda x: m.predict_one(x)), (lambda x, y: m.learn_one(x, y))

    def river(lr: float) -> tuple[object, object]:
        m = linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=1e-4)

        def feats(x: list[int]) -> dict[str, float]:
            return {str(i): 1.0 for i in x}

        return (lambda x: m.predict_proba_one(feats(x)).get(True, 0.0)), \
            (lambda x, y: m.learn_one(feats(x), bool(y)))

    def baseline() -> tuple[object, object]:
        b = RunningMeanBaseline()
        return (lambda x: b.predict_one()), (lambda x, y: b.learn_one(y))

    print(f"{'model':<34} {'log loss':>9} {'calib.':>7} {'us/event':>9}")
    for name, make in (("running mean (baseline)", baseline),
                       ("PctrModel (FTRL-Proximal)", ftrl),
                       ("river LogisticRegression SGD .01", lambda: river(0.01)),
                       ("river LogisticRegression SGD .001", lambda: river(0.001))):
        predict, learn = make()
        q = PctrQuality(max_samples=1)
        started = time.perf_counter()
        for x, y in rows:
            q.update(min(max(predict(x), 1e-6), 1 - 1e-6), y)  # type: ignore[operator]
            learn(x, y)  # type: ignore[operator]
        us = (time.perf_counter() - started) / len(rows) * 1e6
        print(f"{name:<34} {q.log_loss:>9.5f} {q.calibration:>7.3f} {us:>9.1f}")


if __name__ == "__main__":
    main()
