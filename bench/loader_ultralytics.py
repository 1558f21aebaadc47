"""Ultralytics' side of `make bench-loader`: its training dataset (YOLODataset from
build_yolo_dataset, as its trainer builds it: default hyperparameters, cache off) iterated in a
shuffled order on this process alone, with batches assembled by its collate_fn, as one DataLoader
worker does. OpenCV runs single-threaded (cv2.setNumThreads(0), as Ultralytics sets it).
Usage: python loader_ultralytics.py <data.yaml> <imgsz> <mosaic 0|1> <images> <batch> <rounds>
Prints two lines: "wall <best img/s> <per round...>" and "cpu <best> <per round...>" (images per
CPU second of this process, steadier on a shared machine)."""
import random
import sys
import time

import cv2
import numpy as np
import torch

from ultralytics.cfg import get_cfg
from ultralytics.data.build import build_yolo_dataset
from ultralytics.data.utils import check_det_dataset
from ultralytics.utils import DEFAULT_CFG, LOGGER

LOGGER.setLevel(40)  # errors only: the table is ours to print
cv2.setNumThreads(0)
torch.set_num_threads(1)

yaml, imgsz, mosaic, nimg, batch, rounds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cfg = get_cfg(DEFAULT_CFG, {"imgsz": imgsz, "mosaic": mosaic, "cache": False, "workers": 0, "batch": batch})
data = check_det_dataset(yaml)
ds = build_yolo_dataset(cfg, data["train"], batch, data, mode="train")
random.seed(0)
np.random.seed(0)
torch.manual_seed(0)
order = np.random.default_rng(0).permutation(len(ds)).tolist()
pos = 0


def run(n):
    global pos
    done = 0
    while done < n:
        items = []
        for _ in range(batch):
            items.append(ds[order[pos % len(order)]])
            pos += 1
        ds.collate_fn(items)
        done += batch
    return done


run(ds.max_buffer_length + 2 * batch)  # fill the mosaic buffer, warm caches
rates, cpu = [], []
for _ in range(rounds):
    t0, c0 = time.perf_counter(), time.process_time()
    n = run(nimg)
    rates.append(n / (time.perf_counter() - t0))
    cpu.append(n / (time.process_time() - c0))
print(f"wall {max(rates):.1f} " + " ".join(f"{r:.1f}" for r in rates))
print(f"cpu {max(cpu):.1f} " + " ".join(f"{r:.1f}" for r in cpu))
