"""Reference for tests/test_ckpt_import.c: an Ultralytics .pt written by Ultralytics itself, a
1-epoch yolov8n run on a copy of coco8 (CPU, imgsz 64, no plots; nothing is downloaded).

Usage: python ul_train_coco8.py DATA_YAML OUT_PT. Trains into OUT_PT's folder (runs/) and copies
the run's best.pt (optimizer stripped, as Ultralytics leaves it) to OUT_PT.
"""

import os
import shutil
import sys

import ultralytics
from ultralytics import YOLO

assert ultralytics.__version__ == "8.4.190", ultralytics.__version__


def main(data, out):
    project = os.path.join(os.path.dirname(os.path.abspath(out)), "runs")
    YOLO("yolov8n.yaml").train(data=data, epochs=1, imgsz=64, batch=4, workers=0, plots=False,
                               device="cpu", amp=False, seed=0, project=project, name="ul",
                               exist_ok=True, verbose=False)
    shutil.copy(os.path.join(project, "ul", "weights", "best.pt"), out)
    print("ok", out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
