"""Convert an Ultralytics detection .pt (yolov8 / yolo11 / yolo26: best.pt, last.pt, yolo11n.pt,
...) to a yolo-cluster weights file, which `coordinator train model=<file> data=...` fine-tunes
from (Ultralytics' pretrained semantics) and `coordinator ckpt show` can name as a lineage parent.

Usage: python scripts/ultralytics_to_weights.py model.pt out.h5

Needs torch, ultralytics and h5py (scripts/pyenv.sh bench installs the pinned ones). Takes what
Ultralytics' own loader takes (the EMA when the file has one, else the model), in float32, under
its state_dict names (PyTorch layout), with the model yaml (its dict written back as yaml text,
the scale letter included), nc, class names and the training image size (train_args' imgsz; 0
when the file has none). The format and its content hash are described in
coordinator/ckpt_weights.h; this script writes exactly that.
"""

import hashlib
import json
import os
import sys
from datetime import datetime, timezone

import h5py
import numpy as np
import torch
from ultralytics.nn.tasks import load_checkpoint

FORMAT = "yolo-cluster weights"
FORMAT_VERSION = 2


def scalar(v):
    """A yaml scalar as Ultralytics' model yamls spell it (None, True, nearest, 0.25)."""
    if v is None or isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if not s or any(c in s for c in ":#[]{},\n\"'") or s != s.strip():
        return json.dumps(s)
    return s


def flow(v):
    return "[" + ", ".join(flow(x) for x in v) + "]" if isinstance(v, (list, tuple)) else scalar(v)


def yaml_text(d):
    """The model dict as yaml: scalars, the scales mapping, backbone/head as rows of flow lists."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{k}:")
            out += [f"  {scalar(kk)}: {flow(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], list):
            out.append(f"{k}:")
            out += [f"  - {flow(row)}" for row in v]
        else:
            out.append(f"{k}: {flow(v)}")
    return "\n".join(out) + "\n"


def entry(key, text):
    text = text.encode()
    return f"{key}={len(text)}:".encode() + text + b"\n"


def content_sha256(attrs, tensors):
    """sha256 over the canonical listing of coordinator/ckpt_weights.h."""
    h = hashlib.sha256()
    for key in ("format_version", "created", "source", "model", "model_yaml", "nc", "names",
                "dataset_sha256", "imgsz"):
        h.update(entry(key, str(attrs[key])))
    for name in sorted(tensors):
        a = tensors[name]
        dtype = "int64" if a.dtype == np.int64 else "float32"
        shape = ",".join(str(s) for s in a.shape)
        h.update(f"tensor {name} {dtype} [{shape}] {hashlib.sha256(a.tobytes()).hexdigest()}\n"
                 .encode())
    return h.hexdigest()


def main(src, dst):
    model, ckpt = load_checkpoint(src)  # as YOLO(src) loads it: EMA first, float32
    imgsz = ((ckpt or {}).get("train_args") or {}).get("imgsz", 0)
    imgsz = imgsz if isinstance(imgsz, int) and imgsz > 0 else 0  # a list (h, w): not recorded
    cfg = dict(model.yaml)
    name = os.path.basename(cfg.get("yaml_file") or os.path.splitext(src)[0] + ".yaml")
    nc = int(getattr(model, "nc", cfg.get("nc")))
    cfg["nc"] = nc
    names = getattr(model, "names", None) or {i: str(i) for i in range(nc)}
    names = [str(names[i]) for i in range(nc)] if isinstance(names, dict) else list(map(str, names))
    with open(src, "rb") as f:
        file_sha = hashlib.sha256(f.read()).hexdigest()
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        a = v.numpy().astype("<i8") if v.dtype == torch.int64 else v.float().numpy().astype("<f4")
        tensors[f"model/{k}"] = a.copy(order="C")  # ascontiguousarray would make 0-d 1-d
    attrs = {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": f"Ultralytics {os.path.basename(src)} (sha256 {file_sha})",
        "model": name,
        "model_yaml": yaml_text(cfg),
        "nc": nc,
        "names": json.dumps(names, separators=(",", ":")),
        "dataset_sha256": "",
        "imgsz": imgsz,
    }
    digest = content_sha256(attrs, tensors)
    tmp = f"{dst}.tmp.{os.getpid()}"
    string = h5py.string_dtype("utf-8")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs.create("format_version", FORMAT_VERSION, dtype="<i4")
        for key in ("created", "source", "model", "model_yaml", "names", "dataset_sha256"):
            f.attrs.create(key, attrs[key], dtype=string)
        f.attrs.create("nc", nc, dtype="<i4")
        f.attrs.create("imgsz", imgsz, dtype="<i4")
        f.attrs.create("content_sha256", digest, dtype=string)
        for k, a in tensors.items():
            d = f.create_dataset(k, data=a)
            d.attrs.create("sha256", hashlib.sha256(a.tobytes()).hexdigest(), dtype=string)
    os.replace(tmp, dst)
    print(f"{src} -> {dst}: {len(tensors)} tensors of {name}, nc {nc}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
