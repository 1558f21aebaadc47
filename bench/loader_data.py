"""Writes the two image sets of `make bench-loader` as Ultralytics dataset folders + yaml:
  shapes:   the synthetic shapes set (`coordinator data synth`, raw RGB in an .h5) as PNG files;
  cocolike: JPEGs made from coco8's 8 photos (random zoom-crop, flip and colour gain, quality
            75-95, at the photo's own size, about 640 x 480), so decoding costs what COCO's does.
Usage: python loader_data.py <synth.h5> <out dir> <cocolike count> [coco8 dir]
Deterministic (fixed seeds); skips a set whose yaml already exists."""
import os
import sys

import cv2
import h5py
import numpy as np


def write_labels(path, rows):
    with open(path, "w") as f:
        for c, x, y, w, h in rows:
            f.write(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n")


def write_yaml(path, root, names):
    with open(path, "w") as f:
        f.write(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n")
        for i, n in enumerate(names):
            f.write(f"  {i}: {n}\n")


def shapes(h5path, out):
    root = os.path.join(out, "shapes")
    yaml = root + ".yaml"
    if os.path.exists(yaml):
        return
    with h5py.File(h5path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["class_names"][:]]
        for split in ("train", "val"):
            g = f[split]
            os.makedirs(f"{root}/images/{split}", exist_ok=True)
            os.makedirs(f"{root}/labels/{split}", exist_ok=True)
            off = g["label_offsets"][:]
            lab = g["labels"][:]
            for i in range(len(g["height"])):
                h, w = int(g["height"][i]), int(g["width"][i])
                rgb = np.asarray(g["images"][i], np.uint8).reshape(h, w, 3)
                cv2.imwrite(f"{root}/images/{split}/{i:06d}.png", rgb[..., ::-1])
                write_labels(f"{root}/labels/{split}/{i:06d}.txt", lab[off[i] : off[i + 1]])
    write_yaml(yaml, root, names)


def cocolike(out, count, coco8):
    root = os.path.join(out, "cocolike")
    yaml = root + ".yaml"
    if os.path.exists(yaml):
        return
    src = []
    for split in ("train", "val"):
        d = f"{coco8}/images/{split}"
        for fn in sorted(os.listdir(d)):
            im = cv2.imread(f"{d}/{fn}")
            lf = f"{coco8}/labels/{split}/{fn[:-4]}.txt"
            lab = np.loadtxt(lf, ndmin=2).astype(np.float64) if os.path.exists(lf) else np.zeros((0, 5))
            src.append((im, lab))
    rng = np.random.default_rng(0)
    for split, n in (("train", count), ("val", 16)):
        os.makedirs(f"{root}/images/{split}", exist_ok=True)
        os.makedirs(f"{root}/labels/{split}", exist_ok=True)
        for i in range(n):
            im, lab = src[i % len(src)]
            h, w = im.shape[:2]
            z = rng.uniform(1.0, 1.35)
            big = cv2.resize(im, (int(w * z), int(h * z)), interpolation=cv2.INTER_LINEAR)
            x0 = int(rng.integers(0, big.shape[1] - w + 1))
            y0 = int(rng.integers(0, big.shape[0] - h + 1))
            crop = big[y0 : y0 + h, x0 : x0 + w]
            gain = rng.uniform(0.8, 1.2, 3)
            crop = np.clip(crop * gain, 0, 255).astype(np.uint8)
            flip = rng.uniform() < 0.5
            if flip:
                crop = crop[:, ::-1]
            rows = []
            for c, cx, cy, bw, bh in lab:
                x1 = (cx - bw / 2) * w * z - x0
                x2 = (cx + bw / 2) * w * z - x0
                y1 = (cy - bh / 2) * h * z - y0
                y2 = (cy + bh / 2) * h * z - y0
                a0 = (x2 - x1) * (y2 - y1)
                x1, x2 = np.clip([x1, x2], 0, w)
                y1, y2 = np.clip([y1, y2], 0, h)
                if (x2 - x1) < 2 or (y2 - y1) < 2 or (x2 - x1) * (y2 - y1) < 0.4 * a0:
                    continue
                if flip:
                    x1, x2 = w - x2, w - x1
                rows.append((c, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
            q = int(rng.integers(75, 96))
            cv2.imwrite(f"{root}/images/{split}/{i:06d}.jpg", np.ascontiguousarray(crop), [cv2.IMWRITE_JPEG_QUALITY, q])
            write_labels(f"{root}/labels/{split}/{i:06d}.txt", rows)
    write_yaml(yaml, root, [str(k) for k in range(80)])


if __name__ == "__main__":
    h5path, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    coco8 = sys.argv[4] if len(sys.argv) > 4 else "/work/shared/data/coco8"
    os.makedirs(out, exist_ok=True)
    shapes(h5path, out)
    cocolike(out, count, coco8)
