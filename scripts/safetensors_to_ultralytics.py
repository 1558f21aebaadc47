"""Load weights exported by `coordinator ckpt export format=safetensors` into an Ultralytics model
built from the same model yaml, and save an Ultralytics .pt that `YOLO("out.pt")` opens.

Usage: python scripts/safetensors_to_ultralytics.py model.safetensors out.pt

Needs torch, ultralytics and safetensors (scripts/pyenv.sh bench installs the pinned ones). The
model yaml text, class names and nc travel in the file's metadata, so nothing else is needed. The
state_dict must match the built model exactly (strict load): every tensor of the export is used,
none of the model is left at its initialisation. A model fine-tuned from weights with another
class-branch width (Ultralytics' Detect.load rule: cv3 is rebuilt at the source width) is rebuilt
the same way here before loading. The .pt holds the weights in float32 as "model" (no EMA, no
optimizer: the form Ultralytics' strip_optimizer leaves, but not halved).
"""

import copy
import json
import sys
from datetime import datetime

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file
from ultralytics import __version__
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.nn.modules import Detect
from ultralytics.nn.tasks import DetectionModel, guess_model_scale


def model_cfg(meta):
    """The model yaml dict Ultralytics' DetectionModel takes, with the scale the name implies."""
    cfg = yaml.safe_load(meta["model_yaml"])
    name = meta.get("model", "")
    cfg.setdefault("scale", guess_model_scale(name))
    cfg["yaml_file"] = name
    return cfg


def cls_width(sd, layer, attr):
    """The class branch's hidden width in the state_dict (the last conv's input channels)."""
    w = sd.get(f"model.{layer}.{attr}.0.2.weight")
    return None if w is None else w.shape[1]


def match_cls_width(model, cfg, nc, sd):
    """Rebuild cv3 / one2one_cv3 at the exported width where it differs from the yaml rule."""
    layer = len(model.model) - 1
    head = model.model[-1]
    assert isinstance(head, Detect), "the last layer is not a Detect head"
    for attr in ("cv3", "one2one_cv3"):
        dst, want = getattr(head, attr, None), cls_width(sd, layer, attr)
        if dst is None or want is None or dst[0][-1].in_channels == want:
            continue
        # a model whose rule gives that width: nc' = want when it exceeds ch[0], else any nc' <= ch[0]
        ch0 = head.cv2[0][0].conv.in_channels
        donor = DetectionModel(copy.deepcopy(cfg), nc=want if want > ch0 else 1, verbose=False)
        src = copy.deepcopy(getattr(donor.model[-1], attr))
        for s in src:
            s[-1] = torch.nn.Conv2d(s[-1].in_channels, nc, 1)
        setattr(head, attr, src)


def main(src, out):
    with safe_open(src, "pt") as f:
        meta = f.metadata() or {}
    for key in ("model_yaml", "nc", "names"):
        if key not in meta:
            sys.exit(f"{src}: no '{key}' in the metadata: not a `coordinator ckpt export` file")
    sd = load_file(src)
    nc = int(meta["nc"])
    cfg = model_cfg(meta)
    model = DetectionModel(copy.deepcopy(cfg), nc=nc, verbose=False)
    match_cls_width(model, cfg, nc, sd)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        sys.exit(f"{src}: does not fit the model its yaml builds: missing {missing[:5]}, "
                 f"unexpected {unexpected[:5]}")
    model.names = {i: n for i, n in enumerate(json.loads(meta["names"]))}
    model.nc = nc
    model.args = {**DEFAULT_CFG_DICT, "model": meta.get("model", "")}
    model.float().eval()
    for p in model.parameters():
        p.requires_grad = False
    torch.save(
        {
            "date": datetime.now().astimezone().isoformat(),
            "version": __version__,
            "epoch": -1,
            "best_fitness": None,
            "model": model,
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": dict(model.args),
            "train_metrics": {},
            "source": meta.get("source", ""),
        },
        out,
    )
    print(f"{src} -> {out}: {len(sd)} tensors into {meta.get('model', 'the model')}, nc {nc}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
