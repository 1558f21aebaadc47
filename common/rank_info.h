/* Who a rank is, so that a failure can name it: its process id, host and start time. Every rank
 * sends its own at the start of a job (common/protocol.h, "hello"); a process on the same host can
 * then be checked for life without any message. */
#pragma once
#include <stdint.h>

#define RANK_HOST_MAX 64

typedef struct rank_info {
    int32_t pid;
    int32_t pad;
    uint64_t start_ticks; /* /proc/<pid>/stat starttime: a recycled pid is not the rank */
    char host[RANK_HOST_MAX];
} rank_info;

/* This process. */
void rank_info_self(rank_info *r);
/* 1: the process runs (on this host); 0: it is gone (exited, killed, a zombie, or its pid now
 * belongs to another process); -1: it is on another host (unknown). */
int rank_info_alive(const rank_info *r);
/* Whether r is on this host. */
int rank_info_local(const rank_info *r);
