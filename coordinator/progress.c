#include "coordinator/progress.h"

#include "common/timer.h"
#include "coordinator/runlog.h"

#include <stdio.h>
#include <unistd.h>

static void fmt_time(double s, char *buf, size_t n) {
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%02d:%02d", t / 60, t % 60);
}

void progress_epoch_begin(progress *p, int epoch, int epochs, int steps, int imgsz) {
    p->epoch = epoch;
    p->epochs = epochs;
    p->steps = steps;
    p->imgsz = imgsz;
    p->t_start = p->t_last_print = now_seconds();
    p->tty = runlog_isatty(STDOUT_FILENO);
    printf("\n%11s%11s%11s%11s%11s%11s\n", "Epoch", "box_loss", "cls_loss",
           p->third_loss ? p->third_loss : "dfl_loss", "Instances", "Size");
}

void progress_step(progress *p, int step, const double l[3], int instances, double ips,
                   bool force) {
    double now = now_seconds();
    bool last = step + 1 == p->steps;
    if (!force && !last && (p->tty ? now - p->t_last_print < 0.2 : now - p->t_last_print < 10))
        return;
    p->t_last_print = now;
    double el = now - p->t_start,
           eta = step + 1 < p->steps ? el / (step + 1) * (p->steps - step - 1) : 0;
    char e1[32], e2[32], ep[32];
    fmt_time(el, e1, sizeof e1);
    fmt_time(eta, e2, sizeof e2);
    snprintf(ep, sizeof ep, "%d/%d", p->epoch + 1, p->epochs);
    int pct = (int)(100.0 * (step + 1) / p->steps);
    char bar[11];
    for (int i = 0; i < 10; i++) bar[i] = i < pct / 10 ? '#' : '.';
    bar[10] = 0;
    printf("%s%11s%11.4g%11.4g%11.4g%11d%11d: %3d%% %s %d/%d [%s<%s, %.1f img/s]%s",
           p->tty ? "\r" : "", ep, l[0], l[1], l[2], instances, p->imgsz, pct, bar, step + 1,
           p->steps, e1, e2, ips, p->tty ? "" : "\n");
    fflush(stdout);
}

void progress_epoch_end(progress *p) {
    if (p->tty) printf("\n");
    fflush(stdout);
}

void progress_val_header(void) {
    printf("%22s%11s%11s%11s%11s%11s%11s\n", "Class", "Images", "Instances", "Box(P", "R", "mAP50",
           "mAP50-95)");
}

void progress_val_row(const char *cls, int images, int instances, double p, double r, double m50,
                      double m5095) {
    printf("%22s%11d%11d%11.3g%11.3g%11.3g%11.3g\n", cls, images, instances, p, r, m50, m5095);
    fflush(stdout);
}
