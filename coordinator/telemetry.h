/* Telemetry and control of a training run over ZeroMQ (coordinator side, plus the client side
 * used by `coordinator watch` and `coordinator ctl`).
 *
 * Server (the coordinator owns one per run):
 *   - a PUB socket (ZMQ_XPUB) sending one JSON object per event. Every event starts with
 *     {"event":"<kind>","seq":N,"time":<unix s>, ...}; kinds: step, epoch, checkpoint, warning,
 *     finished, failed. Sends never block training: a subscriber that falls more than the
 *     high-water mark (1000 events) behind loses events (it sees a gap in "seq").
 *   - a REP socket answering JSON requests {"cmd":"status"|"save"|"stop"}. "save" asks for a
 *     checkpoint at the next step boundary, "stop" for a checkpoint and a clean finish: both only
 *     set flags that the training loop reads (telemetry_take_save, telemetry_stop_requested).
 *     Anything else (not JSON, not an object, unknown cmd, multipart, > 64 KiB) gets
 *     {"ok":false,"error":"..."} and changes nothing. Messages over 1 MiB drop the connection.
 *   - Requests are served only inside telemetry_poll(), which the training loop calls once per
 *     step (non-blocking); so a reply can take up to one step.
 *   - Only the run's owner (or a holder of the run's client key) can control or watch a run,
 *     whatever the path length and the umask. Endpoints go to <rundir>/endpoints.json (0600,
 *     written atomically, removed on close). Default binding is local only: ipc:// sockets (0600)
 *     in a private folder (0700): <rundir>/.telemetry, or a fresh yolo-tel-XXXXXX under
 *     $XDG_RUNTIME_DIR or /tmp when the run path is too long for a Unix socket address. Binding a
 *     TCP address (loopback included: any local user can reach a port) always turns on CURVE: the
 *     server key pair lives in <rundir>/telemetry_server.key (0600), and only clients whose public
 *     key is authorized may connect: the key pair in <rundir>/telemetry_client.key (0600, made on
 *     first open) and any key listed in <rundir>/telemetry_authorized_keys (one Z85 public key per
 *     line). Other clients complete no handshake and get no reply. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define TELEMETRY_MAX_REQUEST (64 * 1024)
#define TELEMETRY_ENDPOINTS_FILE "endpoints.json"
#define TELEMETRY_SERVER_KEY_FILE "telemetry_server.key"
#define TELEMETRY_CLIENT_KEY_FILE "telemetry_client.key"
#define TELEMETRY_AUTHORIZED_KEYS_FILE "telemetry_authorized_keys"

typedef struct telemetry telemetry;

typedef struct telemetry_opts {
    /* NULL or "": local only (ipc:// in a private folder). Otherwise an IPv4 address to bind
     * tcp:// on ("127.0.0.1", "0.0.0.0", "10.1.2.3"), always with CURVE. */
    const char *host;
    int pub_port, ctl_port; /* tcp ports; 0 = ephemeral */
    bool curve;             /* CURVE even on a local binding */
} telemetry_opts;

/* Per-worker timing of one step (optional in a step event). */
typedef struct telemetry_worker_timing {
    int rank;
    double compute_s, comm_s, comm_exposed_s, stall_s;
} telemetry_worker_timing;

typedef struct telemetry_step {
    int epoch, epochs; /* 1-based epoch of epochs */
    long step, steps;  /* 1-based step within the epoch of steps */
    int nloss;         /* losses by name ("box", "cls", "dfl") */
    const char *const *loss_names;
    const double *losses;
    double images_per_s;
    double loader_stall_s; /* time the step waited for data */
    double compute_s;      /* forward + backward */
    double comm_s;         /* all-reduce, total */
    double comm_exposed_s; /* all-reduce not hidden behind compute */
    double lr;
    double eta_s; /* < 0: unknown (watch then estimates it) */
    int nworkers;
    const telemetry_worker_timing *workers;
} telemetry_step;

/* Binds the sockets and writes endpoints.json. NULL + err (naming the run dir) on failure. */
telemetry *telemetry_open(const char *rundir, const telemetry_opts *opts, char *err, size_t errlen);
/* Closes the sockets, removes endpoints.json and the ipc socket files. */
void telemetry_close(telemetry *t);

const char *telemetry_pub_endpoint(const telemetry *t);
const char *telemetry_ctl_endpoint(const telemetry *t);
bool telemetry_uses_curve(const telemetry *t);

/* Serves every pending control request and subscription change; never blocks. Returns the number
 * of requests answered, or -1 on a socket error (err says which). */
int telemetry_poll(telemetry *t, char *err, size_t errlen);
/* The reply (JSON text, caller frees) to one control request of nparts parts, acting on it as
 * telemetry_poll does: what the REP socket sends back. */
char *telemetry_reply(telemetry *t, const char *request, size_t len, int nparts);
/* True once per "save" request received since the last call. */
bool telemetry_take_save(telemetry *t);
/* True once a "stop" request was received (stays true). */
bool telemetry_stop_requested(const telemetry *t);
/* Subscriptions seen by telemetry_poll (connected watchers, approximately). */
int telemetry_subscribers(const telemetry *t);

/* Events. Each returns 0, or -1 when the send failed for another reason than a slow subscriber.
 * The last step and epoch events are also what "status" answers with. */
int telemetry_publish_step(telemetry *t, const telemetry_step *s);
int telemetry_publish_epoch(telemetry *t, int epoch, int epochs, int nmetrics,
                            const char *const *names, const double *values);
int telemetry_publish_checkpoint(telemetry *t, const char *version, const char *path, int epoch,
                                 long step);
int telemetry_publish_warning(telemetry *t, const char *message);
/* ok: "finished", else "failed". */
int telemetry_publish_finished(telemetry *t, bool ok, const char *message);

/* ---- client side ------------------------------------------------------------------------------
 */

typedef struct telemetry_client telemetry_client;

/* Reads <rundir>/endpoints.json. When the run uses CURVE, the client key pair comes from key_file
 * (NULL: <rundir>/telemetry_client.key). NULL + err naming the run dir on failure. */
telemetry_client *telemetry_client_open(const char *rundir, const char *key_file, char *err,
                                        size_t errlen);
void telemetry_client_close(telemetry_client *c);
const char *telemetry_client_ctl_endpoint(const telemetry_client *c);
/* Sends one request (a JSON text) on a fresh REQ socket and returns the reply text (caller
 * frees), or NULL + err on timeout or error. */
char *telemetry_client_request(telemetry_client *c, const char *request, size_t len, int timeout_ms,
                               char *err, size_t errlen);
/* Connects a SUB socket to the event stream. */
int telemetry_client_subscribe(telemetry_client *c, char *err, size_t errlen);
/* Next event text (caller frees); NULL with err[0] == 0 on timeout, NULL + err on error. */
char *telemetry_client_next_event(telemetry_client *c, int timeout_ms, char *err, size_t errlen);

/* ---- key files ---------------------------------------------------------------------------------
 * A key file is JSON {"public":"<40 Z85 chars>","secret":"<40 Z85 chars>"}, mode 0600. */
int telemetry_keyfile_write(const char *path, char *err, size_t errlen); /* new key pair */
int telemetry_keyfile_read(const char *path, char public_key[41], char secret_key[41], char *err,
                           size_t errlen);
/* Whole small text file (at most max bytes), NUL-terminated; NULL + err. */
char *telemetry_read_text(const char *path, size_t max, size_t *len, char *err, size_t errlen);
