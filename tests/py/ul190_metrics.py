"""Reference for tests/test_metrics_versions.c: Ultralytics 8.4.190's own matching
(BaseValidator.match_predictions) and ap_per_class on scenes the C test generated.

Usage: python ul190_metrics.py IN OUT. IN (text): per scene "scene ID NC", then per image
"image NPRED NGT", NPRED lines "pred CLS CONF", NGT lines "gt CLS", NGT lines "iou V...".
CONF and V are float32 in float.hex form. OUT: per scene "scene ID", per prediction "tp I P BITS",
per evaluated class "ap CLS A0..A9", "pr CLS P R" (hex doubles), then
"mean MP MR MAP50 MAP" (hex). Imports Ultralytics and calls it; computes nothing itself.
"""

import sys
from types import SimpleNamespace

import numpy as np
import torch
import ultralytics
from ultralytics.engine.validator import BaseValidator
from ultralytics.utils.metrics import ap_per_class

assert ultralytics.__version__ == "8.4.190", ultralytics.__version__


def f32(h):
    return np.float32(float.fromhex(h))


def main(inp, outp):
    lines = open(inp).read().split("\n")
    ns = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    out = []
    i = 0
    while i < len(lines):
        w = lines[i].split()
        i += 1
        if not w:
            continue
        assert w[0] == "scene", w
        sid, nimg = w[1], int(w[2])
        out.append(f"scene {sid}")
        tps, confs, pcls, tcls = [], [], [], []
        for im in range(nimg):
            _, npred, ngt = lines[i].split()
            i += 1
            npred, ngt = int(npred), int(ngt)
            pc, cf, gc = [], [], []
            for _ in range(npred):
                _, c, h = lines[i].split()
                i += 1
                pc.append(int(c))
                cf.append(f32(h))
            for _ in range(ngt):
                gc.append(int(lines[i].split()[1]))
                i += 1
            iou = np.zeros((ngt, npred), dtype=np.float32)
            for g in range(ngt):
                iou[g] = [f32(h) for h in lines[i].split()[1:]]
                i += 1
            if npred and ngt:
                correct = BaseValidator.match_predictions(
                    ns, torch.tensor(pc), torch.tensor(gc), torch.from_numpy(iou)
                ).numpy()
            else:
                correct = np.zeros((npred, 10), dtype=bool)
            for p in range(npred):
                bits = sum(1 << t for t in range(10) if correct[p, t])
                out.append(f"tp {im} {p} {bits}")
            tps.append(correct)
            confs += cf
            pcls += pc
            tcls += gc
        tp = np.concatenate(tps, 0) if tps else np.zeros((0, 10), bool)
        r = ap_per_class(tp, np.array(confs, dtype=np.float32), np.array(pcls), np.array(tcls))
        _, _, p, rr, _, ap, uc = r[:7]
        for k, c in enumerate(uc):
            out.append(f"ap {c} " + " ".join(float(x).hex() for x in ap[k]))
            out.append(f"pr {c} {float(p[k]).hex()} {float(rr[k]).hex()}")
        vals = [p.mean(), rr.mean(), ap[:, 0].mean(), ap.mean()] if len(uc) else [0.0] * 4
        out.append("mean " + " ".join(float(x).hex() for x in vals))
    open(outp, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
