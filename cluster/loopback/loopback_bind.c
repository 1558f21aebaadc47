/* yolo-loopback.so: keeps a single-node mpirun on the loopback interface.
 *
 * Open MPI 4.1's mpirun (ORTE) binds its out-of-band TCP listener to the wildcard address
 * (INADDR_ANY and in6addr_any) whatever oob_tcp_if_include says: that parameter only chooses the
 * addresses it advertises (orte/mca/oob/tcp/oob_tcp_listener.c, create_listen). For a job on one
 * host nothing ever connects from outside, so `coordinator train` preloads this library into the
 * mpirun it starts: a bind() to a wildcard address binds the loopback address instead. Every other
 * bind() is untouched. The ranks do not inherit it: the constructor puts LD_PRELOAD back as it was
 * before the launcher added this library (YOLO_PRELOAD_BEFORE), so mpirun passes the original on.
 *
 * Built on its own (not part of libyolo), with plain cc; depends on libc only. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

__attribute__((constructor)) static void restore_preload(void) {
    const char *before = getenv("YOLO_PRELOAD_BEFORE");
    if (!before) return;
    if (before[0])
        setenv("LD_PRELOAD", before, 1);
    else
        unsetenv("LD_PRELOAD");
    unsetenv("YOLO_PRELOAD_BEFORE");
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real;
    if (!real) real = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (!real) return -1;
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real(fd, (const struct sockaddr *)&a, sizeof a);
        }
    } else if (addr && addr->sa_family == AF_INET6 &&
               len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (!memcmp(&a.sin6_addr, &in6addr_any, sizeof a.sin6_addr)) {
            a.sin6_addr = in6addr_loopback;
            return real(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real(fd, addr, len);
}
