/* Telemetry server: event publisher, control REP socket, CURVE authentication (ZAP handler). */
#include "coordinator/telemetry.h"

#include "common/atomic_file.h"
#include "common/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#define ZAP_DOMAIN "yolo-telemetry"
#define MAX_MESSAGE (1 << 20) /* hard cap: larger requests drop the connection */
#define MAX_REQUESTS_PER_POLL 32

struct telemetry {
    void *ctx, *pub, *rep, *zap;
    pthread_t zap_thread;
    bool zap_running, curve;
    char rundir[PATH_MAX];
    char pub_ep[PATH_MAX + 16], ctl_ep[PATH_MAX + 16];
    char sockdir[PATH_MAX];                              /* private folder of the ipc sockets */
    char ipc_pub[PATH_MAX + 64], ipc_ctl[PATH_MAX + 64]; /* socket files to remove on close */
    uint8_t (*allowed)[32];                              /* authorized client public keys (CURVE) */
    int nallowed;
    long seq;
    cJSON *last_step, *last_epoch;
    const char *state;
    bool save, stop;
    int subscribers;
    double started;
};

static double unix_seconds(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* ---- key files ----------------------------------------------------------------------------- */

char *telemetry_read_text(const char *path, size_t max, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = xmalloc(max + 1);
    size_t n = fread(buf, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > max) {
        errf(err, errlen, "%s: %s", path, bad ? "read error" : "file too large");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int telemetry_keyfile_write(const char *path, char *err, size_t errlen) {
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0)
        return errf(err, errlen, "%s: cannot make a CURVE key pair: %s", path, zmq_strerror(errno));
    char text[160];
    int n = snprintf(text, sizeof text, "{\"public\":\"%s\",\"secret\":\"%s\"}\n", pub, sec);
    return atomic_write_file_mode(path, text, (size_t)n, 0600, err, errlen);
}

int telemetry_keyfile_read(const char *path, char public_key[41], char secret_key[41], char *err,
                           size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0) return errf(err, errlen, "%s: %s", path, strerror(errno));
    if (st.st_mode & 077)
        return errf(err, errlen,
                    "%s: secret key file is accessible by others (mode %04o); chmod 600", path,
                    (unsigned)(st.st_mode & 07777));
    char *text = telemetry_read_text(path, 4096, NULL, err, errlen);
    if (!text) return -1;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const char *p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "public"));
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "secret"));
    char derived[41];
    int rc = 0;
    if (!p || !s || strlen(p) != 40 || strlen(s) != 40)
        rc = errf(err, errlen, "%s: expected {\"public\":..,\"secret\":..} with 40-char Z85 keys",
                  path);
    else if (zmq_curve_public(derived, s) != 0 || strcmp(derived, p) != 0)
        rc = errf(err, errlen, "%s: public key does not match the secret key", path);
    else {
        memcpy(public_key, p, 41);
        memcpy(secret_key, s, 41);
    }
    cJSON_Delete(j);
    return rc;
}

static int keyfile_ensure(const char *dir, const char *name, char pub[41], char sec[41], char *err,
                          size_t errlen) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, F_OK) != 0 && telemetry_keyfile_write(path, err, errlen) != 0) return -1;
    return telemetry_keyfile_read(path, pub, sec, err, errlen);
}

static void allow_key(telemetry *t, const char *z85) {
    uint8_t key[32];
    if (strlen(z85) != 40 || !zmq_z85_decode(key, z85)) return;
    t->allowed = xrealloc(t->allowed, (size_t)(t->nallowed + 1) * sizeof *t->allowed);
    memcpy(t->allowed[t->nallowed++], key, 32);
}

/* Optional <rundir>/telemetry_authorized_keys: one Z85 public key per line, '#' comments. */
static int read_authorized_keys(telemetry *t, char *err, size_t errlen) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", t->rundir, TELEMETRY_AUTHORIZED_KEYS_FILE);
    if (access(path, F_OK) != 0) return 0;
    char *text = telemetry_read_text(path, 1 << 20, NULL, err, errlen);
    if (!text) return -1;
    int line = 0, rc = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        while (*l == ' ' || *l == '\t') l++;
        size_t n = strcspn(l, " \t\r#");
        if (n == 0) continue;
        l[n] = 0;
        if (n != 40) {
            rc = errf(err, errlen, "%s: line %d: expected a 40-character Z85 public key", path,
                      line);
            break;
        }
        allow_key(t, l);
    }
    free(text);
    return rc;
}

/* ZAP (ZeroMQ authentication protocol) handler: accepts a CURVE client only if its public key is
 * authorized. Runs in its own thread so handshakes do not wait for the next training step. */
static void *zap_main(void *arg) {
    telemetry *t = arg;
    for (;;) {
        zmq_msg_t part[8];
        int nparts = 0, more = 1, failed = 0;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, t->zap, 0) < 0) {
                zmq_msg_close(&m);
                failed = errno == EINTR ? 1 : 2;
                break;
            }
            more = zmq_msg_more(&m);
            if (nparts < 8)
                part[nparts++] = m;
            else
                zmq_msg_close(&m);
        }
        if (failed == 2) { /* ETERM: the context is shutting down */
            for (int i = 0; i < nparts; i++) zmq_msg_close(&part[i]);
            break;
        }
        const char *status = "400", *text = "client key not authorized";
        if (!failed && nparts >= 7 && zmq_msg_size(&part[5]) == 5 &&
            !memcmp(zmq_msg_data(&part[5]), "CURVE", 5) && zmq_msg_size(&part[6]) == 32) {
            for (int i = 0; i < t->nallowed; i++)
                if (!memcmp(zmq_msg_data(&part[6]), t->allowed[i], 32)) {
                    status = "200", text = "OK";
                    break;
                }
        }
        if (!failed && nparts >= 2) {
            zmq_send(t->zap, "1.0", 3, ZMQ_SNDMORE);
            zmq_send(t->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
            zmq_send(t->zap, status, 3, ZMQ_SNDMORE);
            zmq_send(t->zap, text, strlen(text), ZMQ_SNDMORE);
            zmq_send(t->zap, "", 0, ZMQ_SNDMORE); /* user id */
            zmq_send(t->zap, "", 0, 0);           /* metadata */
        }
        for (int i = 0; i < nparts; i++) zmq_msg_close(&part[i]);
    }
    zmq_close(t->zap);
    return NULL;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static int zmq_fail(const char *rundir, const char *what, char *err, size_t errlen) {
    return errf(err, errlen, "telemetry: %s: %s: %s", rundir, what, zmq_strerror(errno));
}

static int setopt_int(void *s, int opt, int v) {
    return zmq_setsockopt(s, opt, &v, sizeof v);
}

#define SOCKDIR_NAME ".telemetry"

/* The private folder for the ipc sockets, mode 0700 whatever the umask, so only the run's owner
 * (and root) can reach them: <rundir>/.telemetry when the socket paths fit a Unix socket address,
 * else a fresh folder under $XDG_RUNTIME_DIR or /tmp (a long run path never falls back to an
 * unauthenticated TCP port). */
static int make_sockdir(telemetry *t, char *err, size_t errlen) {
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - sizeof "/telemetry-ctl.sock";
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.4000s/" SOCKDIR_NAME, t->rundir);
    if (strlen(dir) <= max) {
        struct stat sb;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return errf(err, errlen, "telemetry: %s: %s", dir, strerror(errno));
        /* an existing one (a crashed run) must be our own folder, not a link planted by another */
        if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() ||
            chmod(dir, 0700) != 0)
            return errf(err, errlen, "telemetry: %s: not a private folder of this user", dir);
    } else {
        const char *base = getenv("XDG_RUNTIME_DIR");
        if (!base || !base[0] || strlen(base) + 24 > max || access(base, W_OK) != 0) base = "/tmp";
        snprintf(dir, sizeof dir, "%s/yolo-tel-XXXXXX", base);
        if (!mkdtemp(dir))
            return errf(err, errlen, "telemetry: mkdtemp %s: %s", dir, strerror(errno));
    }
    snprintf(t->sockdir, sizeof t->sockdir, "%s", dir);
    return 0;
}

/* Local: ipc://<sockdir>/<name>, the socket file 0600. With a host: tcp (always CURVE). */
static int bind_one(telemetry *t, void *s, const char *host, int port, const char *name, char *ep,
                    size_t eplen, char *ipc_file, char *err, size_t errlen) {
    char uri[PATH_MAX + 128];
    if (!host) {
        snprintf(ipc_file, PATH_MAX + 64, "%s/%s", t->sockdir, name);
        unlink(ipc_file); /* a stale socket of a crashed run (no live process serves this run) */
        snprintf(uri, sizeof uri, "ipc://%s", ipc_file);
    } else if (port > 0) {
        snprintf(uri, sizeof uri, "tcp://%s:%d", host, port);
    } else {
        snprintf(uri, sizeof uri, "tcp://%s:*", host);
    }
    if (zmq_bind(s, uri) != 0) {
        if (!host) ipc_file[0] = 0;
        char what[PATH_MAX + 160];
        snprintf(what, sizeof what, "bind %s", uri);
        return zmq_fail(t->rundir, what, err, errlen);
    }
    if (!host && chmod(ipc_file, 0600) != 0)
        return errf(err, errlen, "telemetry: %s: chmod 600: %s", ipc_file, strerror(errno));
    size_t n = eplen;
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &n) != 0)
        return zmq_fail(t->rundir, "ZMQ_LAST_ENDPOINT", err, errlen);
    return 0;
}

/* Refuses a run directory whose endpoints.json names another live process. */
static int check_not_in_use(const telemetry *t, char *err, size_t errlen) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", t->rundir, TELEMETRY_ENDPOINTS_FILE);
    char *text = telemetry_read_text(path, 1 << 16, NULL, NULL, 0);
    if (!text) return 0;
    cJSON *j = cJSON_Parse(text);
    free(text);
    cJSON *pid = cJSON_GetObjectItemCaseSensitive(j, "pid");
    const char *host = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "host"));
    char me[256] = "";
    gethostname(me, sizeof me - 1);
    int rc = 0;
    /* A pid means something only on the host that wrote it (run dirs may be on shared storage). */
    if (cJSON_IsNumber(pid) && pid->valuedouble > 0 && (pid_t)pid->valuedouble != getpid() &&
        (!host || !strcmp(host, me)) && kill((pid_t)pid->valuedouble, 0) == 0)
        rc = errf(err, errlen,
                  "telemetry: %s: already served by live process %d (see %s); not binding twice",
                  t->rundir, (int)pid->valuedouble, path);
    cJSON_Delete(j);
    return rc;
}

static int write_endpoints(telemetry *t, const char *server_public, char *err, size_t errlen) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddNumberToObject(j, "pid", (double)getpid());
    cJSON_AddStringToObject(j, "host", host);
    cJSON_AddStringToObject(j, "pub", t->pub_ep);
    cJSON_AddStringToObject(j, "ctl", t->ctl_ep);
    cJSON_AddBoolToObject(j, "curve", t->curve);
    if (t->curve) {
        cJSON_AddStringToObject(j, "server_public_key", server_public);
        cJSON_AddStringToObject(j, "client_key_file", TELEMETRY_CLIENT_KEY_FILE);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", t->rundir, TELEMETRY_ENDPOINTS_FILE);
    int rc = atomic_write_file_mode(path, text, strlen(text), 0600, err, errlen);
    free(text);
    return rc;
}

telemetry *telemetry_open(const char *rundir, const telemetry_opts *opts, char *err,
                          size_t errlen) {
    telemetry_opts def = {0};
    if (!opts) opts = &def;
    telemetry *t = xcalloc(1, sizeof *t);
    t->state = "starting";
    t->started = unix_seconds();
    if (!realpath(rundir, t->rundir)) {
        errf(err, errlen, "telemetry: %s: %s", rundir, strerror(errno));
        free(t);
        return NULL;
    }
    const char *host = opts->host && opts->host[0] ? opts->host : NULL;
    if (host && !strcmp(host, "localhost")) host = "127.0.0.1";
    /* every TCP endpoint, loopback too, is CURVE: any local user can reach a loopback port */
    t->curve = opts->curve || host != NULL;
    char spub[41] = "", ssec[41] = "", cpub[41], csec[41];
    if (check_not_in_use(t, err, errlen) != 0 || (!host && make_sockdir(t, err, errlen) != 0))
        goto fail;
    if (!(t->ctx = zmq_ctx_new())) {
        zmq_fail(t->rundir, "zmq_ctx_new", err, errlen);
        goto fail;
    }
    if (t->curve) {
        if (!zmq_has("curve")) {
            errf(err, errlen, "telemetry: %s: this libzmq has no CURVE support", t->rundir);
            goto fail;
        }
        if (keyfile_ensure(t->rundir, TELEMETRY_SERVER_KEY_FILE, spub, ssec, err, errlen) != 0 ||
            keyfile_ensure(t->rundir, TELEMETRY_CLIENT_KEY_FILE, cpub, csec, err, errlen) != 0 ||
            read_authorized_keys(t, err, errlen) != 0)
            goto fail;
        allow_key(t, cpub);
        /* The handler must be bound before any CURVE socket accepts a connection. */
        t->zap = zmq_socket(t->ctx, ZMQ_REP);
        if (!t->zap || zmq_bind(t->zap, "inproc://zeromq.zap.01") != 0) {
            zmq_fail(t->rundir, "ZAP handler", err, errlen);
            goto fail;
        }
        if (pthread_create(&t->zap_thread, NULL, zap_main, t) != 0) {
            errf(err, errlen, "telemetry: %s: cannot start the ZAP thread", t->rundir);
            goto fail;
        }
        t->zap_running = true;
    }
    t->pub = zmq_socket(t->ctx, ZMQ_XPUB);
    t->rep = zmq_socket(t->ctx, ZMQ_REP);
    if (!t->pub || !t->rep) {
        zmq_fail(t->rundir, "zmq_socket", err, errlen);
        goto fail;
    }
    int64_t maxmsg = MAX_MESSAGE;
    int rc = setopt_int(t->pub, ZMQ_LINGER, 0) | setopt_int(t->rep, ZMQ_LINGER, 0) |
             setopt_int(t->pub, ZMQ_XPUB_VERBOSER, 1) | /* every (un)subscribe, for counting */
             zmq_setsockopt(t->rep, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    for (int i = 0; t->curve && i < 2; i++) {
        void *s = i ? t->rep : t->pub;
        rc |= setopt_int(s, ZMQ_CURVE_SERVER, 1) |
              zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, ssec, 40) |
              zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN));
    }
    if (rc != 0) {
        zmq_fail(t->rundir, "socket options", err, errlen);
        goto fail;
    }
    if (bind_one(t, t->pub, host, opts->pub_port, "telemetry-pub.sock", t->pub_ep, sizeof t->pub_ep,
                 t->ipc_pub, err, errlen) != 0 ||
        bind_one(t, t->rep, host, opts->ctl_port, "telemetry-ctl.sock", t->ctl_ep, sizeof t->ctl_ep,
                 t->ipc_ctl, err, errlen) != 0 ||
        write_endpoints(t, spub, err, errlen) != 0)
        goto fail;
    return t;
fail:
    telemetry_close(t);
    return NULL;
}

void telemetry_close(telemetry *t) {
    if (!t) return;
    if (t->pub) zmq_close(t->pub);
    if (t->rep) zmq_close(t->rep);
    if (t->ctx) {
        /* Wakes the ZAP thread's blocking receive with ETERM; it closes its socket and exits. */
        zmq_ctx_shutdown(t->ctx);
        if (t->zap_running)
            pthread_join(t->zap_thread, NULL);
        else if (t->zap)
            zmq_close(t->zap);
        zmq_ctx_term(t->ctx);
    }
    if (t->pub_ep[0]) { /* endpoints were published: withdraw them */
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s", t->rundir, TELEMETRY_ENDPOINTS_FILE);
        unlink(path);
    }
    if (t->ipc_pub[0]) unlink(t->ipc_pub);
    if (t->ipc_ctl[0]) unlink(t->ipc_ctl);
    if (t->sockdir[0]) rmdir(t->sockdir);
    cJSON_Delete(t->last_step);
    cJSON_Delete(t->last_epoch);
    free(t->allowed);
    free(t);
}

const char *telemetry_pub_endpoint(const telemetry *t) {
    return t->pub_ep;
}
const char *telemetry_ctl_endpoint(const telemetry *t) {
    return t->ctl_ep;
}
bool telemetry_uses_curve(const telemetry *t) {
    return t->curve;
}
bool telemetry_take_save(telemetry *t) {
    bool s = t->save;
    t->save = false;
    return s;
}
bool telemetry_stop_requested(const telemetry *t) {
    return t->stop;
}
int telemetry_subscribers(const telemetry *t) {
    return t->subscribers;
}

/* ---- control requests ------------------------------------------------------------------------ */

static cJSON *error_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static cJSON *error_reply(const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", 0);
    cJSON_AddStringToObject(r, "error", msg);
    return r;
}

static cJSON *status_reply(const telemetry *t) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", 1);
    cJSON_AddStringToObject(r, "cmd", "status");
    cJSON_AddStringToObject(r, "state", t->state);
    cJSON_AddStringToObject(r, "rundir", t->rundir);
    cJSON_AddNumberToObject(r, "pid", (double)getpid());
    cJSON_AddNumberToObject(r, "uptime_s", unix_seconds() - t->started);
    cJSON_AddNumberToObject(r, "subscribers", t->subscribers);
    cJSON_AddBoolToObject(r, "save_pending", t->save);
    cJSON_AddBoolToObject(r, "stop_requested", t->stop);
    if (t->last_step) cJSON_AddItemToObject(r, "last_step", cJSON_Duplicate(t->last_step, 1));
    if (t->last_epoch) cJSON_AddItemToObject(r, "last_epoch", cJSON_Duplicate(t->last_epoch, 1));
    return r;
}

static cJSON *handle_request(telemetry *t, const char *data, size_t len, int nparts) {
    if (nparts != 1) return error_reply("expected a single-part message, got %d parts", nparts);
    if (len > TELEMETRY_MAX_REQUEST)
        return error_reply("request too large (%zu bytes > %d)", len, TELEMETRY_MAX_REQUEST);
    cJSON *req = cJSON_ParseWithLength(data, len);
    if (!req) return error_reply("request is not valid JSON (expected {\"cmd\":\"status\"})");
    const char *cmd = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "cmd"));
    cJSON *r;
    if (!cJSON_IsObject(req) || !cmd) {
        r = error_reply("request must be a JSON object with a string \"cmd\"");
    } else if (!strcmp(cmd, "status")) {
        r = status_reply(t);
    } else if (!strcmp(cmd, "save") || !strcmp(cmd, "stop")) {
        bool save = cmd[1] == 'a';
        if (save)
            t->save = true;
        else
            t->stop = true;
        r = cJSON_CreateObject();
        cJSON_AddBoolToObject(r, "ok", 1);
        cJSON_AddStringToObject(r, "cmd", cmd);
        cJSON_AddStringToObject(r, "message",
                                save ? "a checkpoint will be written at the next step boundary"
                                     : "will checkpoint and stop at the next step boundary");
    } else {
        char shown[48];
        snprintf(shown, sizeof shown, "%s", cmd);
        r = error_reply("unknown command '%s' (expected status, save or stop)", shown);
    }
    cJSON_Delete(req);
    return r;
}

/* Reads one whole (possibly multipart) request; 1 when one was read, 0 when none waits, -1. */
static int recv_request(void *s, char **data, size_t *len, int *nparts) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return errno == EAGAIN ? 0 : -1;
    }
    *len = zmq_msg_size(&m);
    *data = xmalloc(*len + 1);
    memcpy(*data, zmq_msg_data(&m), *len);
    *nparts = 1;
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    while (more) { /* the remaining parts are already here: multipart messages arrive whole */
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            free(*data);
            return -1;
        }
        (*nparts)++;
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return 1;
}

char *telemetry_reply(telemetry *t, const char *request, size_t len, int nparts) {
    cJSON *reply = handle_request(t, request, len, nparts);
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    return text;
}

int telemetry_poll(telemetry *t, char *err, size_t errlen) {
    /* Subscription changes: first byte 1 = subscribe, 0 = unsubscribe. */
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        int rc = zmq_msg_recv(&m, t->pub, ZMQ_DONTWAIT);
        if (rc < 0) {
            zmq_msg_close(&m);
            if (errno == EAGAIN) break;
            return zmq_fail(t->rundir, "receive subscriptions", err, errlen);
        }
        if (zmq_msg_size(&m) > 0) t->subscribers += *(uint8_t *)zmq_msg_data(&m) == 1 ? 1 : -1;
        if (t->subscribers < 0) t->subscribers = 0;
        zmq_msg_close(&m);
    }
    int served = 0;
    while (served < MAX_REQUESTS_PER_POLL) {
        char *data;
        size_t len;
        int nparts;
        int rc = recv_request(t->rep, &data, &len, &nparts);
        if (rc == 0) break;
        if (rc < 0) return zmq_fail(t->rundir, "receive control request", err, errlen);
        char *text = telemetry_reply(t, data, len, nparts);
        free(data);
        /* REP allows one reply per request; the requester's pipe always has room for it. */
        rc = zmq_send(t->rep, text, strlen(text), 0);
        free(text);
        if (rc < 0) return zmq_fail(t->rundir, "send control reply", err, errlen);
        served++;
    }
    return served;
}

/* ---- events ---------------------------------------------------------------------------------- */

/* "event" first, so a subscriber may filter by prefix, e.g. {"event":"checkpoint" */
static cJSON *event_new(telemetry *t, const char *kind) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", kind);
    cJSON_AddNumberToObject(e, "seq", (double)++t->seq);
    cJSON_AddNumberToObject(e, "time", unix_seconds());
    return e;
}

/* Sends and frees e. A full queue (slow subscriber) drops the event: training never blocks. */
static int event_send(telemetry *t, cJSON *e) {
    char *text = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    int rc = zmq_send(t->pub, text, strlen(text), ZMQ_DONTWAIT);
    free(text);
    if (rc < 0 && errno != EAGAIN) {
        log_warn("telemetry: %s: publish failed: %s", t->rundir, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

int telemetry_publish_step(telemetry *t, const telemetry_step *s) {
    cJSON *e = event_new(t, "step");
    cJSON_AddNumberToObject(e, "epoch", s->epoch);
    cJSON_AddNumberToObject(e, "epochs", s->epochs);
    cJSON_AddNumberToObject(e, "step", (double)s->step);
    cJSON_AddNumberToObject(e, "steps", (double)s->steps);
    cJSON *losses = cJSON_AddObjectToObject(e, "losses");
    for (int i = 0; i < s->nloss; i++)
        cJSON_AddNumberToObject(losses, s->loss_names[i], s->losses[i]);
    cJSON_AddNumberToObject(e, "images_per_s", s->images_per_s);
    cJSON_AddNumberToObject(e, "loader_stall_s", s->loader_stall_s);
    cJSON_AddNumberToObject(e, "compute_s", s->compute_s);
    cJSON_AddNumberToObject(e, "comm_s", s->comm_s);
    cJSON_AddNumberToObject(e, "comm_exposed_s", s->comm_exposed_s);
    cJSON_AddNumberToObject(e, "lr", s->lr);
    if (s->eta_s >= 0) cJSON_AddNumberToObject(e, "eta_s", s->eta_s);
    if (s->nworkers > 0) {
        cJSON *ws = cJSON_AddArrayToObject(e, "workers");
        for (int i = 0; i < s->nworkers; i++) {
            const telemetry_worker_timing *w = &s->workers[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "rank", w->rank);
            cJSON_AddNumberToObject(o, "compute_s", w->compute_s);
            cJSON_AddNumberToObject(o, "comm_s", w->comm_s);
            cJSON_AddNumberToObject(o, "comm_exposed_s", w->comm_exposed_s);
            cJSON_AddNumberToObject(o, "stall_s", w->stall_s);
            cJSON_AddItemToArray(ws, o);
        }
    }
    cJSON_Delete(t->last_step);
    t->last_step = cJSON_Duplicate(e, 1);
    t->state = "running";
    return event_send(t, e);
}

int telemetry_publish_epoch(telemetry *t, int epoch, int epochs, int nmetrics,
                            const char *const *names, const double *values) {
    cJSON *e = event_new(t, "epoch");
    cJSON_AddNumberToObject(e, "epoch", epoch);
    cJSON_AddNumberToObject(e, "epochs", epochs);
    cJSON *m = cJSON_AddObjectToObject(e, "metrics");
    for (int i = 0; i < nmetrics; i++) cJSON_AddNumberToObject(m, names[i], values[i]);
    cJSON_Delete(t->last_epoch);
    t->last_epoch = cJSON_Duplicate(e, 1);
    return event_send(t, e);
}

int telemetry_publish_checkpoint(telemetry *t, const char *version, const char *path, int epoch,
                                 long step) {
    cJSON *e = event_new(t, "checkpoint");
    cJSON_AddStringToObject(e, "version", version ? version : "");
    cJSON_AddStringToObject(e, "path", path ? path : "");
    cJSON_AddNumberToObject(e, "epoch", epoch);
    cJSON_AddNumberToObject(e, "step", (double)step);
    return event_send(t, e);
}

int telemetry_publish_warning(telemetry *t, const char *message) {
    cJSON *e = event_new(t, "warning");
    cJSON_AddStringToObject(e, "message", message ? message : "");
    return event_send(t, e);
}

int telemetry_publish_finished(telemetry *t, bool ok, const char *message) {
    cJSON *e = event_new(t, ok ? "finished" : "failed");
    cJSON_AddStringToObject(e, "message", message ? message : "");
    t->state = ok ? "finished" : "failed";
    return event_send(t, e);
}
