"""Ultralytics' side of bench/vs_ultralytics.sh's end-to-end rows: its trainer on a dataset yaml
with torch's thread count and the dataloader workers set to `threads` (Ultralytics itself would
use min(8, cores - 1) torch threads, and forces workers=0 on the CPU).
Usage: python ul_train.py <data.yaml> <model> <imgsz> <epochs> <threads> <project> <name> [key=value ...]
  extra key=value pairs go to model.train() (e.g. time=0.25 fraction=0.5).
Prints per epoch `EPOCH <n> train_s <s> images <n> ips <img/s> cpu_share <share>` (the training
part only: from the epoch's start to its end, before validation); results.csv is in project/name."""
import sys
import time

import ultralytics.utils.torch_utils as torch_utils

threads = int(sys.argv[5])
torch_utils.NUM_THREADS = threads  # select_device() sets torch's thread count from this

import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402


def value(v):
    for f in (int, float):
        try:
            return f(v)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(v, v)


def main():
    data, model, imgsz, epochs, project, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[6], sys.argv[7]
    extra = dict((k, value(v)) for k, v in (a.split("=", 1) for a in sys.argv[8:]))
    t = {}

    def start(tr):
        t["w"], t["c"] = time.perf_counter(), time.process_time()

    def end(tr):
        dw, dc = time.perf_counter() - t["w"], time.process_time() - t["c"]
        n = len(tr.train_loader.dataset)
        print(f"EPOCH {tr.epoch + 1} train_s {dw:.2f} images {n} ips {n / dw:.2f} cpu_share {dc / (dw * threads):.2f} torch_threads {torch.get_num_threads()}", flush=True)

    m = YOLO(f"{model}.yaml")
    m.add_callback("on_train_epoch_start", start)
    m.add_callback("on_train_epoch_end", end)
    args = dict(data=data, imgsz=imgsz, batch=16, epochs=epochs, workers=threads, device="cpu", plots=False, project=project, name=name, exist_ok=True, verbose=False)
    args.update(extra)
    m.train(**args)


if __name__ == "__main__":
    main()
