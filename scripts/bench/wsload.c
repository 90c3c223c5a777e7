/*
 * wsload: the WebSocket load generator of the trio_asgi benchmark harness.
 *
 * Why C: the servers under test run one Python process on one core; a Python client would
 * saturate its own core first and we would be measuring the client. This one is a single
 * epoll loop with no per-message allocation, so it stays far from being the bottleneck.
 *
 * What it checks, because a benchmark that counts wrong answers is worthless:
 *   - the opening handshake: status 101 and the exact Sec-WebSocket-Accept (SHA-1 below);
 *   - every frame header (no RSV bits, no mask from the server, sane control frames);
 *   - every echoed byte, compared as it streams in against what this connection sent;
 *   - the opcode of every echo (text stays text, binary stays binary).
 * Anything wrong prints "wsload: error: ..." on stderr and exits with status 2.
 *
 * Modes (see usage()):
 *   echo  N connections, closed loop: each sends its next message when the echo of the
 *         previous one arrived. Warm-up first, then a measured window (msgs/s, MiB/s,
 *         latency percentiles from clock_gettime(CLOCK_MONOTONIC)).
 *   idle  open N connections (at most --concurrency handshakes in flight), hold them idle,
 *         optionally read the server's VmRSS before and after, then one echo on each.
 *
 * Output: JSON lines on stdout. {"event":"measure_start"} and {"event":"measure_end"} mark
 * the measured window as it happens (the harness samples the server's CPU time on them);
 * the last line is {"event":"result", ...}.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One read() takes up to this much; shared by all connections since payload is verified
 * while it streams in and never needs to be kept. */
#define READ_CHUNK (256 * 1024)
/* A handshake response larger than this is not something our servers should send. */
#define HANDSHAKE_MAX 8192
/* Room for a frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key. */
#define HEADER_MAX 14
/* Varying the start offset into the pattern gives every message different content, so a
 * server that echoed a stale or misplaced buffer is caught, at no cost per message. */
#define PATTERN_SLACK 256

enum state { CONNECTING, HANDSHAKING, OPEN, CLOSING, DONE };

struct conn {
    int fd;
    int id;
    enum state state;
    char accept[32];    /* the Sec-WebSocket-Accept value we expect */
    char *hs;           /* handshake response bytes so far (only while HANDSHAKING) */
    size_t hs_len;

    /* outgoing: the current data frame, then a pending control frame */
    uint8_t *out;
    size_t out_len, out_off;
    uint8_t ctl[HEADER_MAX + 125];
    size_t ctl_len, ctl_off;
    int want_write;     /* EPOLLOUT registered */

    /* incoming frame parser */
    uint8_t hdr[HEADER_MAX];
    size_t hdr_len;
    int in_payload;
    int opcode, fin;
    uint64_t remaining;
    uint8_t cbuf[125];  /* control frame payload */
    size_t cbuf_len;
    int msg_opcode;     /* opcode of the data message being received, 0 if none */
    uint64_t msg_got;

    /* the message awaiting its echo */
    int awaiting;
    uint64_t seq;
    const uint8_t *expect;
    uint64_t sent_ns;
};

static struct {
    const char *host;
    int port;
    const char *path;
    const char *mode;
    int connections;
    size_t size;
    int binary;
    double duration, warmup, hold, timeout;
    int concurrency;
    int rss_pid;
} opt = {"127.0.0.1", 8000, "/", "echo", 50, 32, 0, 5.0, 1.0, 10.0, 10.0, 64, 0};

static int epfd;
static struct conn *conns;
static uint8_t *pattern;
static uint8_t readbuf[READ_CHUNK];
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* measurement */
static int measuring;        /* 0 warm-up, 1 measured window, 2 after it */
static int sending = 1;      /* closed loop still issuing new messages */
static uint64_t window_start, window_end;
static uint64_t messages, payload_bytes;
static uint64_t *lat;        /* latency samples in ns, measured window only */
static size_t lat_len, lat_cap;
static int open_count, closed_count, outstanding;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng(void) { /* xorshift64*: mask keys and payload need variety, not secrecy */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

/* ---- SHA-1 and base64, just enough for Sec-WebSocket-Accept (RFC 6455 4.2.2) ---- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t *msg = calloc(total, 1);
    if (!msg) die("out of memory");
    memcpy(msg, data, len);
    msg[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) msg[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)msg[off + 4 * i] << 24 | (uint32_t)msg[off + 4 * i + 1] << 16 |
                   (uint32_t)msg[off + 4 * i + 2] << 8 | msg[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDC;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6;
            }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    free(msg);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

static void base64(const uint8_t *in, size_t len, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---- outgoing frames ---- */

static size_t frame_header(uint8_t *h, int opcode, uint64_t len, uint32_t key) {
    size_t n = 0;
    h[n++] = (uint8_t)(0x80 | opcode); /* FIN: we never fragment */
    if (len < 126) {
        h[n++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[n++] = 0x80 | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) h[n++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(h + n, &key, 4);
    return n + 4;
}

static void mask_copy(uint8_t *dst, const uint8_t *src, size_t len, uint32_t key) {
    /* Eight bytes at a time: masking a 1 MiB message must not cost more than sending it. */
    uint64_t k8 = (uint64_t)key << 32 | key;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k8;
        memcpy(dst + i, &v, 8);
    }
    const uint8_t *kb = (const uint8_t *)&key;
    for (; i < len; i++) dst[i] = src[i] ^ kb[i & 3];
}

static void set_events(struct conn *c, int want_write) {
    if (c->want_write == want_write) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    c->want_write = want_write;
}

/* Write what is pending; returns when done or the socket is full. */
static void flush(struct conn *c) {
    while (c->out_off < c->out_len || c->ctl_off < c->ctl_len) {
        int data = c->out_off < c->out_len; /* finish the data frame before any control frame */
        uint8_t *buf = data ? c->out + c->out_off : c->ctl + c->ctl_off;
        size_t len = data ? c->out_len - c->out_off : c->ctl_len - c->ctl_off;
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(c, 1);
                return;
            }
            if (errno == EINTR) continue;
            die("connection %d: send: %s", c->id, strerror(errno));
        }
        if (data)
            c->out_off += (size_t)n;
        else
            c->ctl_off += (size_t)n;
    }
    set_events(c, 0);
}

static void send_control(struct conn *c, int opcode, const uint8_t *payload, size_t len) {
    if (c->ctl_off < c->ctl_len) return; /* one pending is enough: a newer ping supersedes */
    uint32_t key = (uint32_t)rng();
    size_t h = frame_header(c->ctl, opcode, len, key);
    mask_copy(c->ctl + h, payload, len, key);
    c->ctl_len = h + len;
    c->ctl_off = 0;
    flush(c);
}

static void send_message(struct conn *c) {
    size_t offset = (size_t)((c->id * 31u + c->seq * 7u) % PATTERN_SLACK);
    uint32_t key = (uint32_t)rng();
    c->expect = pattern + offset;
    size_t h = frame_header(c->out, opt.binary ? 2 : 1, opt.size, key);
    mask_copy(c->out + h, c->expect, opt.size, key);
    c->out_len = h + opt.size;
    c->out_off = 0;
    c->awaiting = 1;
    c->msg_got = 0;
    c->sent_ns = now_ns();
    outstanding++;
    flush(c);
}

static void start_close(struct conn *c) {
    uint8_t code[2] = {1000 >> 8, 1000 & 0xff};
    c->state = CLOSING;
    send_control(c, 8, code, 2);
}

static void finish(struct conn *c) {
    if (c->state == DONE) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = DONE;
    closed_count++;
}

/* ---- incoming frames ---- */

static void record_latency(uint64_t ns) {
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 65536;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat) die("out of memory");
    }
    lat[lat_len++] = ns;
}

static void message_done(struct conn *c) {
    if (!c->awaiting) die("connection %d: got a message it did not send", c->id);
    if (c->msg_got != opt.size)
        die("connection %d: echo of message %llu has %llu bytes, sent %zu", c->id,
            (unsigned long long)c->seq, (unsigned long long)c->msg_got, opt.size);
    if (c->msg_opcode != (opt.binary ? 2 : 1))
        die("connection %d: echo came back as opcode %d", c->id, c->msg_opcode);
    uint64_t t = now_ns();
    c->awaiting = 0;
    outstanding--;
    c->msg_opcode = 0;
    c->seq++;
    if (measuring == 1 && t >= window_start) {
        messages++;
        payload_bytes += opt.size;
        record_latency(t - c->sent_ns);
    }
    if (sending && strcmp(opt.mode, "echo") == 0) send_message(c);
}

static void control_done(struct conn *c) {
    if (c->opcode == 9) { /* ping: answer with the same payload (RFC 6455 5.5.3) */
        send_control(c, 10, c->cbuf, c->cbuf_len);
    } else if (c->opcode == 8) {
        if (c->state == CLOSING) {
            finish(c);
            return;
        }
        int code = c->cbuf_len >= 2 ? c->cbuf[0] << 8 | c->cbuf[1] : 1005;
        die("connection %d: server closed the WebSocket (code %d, reason \"%.*s\")", c->id,
            code, (int)(c->cbuf_len > 2 ? c->cbuf_len - 2 : 0), (const char *)c->cbuf + 2);
    } /* pong: unsolicited pongs are allowed and ignored */
}

/* Feed received bytes through the frame parser; payload is compared in place. */
static void parse_frames(struct conn *c, const uint8_t *p, size_t len) {
    while (len > 0 && c->state != DONE) {
        if (!c->in_payload) {
            size_t need = 2;
            if (c->hdr_len >= 2) {
                int l7 = c->hdr[1] & 0x7f;
                need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
            }
            size_t take = need - c->hdr_len;
            if (take > len) take = len;
            memcpy(c->hdr + c->hdr_len, p, take);
            c->hdr_len += take;
            p += take;
            len -= take;
            if (c->hdr_len == 2 && (c->hdr[1] & 0x7f) >= 126) continue; /* need extended length */
            if (c->hdr_len < need) continue;
            uint8_t b0 = c->hdr[0], b1 = c->hdr[1];
            if (b0 & 0x70) die("connection %d: frame with RSV bits set (0x%02x)", c->id, b0);
            if (b1 & 0x80) die("connection %d: server sent a masked frame", c->id);
            c->fin = b0 >> 7;
            c->opcode = b0 & 0x0f;
            uint64_t n = b1 & 0x7f;
            if (n == 126) n = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            if (n == 127) {
                n = 0;
                for (int i = 2; i < 10; i++) n = n << 8 | c->hdr[i];
            }
            c->hdr_len = 0;
            c->remaining = n;
            c->cbuf_len = 0;
            if (c->opcode >= 8) {
                if (!c->fin || n > 125 || c->opcode > 10)
                    die("connection %d: bad control frame (opcode %d, %llu bytes)", c->id,
                        c->opcode, (unsigned long long)n);
            } else if (c->opcode == 1 || c->opcode == 2) {
                if (c->msg_opcode) die("connection %d: new message inside a fragmented one", c->id);
                if (c->state != OPEN && c->state != CLOSING)
                    die("connection %d: data frame before the handshake completed", c->id);
                c->msg_opcode = c->opcode;
                c->msg_got = 0;
            } else if (c->opcode == 0) {
                if (!c->msg_opcode) die("connection %d: continuation frame with no message", c->id);
            } else {
                die("connection %d: reserved opcode %d", c->id, c->opcode);
            }
            c->in_payload = 1;
        } else {
            size_t take = c->remaining < len ? (size_t)c->remaining : len;
            if (c->opcode >= 8) {
                memcpy(c->cbuf + c->cbuf_len, p, take);
                c->cbuf_len += take;
            } else {
                if (!c->awaiting) die("connection %d: data it did not ask for", c->id);
                if (c->msg_got + take > opt.size)
                    die("connection %d: echo longer than the %zu bytes sent", c->id, opt.size);
                if (memcmp(c->expect + c->msg_got, p, take) != 0) {
                    size_t i = 0;
                    while (c->expect[c->msg_got + i] == p[i]) i++;
                    die("connection %d: echo of message %llu differs at byte %llu", c->id,
                        (unsigned long long)c->seq, (unsigned long long)(c->msg_got + i));
                }
                c->msg_got += take;
            }
            c->remaining -= take;
            p += take;
            len -= take;
        }
        if (c->in_payload && c->remaining == 0) {
            c->in_payload = 0;
            if (c->opcode >= 8)
                control_done(c);
            else if (c->fin)
                message_done(c);
        }
    }
}

/* ---- opening handshake ---- */

static void start_connect(struct conn *c, const struct sockaddr_in *addr) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket: %s (raise the open-files limit?)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS)
        die("connection %d: connect: %s", c->id, strerror(errno));
    c->state = CONNECTING;
    c->want_write = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

static void send_handshake(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) die("connection %d: connect: %s", c->id, strerror(err));
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng();
        memcpy(raw + i, &r, 8);
    }
    char key[32], concat[128];
    uint8_t digest[20];
    base64(raw, 16, key);
    snprintf(concat, sizeof concat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    sha1((const uint8_t *)concat, strlen(concat), digest);
    base64(digest, 20, c->accept);
    /* parse_args bounds the path and host, so the request always fits the 512-byte buffer */
    int n = snprintf((char *)c->out, 512,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.path, opt.host, opt.port, key);
    c->out_len = (size_t)n;
    c->out_off = 0;
    c->state = HANDSHAKING;
    c->hs = xmalloc(HANDSHAKE_MAX);
    c->hs_len = 0;
    flush(c);
}

/* Returns bytes of `p` consumed by the handshake response, or `len` if it is incomplete. */
static size_t read_handshake(struct conn *c, const uint8_t *p, size_t len) {
    size_t take = HANDSHAKE_MAX - c->hs_len;
    if (take > len) take = len;
    memcpy(c->hs + c->hs_len, p, take);
    size_t before = c->hs_len;
    c->hs_len += take;
    char *end = memmem(c->hs, c->hs_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->hs_len == HANDSHAKE_MAX) die("connection %d: handshake response too long", c->id);
        return len;
    }
    size_t head = (size_t)(end - c->hs) + 4;
    *end = 0;
    if (strncmp(c->hs, "HTTP/1.1 101 ", 13) != 0 && strcmp(c->hs, "HTTP/1.1 101") != 0) {
        char *eol = strstr(c->hs, "\r\n");
        if (eol) *eol = 0;
        die("connection %d: handshake refused: \"%s\"", c->id, c->hs);
    }
    int accepted = 0;
    for (char *line = strstr(c->hs, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, "sec-websocket-accept:", 21) == 0) {
            char *v = line + 21;
            while (*v == ' ' || *v == '\t') v++;
            size_t vl = strcspn(v, "\r \t");
            if (vl != strlen(c->accept) || strncmp(v, c->accept, vl) != 0)
                die("connection %d: wrong Sec-WebSocket-Accept \"%.*s\" (expected %s)", c->id,
                    (int)vl, v, c->accept);
            accepted = 1;
        } else if (strncasecmp(line, "sec-websocket-extensions:", 25) == 0) {
            die("connection %d: server accepted an extension we did not offer", c->id);
        }
    }
    if (!accepted) die("connection %d: 101 response without Sec-WebSocket-Accept", c->id);
    free(c->hs);
    c->hs = NULL;
    c->state = OPEN;
    open_count++;
    return head - before; /* the rest are frames already */
}

/* ---- event loop ---- */

static void on_readable(struct conn *c) {
    ssize_t n = recv(c->fd, readbuf, sizeof readbuf, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        if (c->state == CLOSING) {
            finish(c);
            return;
        }
        die("connection %d: recv: %s", c->id, strerror(errno));
    }
    if (n == 0) {
        if (c->state == CLOSING) { /* the server may close TCP right after its close frame */
            finish(c);
            return;
        }
        die("connection %d: server closed the TCP connection (state %d, %llu messages echoed)",
            c->id, c->state, (unsigned long long)c->seq);
    }
    size_t off = 0;
    if (c->state == HANDSHAKING) off = read_handshake(c, readbuf, (size_t)n);
    if (off < (size_t)n) parse_frames(c, readbuf + off, (size_t)n - off);
}

static void on_writable(struct conn *c) {
    if (c->state == CONNECTING)
        send_handshake(c);
    else
        flush(c);
}

/* Run the loop until `until_ns` (0: no deadline) or `done()` says so. */
static void run_loop(uint64_t until_ns, int (*done)(void), void (*tick)(uint64_t)) {
    struct epoll_event events[256];
    for (;;) {
        uint64_t t = now_ns();
        if (done && done()) return;
        if (until_ns && t >= until_ns) return;
        if (tick) tick(t);
        int n = epoll_wait(epfd, events, 256, 50);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->state == DONE) continue;
            if (events[i].events & (EPOLLOUT | EPOLLERR)) on_writable(c);
            if (c->state != DONE && events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(c);
        }
    }
}

static int all_open(void) { return open_count == opt.connections; }
static int none_outstanding(void) { return outstanding == 0; }
static int all_closed(void) { return closed_count == opt.connections; }

static struct sockaddr_in server_addr;
static int started;
static uint64_t phase_deadline;

static void check_stalls(uint64_t t) {
    if (t > phase_deadline) die("timed out after %.1f s (server stalled?)", opt.timeout);
    for (int i = 0; i < started; i++) {
        struct conn *c = &conns[i];
        if (c->awaiting && t - c->sent_ns > (uint64_t)(opt.timeout * 1e9))
            die("connection %d: no echo of message %llu after %.1f s", c->id,
                (unsigned long long)c->seq, opt.timeout);
    }
}

/* Start new connections while fewer than --concurrency handshakes are in flight. */
static void open_tick(uint64_t t) {
    while (started < opt.connections && started - open_count < opt.concurrency) {
        conns[started].id = started;
        start_connect(&conns[started], &server_addr);
        started++;
    }
    if (t > phase_deadline)
        die("timed out opening connections: %d of %d open after %.1f s", open_count,
            opt.connections, opt.timeout);
}

static void open_all(void) {
    phase_deadline = now_ns() + (uint64_t)(opt.timeout * 1e9);
    run_loop(0, all_open, open_tick);
}

static void close_all(void) {
    for (int i = 0; i < opt.connections; i++)
        if (conns[i].state == OPEN) start_close(&conns[i]);
    phase_deadline = now_ns() + (uint64_t)(opt.timeout * 1e9);
    run_loop(0, all_closed, check_stalls);
}

static long read_rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) die("cannot read %s: %s", path, strerror(errno));
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    if (kb < 0) die("no VmRSS in %s", path);
    return kb;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double q) {
    if (!lat_len) return 0;
    size_t i = (size_t)(q * (double)(lat_len - 1) + 0.5);
    return (double)lat[i] / 1e3;
}

static void emit(const char *event) {
    printf("{\"event\":\"%s\"}\n", event);
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr,
            "usage: wsload [--host H] [--port P] [--path /ws] [--mode echo|idle]\n"
            "              [--connections N] [--size BYTES] [--binary] [--duration S]\n"
            "              [--warmup S] [--hold S] [--concurrency N] [--timeout S]\n"
            "              [--rss-pid PID]\n");
    exit(64);
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--binary") == 0) {
            opt.binary = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(a, "--host") == 0) opt.host = v;
        else if (strcmp(a, "--port") == 0) opt.port = atoi(v);
        else if (strcmp(a, "--path") == 0) opt.path = v;
        else if (strcmp(a, "--mode") == 0) opt.mode = v;
        else if (strcmp(a, "--connections") == 0) opt.connections = atoi(v);
        else if (strcmp(a, "--size") == 0) opt.size = (size_t)strtoull(v, NULL, 10);
        else if (strcmp(a, "--duration") == 0) opt.duration = atof(v);
        else if (strcmp(a, "--warmup") == 0) opt.warmup = atof(v);
        else if (strcmp(a, "--hold") == 0) opt.hold = atof(v);
        else if (strcmp(a, "--concurrency") == 0) opt.concurrency = atoi(v);
        else if (strcmp(a, "--timeout") == 0) opt.timeout = atof(v);
        else if (strcmp(a, "--rss-pid") == 0) opt.rss_pid = atoi(v);
        else usage();
    }
    if (opt.connections < 1 || opt.concurrency < 1 || opt.port < 1 || opt.timeout <= 0 ||
        opt.duration < 0 || opt.warmup < 0 || opt.hold < 0 || strlen(opt.path) > 200 ||
        strlen(opt.host) > 100 || (strcmp(opt.mode, "echo") && strcmp(opt.mode, "idle")))
        usage();
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    rng_state ^= (uint64_t)getpid() << 17 ^ now_ns();
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1)
        die("--host must be an IPv4 address, got %s", opt.host);

    pattern = xmalloc(opt.size + PATTERN_SLACK);
    for (size_t i = 0; i < opt.size + PATTERN_SLACK; i++)
        pattern[i] = opt.binary ? (uint8_t)rng() : (uint8_t)('a' + rng() % 26); /* valid UTF-8 */
    conns = calloc((size_t)opt.connections, sizeof *conns);
    if (!conns) die("out of memory");
    size_t out_size = opt.size + HEADER_MAX < 512 ? 512 : opt.size + HEADER_MAX;
    for (int i = 0; i < opt.connections; i++) conns[i].out = xmalloc(out_size);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));

    int idle = strcmp(opt.mode, "idle") == 0;
    long rss_before = opt.rss_pid ? read_rss_kb(opt.rss_pid) : 0, rss_after = 0;

    if (idle) emit("measure_start");
    uint64_t t0 = now_ns();
    open_all();
    uint64_t t_open = now_ns();
    double open_s = (double)(t_open - t0) / 1e9;
    if (idle) emit("measure_end");

    if (idle) {
        /* Idle: nothing should arrive but pings, which the loop answers. */
        run_loop(now_ns() + (uint64_t)(opt.hold * 1e9), NULL, NULL);
        if (opt.rss_pid) rss_after = read_rss_kb(opt.rss_pid);
        measuring = 1;
        window_start = now_ns();
        for (int i = 0; i < opt.connections; i++) send_message(&conns[i]);
        phase_deadline = now_ns() + (uint64_t)(opt.timeout * 1e9);
        run_loop(0, none_outstanding, check_stalls);
        window_end = now_ns();
    } else {
        for (int i = 0; i < opt.connections; i++) send_message(&conns[i]);
        uint64_t t_start = now_ns();
        window_start = t_start + (uint64_t)(opt.warmup * 1e9);
        window_end = window_start + (uint64_t)(opt.duration * 1e9);
        phase_deadline = window_end + (uint64_t)(opt.timeout * 1e9);
        run_loop(window_start, NULL, check_stalls);
        measuring = 1;
        emit("measure_start");
        run_loop(window_end, NULL, check_stalls);
        measuring = 2;
        emit("measure_end");
        sending = 0;
        phase_deadline = now_ns() + (uint64_t)(opt.timeout * 1e9);
        run_loop(0, none_outstanding, check_stalls);
    }
    close_all();

    qsort(lat, lat_len, sizeof *lat, cmp_u64);
    double window = (double)(window_end - window_start) / 1e9;
    printf("{\"event\":\"result\",\"mode\":\"%s\",\"connections\":%d,\"size\":%zu,\"binary\":%s,"
           "\"open_seconds\":%.6f,\"handshakes_per_sec\":%.1f,\"messages\":%llu,\"seconds\":%.6f,"
           "\"msgs_per_sec\":%.1f,\"mib_per_sec\":%.3f,\"latency_us\":{\"p50\":%.1f,"
           "\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},\"rss_before_kb\":%ld,\"rss_after_kb\":%ld}\n",
           opt.mode, opt.connections, opt.size, opt.binary ? "true" : "false", open_s,
           open_s > 0 ? opt.connections / open_s : 0.0, (unsigned long long)messages, window,
           window > 0 ? (double)messages / window : 0.0,
           window > 0 ? (double)payload_bytes / window / 1048576.0 : 0.0, pct_us(0.50),
           pct_us(0.90), pct_us(0.99), pct_us(1.0), rss_before, rss_after);
    return 0;
}
