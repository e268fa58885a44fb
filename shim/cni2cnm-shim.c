/* cni2cnm-shim: the cni2cnm CNI plugin executable without an interpreter.
 *
 * Forwards ADD, DEL, CHECK, GC and STATUS to a running `cni2cnm serve` over its unix socket
 * (the wire format of cni2cnm/daemon/wire.py) and prints the daemon's reply byte for byte.
 * Everything else, and every request the daemon cannot take, goes to the Python plugin file
 * `cni2cnm install` placed beside this one (PYTHON_NAME), with stdin replayed: it behaves
 * exactly as the plugin did before the shim. Without that file (a node without Python):
 * ADD, CHECK, GC and STATUS answer CNI error 11; a DEL is kept in <socket dir>/pending/ for
 * the daemon to finish when it starts, and answered 0. README.md, "The static shim".
 *
 * Built static (scripts/shim.sh): no interpreter, no shared library, no NSS call.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef CNI2CNM_VERSION
#error "build with -DCNI2CNM_VERSION=\"x.y.z\" (scripts/shim.sh)"
#endif
#define PROTOCOL 3
#define DEFAULT_SOCKET "/run/cni2cnm/cni2cnm.sock"
#define MAX_ENV (64 << 10)
#define MAX_STDIN (1 << 20)
#define MAX_FRAME (2 << 20)
#define MAX_HELLO 4096
#define CONNECT_MS 1000
#define HELLO_MS 2000
#define MIN_REPLY_S 150.0
#define PYTHON_NAME "cni2cnm-python" /* the Python plugin file, beside this one */
#define PENDING_DIR "pending"
#define MAX_PENDING 1024
#define LATEST "1.1.0"

extern char **environ;
static const char *const VERSIONS[] = {"0.1.0", "0.2.0", "0.3.0", "0.3.1",
                                       "0.4.0", "1.0.0", "1.1.0", NULL};

/* ---- small helpers ------------------------------------------------------------------- */

typedef struct { char *p; size_t n, cap; } buf_t;

static void put(buf_t *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { fputs("cni2cnm-shim: out of memory\n", stderr); _exit(1); }
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }
static void put_u32(buf_t *b, uint32_t v) {
    unsigned char h[4] = {v >> 24, v >> 16, v >> 8, v};
    put(b, h, 4);
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}
static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w; n -= (size_t)w;
    }
    return 0;
}

/* ---- the config: a strict JSON reader (Python's json.loads accepts what this accepts) ---- */

typedef struct { const char *p, *end; int depth; } js_t;
enum { J_BAD, J_STR, J_NUM, J_TRUE, J_FALSE, J_NULL, J_ARR, J_OBJ };

static void ws(js_t *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}
static int hex4(const char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        *v <<= 4;
        if (c >= '0' && c <= '9') *v |= c - '0';
        else if (c >= 'a' && c <= 'f') *v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') *v |= c - 'A' + 10;
        else return -1;
    }
    return 0;
}
static void utf8(buf_t *o, unsigned c) {
    unsigned char s[4];
    size_t n;
    if (c < 0x80) { s[0] = c; n = 1; }
    else if (c < 0x800) { s[0] = 0xC0 | c >> 6; s[1] = 0x80 | (c & 63); n = 2; }
    else if (c < 0x10000) { s[0] = 0xE0 | c >> 12; s[1] = 0x80 | (c >> 6 & 63);
                            s[2] = 0x80 | (c & 63); n = 3; }
    else { s[0] = 0xF0 | c >> 18; s[1] = 0x80 | (c >> 12 & 63); s[2] = 0x80 | (c >> 6 & 63);
           s[3] = 0x80 | (c & 63); n = 4; }
    put(o, s, n);
}
/* Length of the valid UTF-8 sequence at p (0: invalid). */
static size_t utf8_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
             : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!n || p + n > end) return 0;
    for (size_t i = 1; i < n; i++) if ((p[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))) return 0;
    if (n == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))) return 0;
    return n;
}
/* A string at j->p (the opening quote); decoded into `o` (if given). `*lone`: it holds a
 * lone surrogate (Python keeps those; they are not valid in a path). */
static int jstring(js_t *j, buf_t *o, int *lone) {
    j->p++;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') { j->p++; return 0; }
        if (c < 0x20) return -1;
        if (c != '\\') {
            size_t n = utf8_len((const unsigned char *)j->p, (const unsigned char *)j->end);
            if (!n) return -1;
            if (o) put(o, j->p, n);
            j->p += n;
            continue;
        }
        if (j->end - j->p < 2) return -1;
        char e = j->p[1];
        j->p += 2;
        const char *map = strchr("\"\"\\\\//b\bf\fn\nr\rt\t", e);
        if (e && map && ((map - "\"\"\\\\//b\bf\fn\nr\rt\t") % 2) == 0) {
            if (o) put(o, map + 1, 1);
            continue;
        }
        if (e != 'u') return -1;
        unsigned v, w;
        if (j->end - j->p < 4 || hex4(j->p, &v)) return -1;
        j->p += 4;
        if (v >= 0xD800 && v < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
            j->p[1] == 'u' && !hex4(j->p + 2, &w) && w >= 0xDC00 && w < 0xE000) {
            j->p += 6;
            v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00);
        } else if (v >= 0xD800 && v < 0xE000) {
            if (lone) *lone = 1;
        }
        if (o) utf8(o, v);
    }
    return -1;
}
static int lit(js_t *j, const char *s) {
    size_t n = strlen(s);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, s, n)) return -1;
    j->p += n;
    return 0;
}
static int digits(js_t *j) {
    const char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    return j->p > s ? 0 : -1;
}
static int jvalue(js_t *j);
static int jcontainer(js_t *j, char close, int object) {
    if (++j->depth > 900) return -1; /* Python's json gives up (RecursionError) near here */
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) { j->p++; j->depth--; return 0; }
    for (;;) {
        ws(j);
        if (object) {
            if (j->p >= j->end || *j->p != '"' || jstring(j, NULL, NULL)) return -1;
            ws(j);
            if (j->p >= j->end || *j->p++ != ':') return -1;
            ws(j);
        }
        if (jvalue(j) == J_BAD) return -1;
        ws(j);
        if (j->p >= j->end) return -1;
        if (*j->p == ',') { j->p++; continue; }
        if (*j->p++ != close) return -1;
        j->depth--;
        return 0;
    }
}
static int jvalue(js_t *j) {
    if (j->p >= j->end) return J_BAD;
    switch (*j->p) {
    case '"': return jstring(j, NULL, NULL) ? J_BAD : J_STR;
    case '{': return jcontainer(j, '}', 1) ? J_BAD : J_OBJ;
    case '[': return jcontainer(j, ']', 0) ? J_BAD : J_ARR;
    case 't': return lit(j, "true") ? J_BAD : J_TRUE;
    case 'f': return lit(j, "false") ? J_BAD : J_FALSE;
    case 'n': return lit(j, "null") ? J_BAD : J_NULL;
    case 'N': return lit(j, "NaN") ? J_BAD : J_NUM;
    case 'I': return lit(j, "Infinity") ? J_BAD : J_NUM;
    }
    if (*j->p == '-') {
        j->p++;
        if (j->p < j->end && *j->p == 'I') return lit(j, "Infinity") ? J_BAD : J_NUM;
    }
    if (j->p < j->end && *j->p == '0') j->p++;
    else if (digits(j)) return J_BAD;
    if (j->p < j->end && *j->p == '.') { j->p++; if (digits(j)) return J_BAD; }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (digits(j)) return J_BAD;
    }
    return J_NUM;
}

/* The top-level keys the shim reads. kind J_BAD: absent (or the document is not JSON). */
typedef struct { int kind; buf_t s; int lone; double num; } jv_t;
typedef struct { jv_t socket, mode, timeout, version; int object; } conf_t;

static void jv_reset(jv_t *v) { v->kind = J_BAD; v->s.n = 0; v->lone = 0; }

static void read_config(const char *data, size_t n, conf_t *c) {
    js_t j = {data, data + n, 0};
    struct { const char *name; jv_t *v; } keys[] = {
        {"daemonSocket", &c->socket}, {"daemon", &c->mode},
        {"dockerTimeout", &c->timeout}, {"cniVersion", &c->version}};
    buf_t key = {0};
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < 4; i++) jv_reset(keys[i].v);
    if (n >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3)) j.p += 3; /* Python: utf-8-sig */
    ws(&j);
    if (j.p >= j.end || *j.p != '{') goto bad;
    j.p++;
    j.depth = 1;
    ws(&j);
    if (j.p < j.end && *j.p == '}') { j.p++; goto done; }
    for (;;) {
        ws(&j);
        key.n = 0;
        if (j.p >= j.end || *j.p != '"' || jstring(&j, &key, NULL)) goto bad;
        ws(&j);
        if (j.p >= j.end || *j.p++ != ':') goto bad;
        ws(&j);
        jv_t *v = NULL;
        for (size_t i = 0; i < 4; i++)
            if (strlen(keys[i].name) == key.n && !memcmp(keys[i].name, key.p, key.n))
                v = keys[i].v;
        const char *start = j.p;
        if (v) {                         /* the last occurrence wins, as in Python */
            jv_reset(v);
            if (j.p < j.end && *j.p == '"') {
                if (jstring(&j, &v->s, &v->lone)) goto bad;
                v->kind = J_STR;
            } else if ((v->kind = jvalue(&j)) == J_NUM) {
                char tmp[64];
                size_t len = (size_t)(j.p - start) < 63 ? (size_t)(j.p - start) : 63;
                memcpy(tmp, start, len);
                tmp[len] = 0;
                v->num = strtod(tmp, NULL);
            }
            if (v->kind == J_BAD) goto bad;
        } else if (jvalue(&j) == J_BAD) {
            goto bad;
        }
        ws(&j);
        if (j.p >= j.end) goto bad;
        if (*j.p == ',') { j.p++; continue; }
        if (*j.p++ != '}') goto bad;
        break;
    }
done:
    ws(&j);
    if (j.p == j.end) { free(key.p); c->object = 1; return; }
bad: /* not a JSON object: Python reads it as {} */
    for (size_t i = 0; i < 4; i++) jv_reset(keys[i].v);
    free(key.p);
}

/* ---- the request ----------------------------------------------------------------------- */

typedef struct {
    const char *command;
    char *data;        /* stdin, when it fits MAX_STDIN */
    size_t size;
    int spill;         /* memfd holding all of stdin when it did not fit, else -1 */
    int unreadable;    /* errno of a failed read of stdin, else 0 */
    conf_t conf;
    const char *socket;  /* NULL: no daemon */
    int unusable;
    char socket_dir[PATH_MAX];
    char python[PATH_MAX];  /* the Python plugin file, "" when none is installed */
} req_t;

static void read_stdin(req_t *r) {
    r->data = malloc(MAX_STDIN + 1);
    r->size = 0;
    r->spill = -1;
    if (!r->data) { r->unreadable = ENOMEM; return; }
    for (;;) {
        ssize_t n = read(0, r->data + r->size, MAX_STDIN + 1 - r->size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { r->unreadable = errno; return; }
        if (n == 0) return;
        r->size += (size_t)n;
        if (r->size > MAX_STDIN) break;
    }
    /* Too big for the daemon: keep all of it for the Python plugin. */
    r->spill = memfd_create("cni2cnm-stdin", 0);
    if (r->spill < 0 || write_all(r->spill, r->data, r->size)) { r->unreadable = EFBIG; return; }
    char chunk[65536];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { r->unreadable = errno; return; }
        if (n == 0) return;
        if (write_all(r->spill, chunk, (size_t)n)) { r->unreadable = EFBIG; return; }
    }
}

static int forwarded_name(const char *e, size_t n) {
    static const char *const local[] = {"CNI2CNM_TEST_STOP_AT", "CNI2CNM_DAEMON_SOCKET",
                                        "CNI2CNM_DAEMON", NULL};
    if (!(n >= 4 && !memcmp(e, "CNI_", 4)) && !(n >= 8 && !memcmp(e, "CNI2CNM_", 8)) &&
        !(n == 11 && !memcmp(e, "DOCKER_HOST", 11)))
        return 0;
    for (int i = 0; local[i]; i++)
        if (strlen(local[i]) == n && !memcmp(local[i], e, n)) return 0;
    return 1;
}

/* The request body: u32 n, n bytes of NUL-separated NAME=value, then stdin. -1: too big. */
static int request_body(const req_t *r, buf_t *b) {
    put_u32(b, 0);
    size_t start = b->n;
    size_t cap = MAX_ENV / 2 + 2, nsent = 0;
    const char **sent = calloc(cap, sizeof *sent);
    for (char **e = environ; *e && sent; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e || !forwarded_name(*e, (size_t)(eq - *e))) continue;
        if (nsent == cap) { free(sent); sent = NULL; break; }  /* too many: too big */
        sent[nsent++] = *e;
    }
    for (size_t i = 0; sent && i < nsent && b->n - start <= MAX_ENV; i++) {
        size_t name = (size_t)(strchr(sent[i], '=') - sent[i]) + 1;
        int later = 0; /* the last of duplicate names wins, as in Python's os.environ */
        for (size_t k = i + 1; k < nsent && !later; k++) later = !strncmp(sent[k], sent[i], name);
        if (later) continue;
        if (b->n > start) put(b, "", 1);
        puts_(b, sent[i]);
    }
    if (!sent) return -1;
    free(sent);
    size_t env = b->n - start;
    if (env > MAX_ENV || r->size > MAX_STDIN || r->spill >= 0) return -1;
    unsigned char *h = (unsigned char *)b->p + start - 4;
    h[0] = env >> 24; h[1] = env >> 16; h[2] = env >> 8; h[3] = env;
    put(b, r->data, r->size);
    return 0;
}

/* ---- talking to the daemon ------------------------------------------------------------- */

typedef struct { char kind[16]; char why[512]; } fail_t;

static int fail(fail_t *f, const char *kind, const char *fmt, const char *a, const char *b) {
    snprintf(f->kind, sizeof f->kind, "%s", kind);
    snprintf(f->why, sizeof f->why, fmt, a, b ? b : "");
    return -1;
}

static int io_wait(int fd, short ev, long long deadline) {
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) { errno = ETIMEDOUT; return -1; }
        struct pollfd p = {fd, ev, 0};
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n > 0) return 0;
    }
}
static int recv_exact(int fd, char *p, size_t n, long long deadline) {
    while (n) {
        if (io_wait(fd, POLLIN, deadline)) return -1;
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) return -1;
        if (r == 0) { errno = ECONNRESET; return -1; }
        p += r; n -= (size_t)r;
    }
    return 0;
}
static int recv_frame(int fd, buf_t *b, size_t limit, long long deadline) {
    unsigned char h[4];
    if (recv_exact(fd, (char *)h, 4, deadline)) return -1;
    uint32_t n = get_u32(h);
    if (n > limit) { errno = EMSGSIZE; return -1; }
    char *p = malloc(n + 1);
    if (!p) { errno = ENOMEM; return -1; }
    if (recv_exact(fd, p, n, deadline)) { free(p); return -1; }
    free(b->p);
    b->p = p; b->n = n; b->cap = n + 1;
    return 0;
}
static int send_all(int fd, const char *p, size_t n, long long deadline) {
    while (n) {
        if (io_wait(fd, POLLOUT, deadline)) return -1;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w < 0) return -1;
        p += w; n -= (size_t)w;
    }
    return 0;
}
static const char *why(int e) {
    return e == ETIMEDOUT ? "timed out" : e == ECONNRESET ? "connection closed"
         : e == EMSGSIZE ? "message too long" : strerror(e);
}

static double reply_seconds(const conf_t *c) {
    if (c->timeout.kind == J_NUM && c->timeout.num > 0 && c->timeout.num <= 600)
        return c->timeout.num * 3 > MIN_REPLY_S ? c->timeout.num * 3 : MIN_REPLY_S;
    return MIN_REPLY_S;
}

/* One conversation: 0 with the reply in `reply`, or -1 with `f` saying why nothing (or, for
 * kind no_reply, an unanswered request) happened. */
static int converse(const req_t *r, const buf_t *body, buf_t *reply, fail_t *f) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    const char *path = r->socket;
    if (strlen(path) >= sizeof a.sun_path)
        return fail(f, "unusable", "daemon socket path %s is too long", path, NULL);
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(f, "unusable", "cannot make a socket (%s)", strerror(errno), NULL);
    struct timeval tv = {CONNECT_MS / 1000, CONNECT_MS % 1000 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc = -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        if (e == ENOENT)
            fail(f, "absent", "no daemon socket at %s%s", path, NULL);
        else
            fail(f, e == ECONNREFUSED ? "refused" : "unusable",
                 "daemon socket %s does not accept connections (%s)", path, why(e));
        goto out;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        char uid[24];
        snprintf(uid, sizeof uid, "%d", len == sizeof cred ? (int)cred.uid : -1);
        fail(f, "foreign", "daemon socket %s belongs to a process of uid %s, not root: not "
             "using it", path, uid);
        goto out;
    }
    buf_t hello = {0};
    if (recv_frame(fd, &hello, MAX_HELLO, now_ms() + HELLO_MS)) {
        fail(f, "no_hello", "daemon at %s did not answer within 2 s (%s)", path, why(errno));
        free(hello.p);
        goto out;
    }
    /* cni2cnm NUL protocol NUL version NUL pid ...: this shim's protocol and version only
     * (the installation is not checked: README.md, "The static shim"). */
    char want[64];
    int wn = snprintf(want, sizeof want, "cni2cnm%c%d%c%s%c", 0, PROTOCOL, 0, CNI2CNM_VERSION, 0);
    int same = hello.n >= (size_t)wn && !memcmp(hello.p, want, (size_t)wn);
    free(hello.p);
    if (!same) {
        fail(f, "version", "daemon at %s runs another version or protocol than this shim "
             "(cni2cnm %s, protocol 3): restart the daemon", path, CNI2CNM_VERSION);
        goto out;
    }
    long long reply_deadline = now_ms() + (long long)(reply_seconds(&r->conf) * 1000);
    unsigned char frame[4] = {body->n >> 24, body->n >> 16, body->n >> 8, body->n};
    if (send_all(fd, (const char *)frame, 4, reply_deadline) ||
        send_all(fd, body->p, body->n, reply_deadline)) {
        fail(f, "send", "cannot send the request to the daemon at %s (%s)", path, why(errno));
        goto out;
    }
    if (recv_frame(fd, reply, MAX_FRAME, reply_deadline) || reply->n < 5 || get_u32((unsigned char *)reply->p + 1) > reply->n - 5) {
        fail(f, "no_reply", "the daemon at %s accepted the request but did not reply (%s)", path,
             reply->n && reply->n < 5 ? "reply too short" : why(errno));
        goto out;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

static int print_reply(const buf_t *reply) {
    uint32_t n = get_u32((unsigned char *)reply->p + 1);
    const char *out = reply->p + 5, *err = out + n;
    size_t errn = reply->n - 5 - n;
    if (errn) write_all(2, err, errn);
    if (write_all(1, out, n)) fputs("cni2cnm: cannot write to stdout\n", stderr);
    return (unsigned char)reply->p[0];
}

/* ---- without a daemon ------------------------------------------------------------------ */

static int trusted(const char *path, int dir) {
    struct stat st;
    return !lstat(path, &st) && st.st_uid == 0 && !(st.st_mode & 022) &&
           (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
}

/* The Python plugin file beside this executable: root's, not writable by others, a script. */
static void find_python(req_t *r) {
    char self[PATH_MAX];
    r->python[0] = 0;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (!slash) return;
    *slash = 0;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", self, PYTHON_NAME) >= (int)sizeof path) return;
    if (!trusted(self[0] ? self : "/", 1) || !trusted(path, 0)) return;
    char head[2];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return;
    int script = read(fd, head, 2) == 2 && head[0] == '#' && head[1] == '!';
    close(fd);
    if (script) strcpy(r->python, path);
}

/* Run the Python plugin with the same environment and stdin (replayed). Returns on failure. */
static void exec_python(req_t *r) {
    if (!r->python[0]) return;
    if (r->data && !r->unreadable) {  /* stdin was read: replay it */
        int fd = r->spill;
        if (fd < 0) {
            fd = memfd_create("cni2cnm-stdin", 0);
            if (fd < 0 || write_all(fd, r->data, r->size)) return;
        }
        if (lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0) return;
        if (fd != 0) close(fd);
    }
    char *argv[] = {r->python, NULL};
    execve(r->python, argv, environ);
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii); invalid UTF-8 as U+FFFD. */
static void json_strn(buf_t *b, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    put(b, "\"", 1);
    while (p < end) {
        unsigned c = *p;
        char e[16];
        const char *sh = strchr("\"\"\\\\\nn\rr\tt\bb\ff", (int)c);
        if (c && sh && (sh - "\"\"\\\\\nn\rr\tt\bb\ff") % 2 == 0) {
            e[0] = '\\'; e[1] = sh[1]; put(b, e, 2); p++; continue;
        }
        if (c >= 0x20 && c < 0x7f) { put(b, p++, 1); continue; }
        size_t len = c < 0x80 ? 1 : c >= 0xC0 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3
                   : c >= 0xF0 && c < 0xF8 ? 4 : 0;
        int ok = len && p + len <= end;
        for (size_t i = 1; ok && i < len; i++) ok = (p[i] & 0xC0) == 0x80;
        unsigned cp = 0xFFFD;
        if (ok) {
            cp = len == 1 ? c : c & (0x7F >> len);
            for (size_t i = 1; i < len; i++) cp = cp << 6 | (p[i] & 63);
            p += len;
        } else {
            p++;
        }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            put(b, e, 12);
        } else {
            snprintf(e, sizeof e, "\\u%04x", cp);
            put(b, e, 6);
        }
    }
    put(b, "\"", 1);
}
static void json_str(buf_t *b, const char *s) { json_strn(b, s, strlen(s)); }

static const char *error_version(const req_t *r) {
    for (int i = 0; VERSIONS[i]; i++)
        if (r->conf.version.kind == J_STR && r->conf.version.s.n == strlen(VERSIONS[i]) &&
            !memcmp(r->conf.version.s.p, VERSIONS[i], r->conf.version.s.n))
            return VERSIONS[i];
    return LATEST;
}

static int cni_error(const req_t *r, int code, const char *msg, const char *details) {
    buf_t b = {0};
    char num[16];
    puts_(&b, "{\"cniVersion\": ");
    json_str(&b, error_version(r));
    snprintf(num, sizeof num, "%d", code);
    puts_(&b, ", \"code\": ");
    puts_(&b, num);
    puts_(&b, ", \"msg\": ");
    json_str(&b, msg);
    puts_(&b, ", \"details\": ");
    json_str(&b, details);
    puts_(&b, "}\n");
    write_all(1, b.p, b.n);
    return 1;
}

/* Directory `d`, created 0700 when missing, must be this user's and not writable by others
 * (`private`: not readable by them either). */
static int own_dir(const char *d, int private) {
    struct stat st;
    if (mkdir(d, 0700) && errno != EEXIST) return -1;
    if (lstat(d, &st) || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & (private ? 077 : 022))) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

static void count_fallback(const req_t *r, const char *kind) {
    struct stat st;
    char path[PATH_MAX + 16];
    if (!kind[0] || !r->socket || stat(r->socket_dir, &st) || st.st_uid != geteuid() ||
        (st.st_mode & 022))
        return;
    snprintf(path, sizeof path, "%s/fallbacks", r->socket_dir);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return;
    if (!fstat(fd, &st) && st.st_size < (1 << 20)) {
        write_all(fd, kind, strlen(kind));
        write_all(fd, "\n", 1);
    }
    close(fd);
}

/* Keep a DEL for the daemon: <socket dir>/pending/del-<time>-<pid>, 0600, in the request's
 * wire format, written whole and fsync'd before it is renamed into place. 0 when kept. */
static int keep_del(const req_t *r, const buf_t *body, fail_t *f, char *kept, size_t keptn) {
    char dir[PATH_MAX + 16], tmp[PATH_MAX + 80];
    if (!r->socket || !body->n)
        return fail(f, "", "%s%s", r->socket ? "the request exceeds the daemon's size limits"
                                             : "no daemon socket is configured", NULL);
    snprintf(dir, sizeof dir, "%s/" PENDING_DIR, r->socket_dir);
    if (own_dir(r->socket_dir, 0) || own_dir(dir, 1))
        return fail(f, "", "cannot keep it in %s (%s)", dir, why(errno));
    DIR *d = opendir(dir);
    int count = 0;
    for (struct dirent *e; d && (e = readdir(d));) count += e->d_name[0] != '.';
    if (d) closedir(d);
    if (count >= MAX_PENDING)
        return fail(f, "", "%s already holds %s pending DELs", dir, "1024");
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    snprintf(kept, keptn, "%s/del-%lld.%09ld-%d", dir, (long long)t.tv_sec, t.tv_nsec,
             (int)getpid());
    snprintf(tmp, sizeof tmp, "%s/.tmp-%lld.%09ld-%d", dir, (long long)t.tv_sec, t.tv_nsec,
             (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return fail(f, "", "cannot create %s (%s)", tmp, why(errno));
    int bad = write_all(fd, body->p, body->n) || fsync(fd);
    bad = close(fd) || bad;
    if (bad || rename(tmp, kept)) {
        int e = errno;
        unlink(tmp);
        return fail(f, "", "cannot write %s (%s)", kept, why(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    return 0;
}

/* No daemon took the request: the Python plugin runs it; without one, an error (a DEL is
 * kept for the daemon instead). */
static int without_daemon(req_t *r, const buf_t *body, fail_t *f) {
    exec_python(r);
    char details[1200], kept[PATH_MAX + 64];
    count_fallback(r, f->kind);
    const char *todo = r->socket ? r->socket : "(none configured)";
    if (!strcmp(r->command, "DEL")) {
        fail_t k;
        if (!keep_del(r, body, &k, kept, sizeof kept)) {
            fprintf(stderr, "cni2cnm-shim: %s; DEL kept in %s: the daemon finishes it when it "
                    "starts\n", f->why, kept);
            return 0;
        }
        snprintf(details, sizeof details, "%s; the DEL cannot be kept for the daemon either "
                 "(%s): start `cni2cnm serve` on %s, or install the Python plugin beside "
                 "this one (`cni2cnm install`)", f->why, k.why, todo);
    } else {
        snprintf(details, sizeof details, "%s, and no Python plugin (%s) is installed beside "
                 "this one: start `cni2cnm serve` on %s (or the cni2cnm DaemonSet), or run "
                 "`cni2cnm install` on this node", f->why, PYTHON_NAME, todo);
    }
    return cni_error(r, 11, "cni2cnm daemon unavailable", details);
}

/* VERSION without Python: echo the request's cniVersion, as skel._version_info does. */
static int version_answer(req_t *r) {
    buf_t b = {0};
    const jv_t *v = &r->conf.version;
    size_t blank = 0;
    while (blank < r->size && strchr(" \t\n\r\v\f", r->data[blank]) && r->data[blank]) blank++;
    if (blank < r->size && !r->conf.object)
        return cni_error(r, 6, "cannot decode VERSION request",
                         "stdin is not a JSON object");
    puts_(&b, "{\"cniVersion\": ");
    if (v->kind == J_STR) json_strn(&b, v->s.p, v->s.n);
    else json_str(&b, LATEST);
    puts_(&b, ", \"supportedVersions\": [");
    for (int i = 0; VERSIONS[i]; i++) {
        if (i) puts_(&b, ", ");
        json_str(&b, VERSIONS[i]);
    }
    puts_(&b, "]}\n");
    write_all(1, b.p, b.n);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------ */

static int forwarded_command(const char *c) {
    return c && (!strcmp(c, "ADD") || !strcmp(c, "DEL") || !strcmp(c, "CHECK") ||
                 !strcmp(c, "GC") || !strcmp(c, "STATUS"));
}

static int valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    for (size_t k; p < end; p += k)
        if (!(k = utf8_len(p, end)) || !*p) return 0;
    return 1;
}

/* CNI2CNM_DAEMON_SOCKET, else the config's daemonSocket, else the default; NULL: none;
 * `unusable`: a path Python cannot use either (NUL, lone surrogate, not UTF-8). */
static void choose_socket(req_t *r) {
    const char *env = getenv("CNI2CNM_DAEMON_SOCKET");
    jv_t *c = &r->conf.socket;
    if (env) {
        r->socket = env;
        r->unusable = !valid_utf8(env, strlen(env));
    } else if (c->kind == J_STR) {
        put(&c->s, "", 1);
        c->s.n--;
        r->socket = c->s.p;
        r->unusable = c->lone || strlen(c->s.p) != c->s.n;
    } else {
        r->socket = DEFAULT_SOCKET;
    }
    if (r->unusable || !r->socket[0]) {
        r->socket = NULL;
        return;
    }
    char *slash = strrchr(r->socket, '/');
    if (!slash) snprintf(r->socket_dir, sizeof r->socket_dir, ".");
    else if (slash == r->socket) snprintf(r->socket_dir, sizeof r->socket_dir, "/");
    else snprintf(r->socket_dir, sizeof r->socket_dir, "%.*s", (int)(slash - r->socket),
                  r->socket);
}

static int daemon_off(const req_t *r) {
    const char *env = getenv("CNI2CNM_DAEMON");
    if (env && env[0]) return !strcmp(env, "off");
    const jv_t *m = &r->conf.mode;
    return m->kind == J_STR && m->s.n == 3 && !memcmp(m->s.p, "off", 3);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("cni2cnm-shim %s protocol %d\n", CNI2CNM_VERSION, PROTOCOL);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);  /* a runtime that closed stdout: EPIPE, as in Python */
    req_t r = {0};
    fail_t f = {"", ""};
    buf_t body = {0}, reply = {0};
    r.command = getenv("CNI_COMMAND");
    find_python(&r);
    if (!forwarded_command(r.command)) {
        exec_python(&r);  /* VERSION, the CLI, a bad command: as the Python plugin does */
        read_stdin(&r);
        read_config(r.data, r.size, &r.conf);
        if (r.command && !strcmp(r.command, "VERSION")) return version_answer(&r);
        return cni_error(&r, 4, "invalid CNI_COMMAND", r.command
                         ? "CNI_COMMAND is not one of ADD, DEL, CHECK, GC, STATUS, VERSION"
                         : "CNI_COMMAND is not set: this is the cni2cnm CNI plugin (shim " 
                           CNI2CNM_VERSION "); runtimes set it");
    }
    read_stdin(&r);
    if (r.unreadable) {
        if (r.spill < 0) r.size = 0;
        exec_python(&r);
        return cni_error(&r, 5, "cannot read stdin", strerror(r.unreadable));
    }
    read_config(r.data, r.size, &r.conf);
    choose_socket(&r);
    int fits = !request_body(&r, &body);
    if (!fits) body.n = 0;
    if (getenv("CNI2CNM_TEST_STOP_AT")) {
        fail(&f, "", "CNI2CNM_TEST_STOP_AT is set: the test point needs the Python plugin%s%s",
             "", NULL);
    } else if (r.unusable) {
        fail(&f, "", "the daemon socket path is unusable (NUL or undecodable characters)%s%s",
             "", NULL);
    } else if (!r.socket) {
        fail(&f, "", "daemon disabled (empty socket path)%s%s", "", NULL);
    } else if (daemon_off(&r)) {
        fail(&f, "", "daemon off (daemon: \"off\")%s%s", "", NULL);
    } else if (!fits) {
        fail(&f, "send", "the request exceeds the daemon's limits (64 KiB of environment, "
             "1 MiB of stdin)%s%s", "", NULL);
    } else if (!converse(&r, &body, &reply, &f)) {
        return print_reply(&reply);
    }
    return without_daemon(&r, &body, &f);
}
