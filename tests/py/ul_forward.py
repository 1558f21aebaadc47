"""Reference for tests/test_ckpt_export.c and tests/test_ckpt_import.c: Ultralytics' own forward
pass of a .pt on images the C test wrote, in eval mode.

Usage: python ul_forward.py IN OUT. IN (text): "pt PATH" and "images PATH B H W" (PATH: raw
float32 little-endian NHWC in [0, 1]). OUT: raw float32 little-endian [B][A][4*reg_max + nc], the
head's raw one-to-many outputs (boxes then class logits per anchor, anchors level-major, row-major
inside a level): the layout of our model_output. Computes nothing itself.
"""

import sys

import numpy as np
import torch
import ultralytics
from ultralytics.nn.tasks import load_checkpoint

assert ultralytics.__version__ == "8.4.190", ultralytics.__version__


def main(inp, outp):
    spec = {}
    for line in open(inp):
        w = line.split()
        if w:
            spec[w[0]] = w[1:]
    model, _ = load_checkpoint(spec["pt"][0])  # what YOLO("x.pt") loads: EMA (else model), float32
    model.eval()
    path, b, h, w = spec["images"][0], *map(int, spec["images"][1:])
    x = np.fromfile(path, dtype="<f4").reshape(b, h, w, 3)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        _, preds = model(x)
    raw = preds["one2many"] if "one2many" in preds else preds
    out = torch.cat((raw["boxes"], raw["scores"]), 1).transpose(1, 2).contiguous()
    out.numpy().astype("<f4").tofile(outp)
    print("ok", tuple(out.shape))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
