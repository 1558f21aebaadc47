/* A real outside reader: h5py (PyPI, scripts/pyenv.sh test) opens a finished run's weights/last.h5
 * (a link to its newest version) and reads tensors by their Ultralytics state_dict names, in
 * PyTorch layout, with the sha256 each carries; skipped with the reason when the Python test
 * environment cannot be installed (PyPI unreachable). */
#include "runs.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *script =
    "import hashlib, sys, h5py, numpy as np\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "assert f.attrs['format'] == 'yolo-cluster checkpoint', f.attrs['format']\n"
    "assert int(f.attrs['format_version']) == 1\n"
    "w = f['model/model.0.conv.weight']\n"
    "assert w.shape == (16, 3, 3, 3) and w.dtype == np.float32, (w.shape, w.dtype)\n"
    "b = f['ema/model.22.cv3.0.2.bias'][()]\n"
    "assert b.shape == (3,), b.shape\n"
    "m = f['optimizer/state/model.0.conv.weight/exp_avg']\n"
    "assert m.shape == w.shape\n"
    "n = f['ema/model.0.bn.num_batches_tracked'][()]\n"
    "assert n.dtype == np.int64 and n.shape == ()\n"
    "for name in ('model/model.0.conv.weight', 'ema/model.22.cv3.0.2.bias'):\n"
    "    d = f[name]\n"
    "    h = hashlib.sha256(d[()].astype('<f4').tobytes()).hexdigest()\n"
    "    assert h == d.attrs['sha256'], name\n"
    "t = f['train'].attrs\n"
    "assert int(t['epoch']) == 1 and int(t['finished']) == 1\n"
    "assert 'nc' in f['lineage'].attrs['model_yaml']\n"
    "assert 'epochs: 1' in f['lineage'].attrs['args_yaml']\n"
    "print('h5py OK', f.attrs['version'], float(f['metrics'].attrs['metrics/mAP50-95(B)']))\n";

Test(ckptpy, h5py_reads_a_version_by_tensor_names, .timeout = 600) {
    char why[512];
    const char *py = run_test_python(why, sizeof why);
    if (!py) cr_skip_test("%s", why);
    char dir[64], path[256];
    run_make_data(dir, sizeof dir, "yolo-ckpth5py", 16, 8);
    cr_assert_eq(run_sh("timeout 300 \"$YOLO_COORD\" train data=%s/s.h5 model=yolov8n.yaml "
                        "epochs=1 imgsz=64 batch=8 workers=1 threads=1 project=%s name=r > "
                        "%s/log.txt 2>&1",
                        dir, dir, dir),
                 0, "see %s/log.txt", dir);
    snprintf(path, sizeof path, "%s/read.py", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(script, f);
    fclose(f);
    int rc = run_sh("%s %s %s/r/weights/last.h5 > %s/py.out 2>&1", py, path, dir, dir);
    snprintf(path, sizeof path, "%s/py.out", dir);
    cr_assert_eq(rc, 0, "the h5py reader failed; see %s", path);
    cr_assert(run_file_has(path, "h5py OK 1 "), "see %s", path);
    run_sh("rm -rf %s", dir);
}
