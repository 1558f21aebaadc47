#include "common/rank_info.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* State and start time (fields 3 and 22) of /proc/<pid>/stat; -1 when there is no such process. */
static int proc_stat(int pid, char *state, uint64_t *start) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p || sscanf(p + 2, "%c", state) != 1) return -1;
    /* p + 1 is the space before field 3: twenty spaces on, the one before field 22 */
    for (int field = 3; field <= 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p) return -1;
    }
    unsigned long long t = 0;
    if (sscanf(p + 1, "%llu", &t) != 1) return -1;
    *start = t;
    return 0;
}

void rank_info_self(rank_info *r) {
    memset(r, 0, sizeof *r);
    r->pid = (int32_t)getpid();
    if (gethostname(r->host, sizeof r->host - 1) != 0) snprintf(r->host, sizeof r->host, "?");
    char state;
    uint64_t start = 0;
    if (proc_stat(r->pid, &state, &start) == 0) r->start_ticks = start;
}

int rank_info_local(const rank_info *r) {
    char me[RANK_HOST_MAX] = "";
    if (gethostname(me, sizeof me - 1) != 0) return 0;
    return strncmp(me, r->host, sizeof me) == 0;
}

int rank_info_alive(const rank_info *r) {
    if (!rank_info_local(r)) return -1;
    char state;
    uint64_t start = 0;
    if (proc_stat(r->pid, &state, &start) != 0) return 0;
    if (state == 'Z' || state == 'X') return 0;
    return r->start_ticks == 0 || start == r->start_ticks;
}
