"""Reads a training run back from an MLflow tracking server with the mlflow client and compares it
with the run folder: params with args.yaml, per-epoch metrics with results.csv (keys as
Ultralytics' MLflow callback sanitises them, step = 0-based epoch), lineage tags, checkpoint
references, and the run's status. Prints "OK ..." and exits 0, or prints the first mismatch and
exits 1.

usage: mlflow_readback.py <tracking uri> <experiment name> <run name> <run folder>
"""
import csv
import math
import os
import sys

from mlflow.tracking import MlflowClient


def fail(msg):
    print("MISMATCH:", msg)
    sys.exit(1)


uri, experiment, run_name, run_dir = sys.argv[1:5]
client = MlflowClient(tracking_uri=uri)
exp = client.get_experiment_by_name(experiment)
if exp is None:
    fail(f"no experiment {experiment!r}")
runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
if len(runs) != 1:
    fail(f"{len(runs)} runs named {run_name!r}")
run = runs[0]
if run.info.status != "FINISHED":
    fail(f"status {run.info.status}")

# params = args.yaml, value as written
args = {}
with open(os.path.join(run_dir, "args.yaml")) as f:
    for line in f:
        line = line.rstrip("\n")
        if ": " in line:
            k, v = line.split(": ", 1)
            args[k] = v
params = run.data.params
if set(params) != set(args):
    fail(f"param keys differ: only in MLflow {sorted(set(params) - set(args))}, "
         f"only in args.yaml {sorted(set(args) - set(params))}")
for k, v in args.items():
    if params[k] != v:
        fail(f"param {k}: MLflow {params[k]!r}, args.yaml {v!r}")

# metrics per epoch = results.csv
with open(os.path.join(run_dir, "results.csv")) as f:
    rows = list(csv.DictReader(f))
checked = 0
for col in rows[0]:
    if col == "epoch":
        continue
    key = col.replace("(", "").replace(")", "")
    hist = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
    if [m.step for m in hist] != [int(r["epoch"]) - 1 for r in rows]:
        fail(f"metric {key}: steps {[m.step for m in hist]} for {len(rows)} epochs")
    for m, r in zip(hist, rows):
        want = float(r[col])
        if not math.isclose(m.value, want, rel_tol=1e-5, abs_tol=1e-5):
            fail(f"metric {key} step {m.step}: MLflow {m.value}, results.csv {want}")
        checked += 1

tags = run.data.tags
for t in ("yolo.dataset_sha256", "yolo.model", "yolo.model_yaml", "yolo.code_version",
          "yolo.world_size", "yolo.create_token"):
    if not tags.get(t):
        fail(f"tag {t} missing")
if tags["yolo.world_size"] != args["workers"]:
    fail(f"world size tag {tags['yolo.world_size']} vs workers {args['workers']}")
weights = sorted(f for f in os.listdir(os.path.join(run_dir, "weights"))
                 if f.startswith("v") and f.endswith(".h5"))
for w in weights:
    ref = tags.get("checkpoint/" + w[:-3], "")
    path = os.path.realpath(os.path.join(run_dir, "weights", w))
    if not ref.startswith("file://" + path + " "):
        fail(f"checkpoint/{w[:-3]}: {ref!r}")
best = os.path.realpath(os.path.join(run_dir, "weights", "best.h5"))
if tags.get("checkpoint/best") != "file://" + best:
    fail(f"checkpoint/best {tags.get('checkpoint/best')!r} vs {best}")
print(f"OK {len(params)} params, {checked} metric values, {len(weights)} checkpoint references")
