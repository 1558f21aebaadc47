/* Telemetry client: reads a run's endpoints.json and talks to its control and event sockets. */
#include "coordinator/telemetry.h"

#include "common/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

struct telemetry_client {
    void *ctx, *sub;
    char rundir[PATH_MAX];
    char pub_ep[PATH_MAX + 16], ctl_ep[PATH_MAX + 16];
    bool curve;
    char server_pub[41], pub[41], sec[41];
};

/* A wildcard bind ("tcp://0.0.0.0:N") is reached through the server's host name from elsewhere. */
static void copy_endpoint(char *dst, size_t n, const char *ep, const char *host) {
    const char *wild = "tcp://0.0.0.0:";
    char me[256] = "";
    gethostname(me, sizeof me - 1);
    if (host && host[0] && strcmp(host, me) != 0 && !strncmp(ep, wild, strlen(wild)))
        snprintf(dst, n, "tcp://%s:%s", host, ep + strlen(wild));
    else
        snprintf(dst, n, "%s", ep);
}

telemetry_client *telemetry_client_open(const char *rundir, const char *key_file, char *err,
                                        size_t errlen) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", rundir, TELEMETRY_ENDPOINTS_FILE);
    if (access(path, F_OK) != 0) {
        errf(err, errlen, "%s: no %s: the run is not live", rundir, TELEMETRY_ENDPOINTS_FILE);
        return NULL;
    }
    char *text = telemetry_read_text(path, 1 << 16, NULL, err, errlen);
    if (!text) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const char *pub = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "pub"));
    const char *ctl = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "ctl"));
    const char *host = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "host"));
    cJSON *version = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (!cJSON_IsNumber(version) || version->valueint != 1 || !pub || !ctl) {
        errf(err, errlen, "%s: not a version 1 endpoints file (need version, pub, ctl)", path);
        cJSON_Delete(j);
        return NULL;
    }
    telemetry_client *c = xcalloc(1, sizeof *c);
    snprintf(c->rundir, sizeof c->rundir, "%s", rundir);
    copy_endpoint(c->pub_ep, sizeof c->pub_ep, pub, host);
    copy_endpoint(c->ctl_ep, sizeof c->ctl_ep, ctl, host);
    c->curve = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "curve"));
    if (c->curve) {
        const char *spub =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "server_public_key"));
        const char *kname =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "client_key_file"));
        char kpath[PATH_MAX + 64];
        if (!key_file) {
            snprintf(kpath, sizeof kpath, "%s/%s", rundir,
                     kname ? kname : TELEMETRY_CLIENT_KEY_FILE);
            key_file = kpath;
        }
        char kerr[PATH_MAX + 128];
        if (!spub || strlen(spub) != 40) {
            errf(err, errlen, "%s: curve is on but server_public_key is missing or malformed",
                 path);
            goto fail;
        }
        snprintf(c->server_pub, sizeof c->server_pub, "%s", spub);
        if (telemetry_keyfile_read(key_file, c->pub, c->sec, kerr, sizeof kerr) != 0) {
            errf(err, errlen,
                 "%s: the run requires CURVE authentication and the client key is "
                 "unusable: %s",
                 rundir, kerr);
            goto fail;
        }
    }
    cJSON_Delete(j);
    if (!(c->ctx = zmq_ctx_new())) {
        errf(err, errlen, "%s: zmq_ctx_new: %s", rundir, zmq_strerror(errno));
        telemetry_client_close(c);
        return NULL;
    }
    return c;
fail:
    cJSON_Delete(j);
    free(c);
    return NULL;
}

void telemetry_client_close(telemetry_client *c) {
    if (!c) return;
    if (c->sub) zmq_close(c->sub);
    if (c->ctx) zmq_ctx_term(c->ctx);
    free(c);
}

const char *telemetry_client_ctl_endpoint(const telemetry_client *c) {
    return c->ctl_ep;
}

static void *client_socket(telemetry_client *c, int type, const char *ep, char *err,
                           size_t errlen) {
    void *s = zmq_socket(c->ctx, type);
    int zero = 0;
    if (!s || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) != 0) goto fail;
    if (c->curve && (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->server_pub, 40) != 0 ||
                     zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->pub, 40) != 0 ||
                     zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->sec, 40) != 0))
        goto fail;
    if (zmq_connect(s, ep) != 0) goto fail;
    return s;
fail:
    errf(err, errlen, "%s: connect %s: %s", c->rundir, ep, zmq_strerror(errno));
    if (s) zmq_close(s);
    return NULL;
}

static char *recv_text(void *s, int timeout_ms, char *err, size_t errlen, const char *what,
                       const telemetry_client *c) {
    zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0) {
        errf(err, errlen, "%s: %s: %s", c->rundir, what, zmq_strerror(errno));
        return NULL;
    }
    if (rc == 0) return NULL; /* timeout: caller words the message */
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) < 0) {
        errf(err, errlen, "%s: %s: %s", c->rundir, what, zmq_strerror(errno));
        zmq_msg_close(&m);
        return NULL;
    }
    size_t n = zmq_msg_size(&m);
    char *text = xmalloc(n + 1);
    memcpy(text, zmq_msg_data(&m), n);
    text[n] = 0;
    zmq_msg_close(&m);
    return text;
}

char *telemetry_client_request(telemetry_client *c, const char *request, size_t len, int timeout_ms,
                               char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    void *s = client_socket(c, ZMQ_REQ, c->ctl_ep, err, errlen);
    if (!s) return NULL;
    /* The request is queued until the connection (and CURVE handshake) is up; a refused client
     * never gets that far, so it ends in the timeout below. */
    if (zmq_send(s, request, len, ZMQ_DONTWAIT) < 0) {
        errf(err, errlen, "%s: send to %s: %s", c->rundir, c->ctl_ep, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    char *reply = recv_text(s, timeout_ms, err, errlen, "receive reply", c);
    if (!reply && err && errlen && !err[0])
        errf(err, errlen, "%s: no reply from %s within %.1f s (is the run live?)", c->rundir,
             c->ctl_ep, timeout_ms / 1000.0);
    zmq_close(s);
    return reply;
}

int telemetry_client_subscribe(telemetry_client *c, char *err, size_t errlen) {
    if (c->sub) return 0;
    c->sub = client_socket(c, ZMQ_SUB, c->pub_ep, err, errlen);
    if (!c->sub) return -1;
    if (zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, "", 0) != 0)
        return errf(err, errlen, "%s: subscribe: %s", c->rundir, zmq_strerror(errno));
    return 0;
}

char *telemetry_client_next_event(telemetry_client *c, int timeout_ms, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!c->sub) {
        errf(err, errlen, "%s: not subscribed", c->rundir);
        return NULL;
    }
    return recv_text(c->sub, timeout_ms, err, errlen, "receive event", c);
}
