/* SPDX-License-Identifier: MIT */
#include "present/vhost_display.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "virtio/vu_msg.h"

/* Display protocol requests (reference section 2.4). */
enum {
    MSG_GET_PROTOCOL_FEATURES = 1,
    MSG_SET_PROTOCOL_FEATURES = 2,
    MSG_GET_DISPLAY_INFO = 3,
    MSG_CURSOR_POS = 4,
    MSG_CURSOR_POS_HIDE = 5,
    MSG_CURSOR_UPDATE = 6,
    MSG_SCANOUT = 7,
    MSG_UPDATE = 8,
    MSG_DMABUF_SCANOUT = 9,
    MSG_DMABUF_UPDATE = 10,
    MSG_GET_EDID = 11,
    MSG_DMABUF_SCANOUT2 = 12,
    MSG_MAX = 13,
};

static const char *const msg_names[MSG_MAX] = {
    [MSG_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
    [MSG_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
    [MSG_GET_DISPLAY_INFO] = "GET_DISPLAY_INFO",
    [MSG_CURSOR_POS] = "CURSOR_POS",
    [MSG_CURSOR_POS_HIDE] = "CURSOR_POS_HIDE",
    [MSG_CURSOR_UPDATE] = "CURSOR_UPDATE",
    [MSG_SCANOUT] = "SCANOUT",
    [MSG_UPDATE] = "UPDATE",
    [MSG_DMABUF_SCANOUT] = "DMABUF_SCANOUT",
    [MSG_DMABUF_UPDATE] = "DMABUF_UPDATE",
    [MSG_GET_EDID] = "GET_EDID",
    [MSG_DMABUF_SCANOUT2] = "DMABUF_SCANOUT2",
};

static const char *msg_name(uint32_t request)
{
    if (request < MSG_MAX && msg_names[request])
        return msg_names[request];
    return "UNKNOWN";
}

/* Payloads, packed and native-endian as QEMU's VhostUserGpu* structs. */
struct wire_cursor_pos {
    uint32_t scanout_id;
    uint32_t x;
    uint32_t y;
} __attribute__((packed));

struct wire_cursor_update {
    struct wire_cursor_pos pos;
    uint32_t hot_x;
    uint32_t hot_y;
    uint32_t pixels[VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE];
} __attribute__((packed));

struct wire_scanout {
    uint32_t scanout_id;
    uint32_t width;
    uint32_t height;
} __attribute__((packed));

struct wire_update {
    uint32_t scanout_id;
    uint32_t x;
    uint32_t y;
    uint32_t width;
    uint32_t height;
    /* followed by width * height * 4 bytes of pixels, stride width * 4 */
} __attribute__((packed));

struct wire_edid_request {
    uint32_t scanout_id;
} __attribute__((packed));

_Static_assert(sizeof(struct wire_cursor_pos) == 12, "CursorPos is 12 bytes");
_Static_assert(sizeof(struct wire_cursor_update) == 16404, "CursorUpdate is 16404 bytes");
_Static_assert(sizeof(struct wire_scanout) == 12, "Scanout is 12 bytes");
_Static_assert(sizeof(struct wire_update) == 20, "Update is 20 bytes");
_Static_assert(sizeof(struct wire_edid_request) == 4, "EdidRequest is 4 bytes");
_Static_assert(sizeof(struct virtio_gpu_resp_display_info) == 408, "display info reply size");
_Static_assert(sizeof(struct virtio_gpu_resp_edid) == 1056, "EDID reply size");

#define HDR VGPU_VU_HDR_SIZE
#define REPLY_MAX sizeof(struct virtio_gpu_resp_edid)
#define CURSOR_BYTES ((size_t)VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE * 4u)
#define DEFAULT_TIMEOUT_MS 2000u
#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

/* One caller waiting for a reply. */
struct waiter {
    struct waiter *next;
    union {
        vgpu_vdisplay_info_fn info;
        vgpu_vdisplay_edid_fn edid;
    } fn;
    void *data;
};

enum req_kind {
    REQ_PROTOCOL_FEATURES,
    REQ_DISPLAY_INFO,
    REQ_EDID,
};

/*
 * A request that expects a reply. They form a FIFO: only the head is ever on the wire, so
 * QEMU's replies, which come in request order, always answer the head.
 */
struct request {
    struct request *next;
    enum req_kind kind;
    uint32_t scanout; /* REQ_EDID */
    uint64_t seq;
    bool started; /* its bytes are going out: the next reply must be its own */
    struct waiter *waiters;
    struct waiter **waiters_tail;
    /* Once answered or failed, in limbo: */
    int status;
    const void *reply; /* the reply, on the stack of the frame that drains the limbo */
};

/*
 * Per-scanout state. Each kind of display message has one pending slot per scanout: a newer
 * message of that kind replaces the waiting one. seq orders the slots (and the requests)
 * globally, so messages go out in the order they were given, minus the replaced ones.
 */
struct scanout {
    /* The last SCANOUT given for this scanout (pending or sent). An UPDATE is accepted only
     * against it; since that SCANOUT has a smaller seq, it goes out before the UPDATE. */
    bool enabled;
    uint32_t width, height;

    bool scanout_pending;
    uint64_t scanout_seq;
    struct wire_scanout scanout_msg;

    struct vgpu_frame *update; /* pending UPDATE, or NULL */
    uint64_t update_seq;

    bool image_pending;
    uint64_t image_seq;
    struct wire_cursor_update *image; /* allocated on first use */

    bool pos_pending;
    uint64_t pos_seq;
    bool pos_visible;
    struct wire_cursor_pos pos_msg;

    bool sent_enabled; /* a SCANOUT with width > 0 is the last one on the wire */
};

enum out_kind {
    OUT_NONE,
    OUT_REQUEST,
    OUT_SET_PROTOCOL,
    OUT_SCANOUT,
    OUT_UPDATE,
    OUT_CURSOR_IMAGE,
    OUT_CURSOR_POS,
};

/* The message being written: once its first byte is out, it is finished before any other. */
struct out {
    enum out_kind kind;
    uint8_t head[HDR + sizeof(struct wire_update)]; /* header + fixed payload */
    size_t head_len;
    const uint8_t *body; /* pixels or cursor image, not copied */
    size_t body_len;
    size_t off; /* bytes written so far */
    struct vgpu_frame *frame;
};

struct vgpu_vdisplay {
    int fd;  /* the socket, watched for reading as long as it is open */
    int wfd; /* a dup of fd, watched for writing only while output is pending */
    int tfd; /* timerfd, open and watched only while a request waits for its reply */
    bool writing;
    const struct vgpu_watcher *watcher;
    const struct vgpu_vdisplay_ops *ops;
    void *data;
    unsigned int num_scanouts;
    unsigned int timeout_ms;

    bool ready;             /* GET_PROTOCOL_FEATURES answered */
    bool set_proto_pending; /* SET_PROTOCOL_FEATURES not yet started */
    bool broken;            /* socket closed: every operation is a no-op */
    bool dead;              /* destroyed: freed when the outermost call returns */
    unsigned int depth;     /* nesting of our entry points on the stack */
    int deferred_err;       /* failure reported through the read watch (see fail_later) */
    uint64_t features;
    uint64_t next_seq;

    struct request *reqs;
    struct request **reqs_tail;
    uint64_t head_since_ns; /* when the head request started waiting */

    struct out out;
    uint8_t out_image[sizeof(struct wire_cursor_update)]; /* cursor image being written */

    uint8_t rx[HDR + REPLY_MAX];
    size_t rx_have;
    uint32_t rx_size;

    /*
     * Limbo: requests whose waiters and frames whose owner are being called back. It lives
     * here, not on the stack, so that a destroy from inside one of those callbacks calls the
     * rest before it returns (after destroy the owner may free what data points to).
     */
    struct request *limbo;
    struct request **limbo_tail;
    struct vgpu_frame *limbo_frames[VGPU_VDISPLAY_MAX_SCANOUTS + 1];
    unsigned int limbo_nframes;

    struct vgpu_vdisplay_stats stats;
    struct scanout so[VGPU_VDISPLAY_MAX_SCANOUTS];
};

static void on_readable(void *data, int fd, unsigned int events);
static void on_writable(void *data, int fd, unsigned int events);
static void on_timer(void *data, int fd, unsigned int events);

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/*
 * Every entry point (API call or watcher callback) that may call back into the owner runs
 * between enter and leave, so that a destroy from inside a callback only marks the object
 * dead and the memory stays valid until the outermost frame returns.
 */
static void enter(struct vgpu_vdisplay *d)
{
    d->depth++;
}

static void leave(struct vgpu_vdisplay *d)
{
    assert(d->depth > 0);
    if (--d->depth > 0 || !d->dead)
        return;
    assert(!d->limbo && d->limbo_nframes == 0);
    for (unsigned int i = 0; i < d->num_scanouts; i++)
        free(d->so[i].image);
    free(d);
}

/* ---- requests ---- */

static uint32_t req_msg(const struct request *r)
{
    switch (r->kind) {
    case REQ_PROTOCOL_FEATURES:
        return MSG_GET_PROTOCOL_FEATURES;
    case REQ_DISPLAY_INFO:
        return MSG_GET_DISPLAY_INFO;
    case REQ_EDID:
        return MSG_GET_EDID;
    }
    return 0;
}

static uint32_t req_reply_size(const struct request *r)
{
    switch (r->kind) {
    case REQ_PROTOCOL_FEATURES:
        return sizeof(uint64_t);
    case REQ_DISPLAY_INFO:
        return sizeof(struct virtio_gpu_resp_display_info);
    case REQ_EDID:
        return sizeof(struct virtio_gpu_resp_edid);
    }
    return 0;
}

static struct request *request_new(struct vgpu_vdisplay *d, enum req_kind kind, uint32_t scanout)
{
    struct request *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->kind = kind;
    r->scanout = scanout;
    r->seq = d->next_seq++;
    r->waiters_tail = &r->waiters;
    return r;
}

static void request_add_waiter(struct request *r, struct waiter *w)
{
    w->next = NULL;
    *r->waiters_tail = w;
    r->waiters_tail = &w->next;
}

static void request_append(struct vgpu_vdisplay *d, struct request *r)
{
    r->next = NULL;
    *d->reqs_tail = r;
    d->reqs_tail = &r->next;
}

static struct request *request_pop(struct vgpu_vdisplay *d)
{
    struct request *r = d->reqs;
    if (r) {
        d->reqs = r->next;
        if (!d->reqs)
            d->reqs_tail = &d->reqs;
        r->next = NULL;
    }
    return r;
}

static void limbo_add(struct vgpu_vdisplay *d, struct request *r, int status, const void *reply)
{
    r->status = status;
    r->reply = reply;
    r->next = NULL;
    *d->limbo_tail = r;
    d->limbo_tail = &r->next;
}

static void limbo_add_frame(struct vgpu_vdisplay *d, struct vgpu_frame *f)
{
    assert(d->limbo_nframes < VGPU_VDISPLAY_MAX_SCANOUTS + 1);
    d->limbo_frames[d->limbo_nframes++] = f;
}

/*
 * Calls back everything in limbo, one callback at a time, each taken out of limbo before it
 * is called: whoever drains (this frame or a destroy nested in a callback) calls each waiter
 * and returns each frame exactly once.
 */
static void drain_limbo(struct vgpu_vdisplay *d)
{
    for (;;) {
        struct request *r = d->limbo;
        if (r) {
            struct waiter *w = r->waiters;
            if (!w) {
                d->limbo = r->next;
                if (!d->limbo)
                    d->limbo_tail = &d->limbo;
                free(r);
                continue;
            }
            r->waiters = w->next;
            if (!r->waiters)
                r->waiters_tail = &r->waiters;
            struct waiter call = *w;
            free(w);
            switch (r->kind) {
            case REQ_PROTOCOL_FEATURES:
                break;
            case REQ_DISPLAY_INFO:
                call.fn.info(call.data, r->status, r->status ? NULL : r->reply);
                break;
            case REQ_EDID:
                call.fn.edid(call.data, r->status, r->status ? NULL : r->reply);
                break;
            }
            continue;
        }
        if (d->limbo_nframes) {
            struct vgpu_frame *f = d->limbo_frames[--d->limbo_nframes];
            d->stats.updates_dropped++;
            d->ops->frame_done(d->data, f, false);
            continue;
        }
        return;
    }
}

/* ---- the reply timer ---- */

static void timer_stop(struct vgpu_vdisplay *d)
{
    if (d->tfd < 0)
        return;
    d->watcher->unwatch(d->watcher->ctx, d->tfd);
    close(d->tfd);
    d->tfd = -1;
}

/*
 * Arms the timer for the head request's deadline, or releases it when no request waits (idle
 * means idle: no timer, no watch). Returns 0 or -errno.
 */
static int timer_update(struct vgpu_vdisplay *d)
{
    if (!d->reqs) {
        timer_stop(d);
        return 0;
    }
    if (d->tfd < 0) {
        int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (tfd < 0)
            return -errno;
        int r = d->watcher->watch(d->watcher->ctx, tfd, VGPU_EV_READ, on_timer, d);
        if (r < 0) {
            close(tfd);
            return r;
        }
        d->tfd = tfd;
    }
    uint64_t deadline = d->head_since_ns + (uint64_t)d->timeout_ms * NS_PER_MS;
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(deadline / NS_PER_S),
                     .tv_nsec = (long)(deadline % NS_PER_S)},
    };
    if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
        return -errno;
    return 0;
}

/* ---- failure ---- */

/*
 * For failures found where we may not call the owner back (inside an API call): shutting the
 * socket down makes it readable at EOF, so the read watch, which is always there, delivers the
 * failure from the event loop. QEMU sees the close too.
 */
static void fail_later(struct vgpu_vdisplay *d, int err, const char *what)
{
    vgpu_err("display socket: %s: %s", what, strerror(-err));
    if (!d->deferred_err)
        d->deferred_err = err;
    shutdown(d->fd, SHUT_RDWR);
}

/* Unwatches and closes every fd. Idempotent. */
static void teardown(struct vgpu_vdisplay *d)
{
    if (d->writing) {
        d->watcher->unwatch(d->watcher->ctx, d->wfd);
        d->writing = false;
    }
    if (d->fd >= 0) {
        d->watcher->unwatch(d->watcher->ctx, d->fd);
        close(d->fd);
        d->fd = -1;
    }
    if (d->wfd >= 0) {
        close(d->wfd);
        d->wfd = -1;
    }
    timer_stop(d);
}

/*
 * Moves every pending request (the head gets head_status, the others rest_status) and every
 * frame we hold into limbo.
 */
static void detach(struct vgpu_vdisplay *d, int head_status, int rest_status)
{
    int status = head_status;
    struct request *r;
    while ((r = request_pop(d))) {
        limbo_add(d, r, status, NULL);
        status = rest_status;
    }
    if (d->out.kind == OUT_UPDATE)
        limbo_add_frame(d, d->out.frame);
    d->out.kind = OUT_NONE;
    d->out.frame = NULL;
    for (unsigned int i = 0; i < d->num_scanouts; i++) {
        struct scanout *s = &d->so[i];
        if (s->update)
            limbo_add_frame(d, s->update);
        s->update = NULL;
        s->scanout_pending = false;
        s->image_pending = false;
        s->pos_pending = false;
    }
    d->set_proto_pending = false;
}

/*
 * The socket is unusable: close it, fail every request, return every frame, tell the owner.
 * Only from watcher callbacks (between enter and leave).
 */
static void break_conn(struct vgpu_vdisplay *d, int head_status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void break_conn(struct vgpu_vdisplay *d, int head_status, const char *fmt, ...)
{
    assert(d->depth > 0);
    if (d->broken)
        return;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(why, sizeof(why), fmt, ap); /* truncation is fine for a log line */
    va_end(ap);
    vgpu_warn("display socket closed: %s", why);

    d->broken = true;
    teardown(d);
    detach(d, head_status, -ECONNRESET);
    drain_limbo(d);
    if (!d->dead)
        d->ops->closed(d->data);
}

/* ---- output ---- */

struct pick {
    enum out_kind kind;
    unsigned int scanout;
};

static void consider(struct pick *p, uint64_t *best, uint64_t seq, enum out_kind kind,
                     unsigned int scanout)
{
    if (seq < *best) {
        *best = seq;
        p->kind = kind;
        p->scanout = scanout;
    }
}

/*
 * Chooses the next message to start. Until QEMU answered GET_PROTOCOL_FEATURES only that goes
 * out; then SET_PROTOCOL_FEATURES; then everything in the order it was given, except that a
 * request waits while another one waits for its reply.
 */
static bool pick_next(const struct vgpu_vdisplay *d, struct pick *p)
{
    p->kind = OUT_NONE;
    p->scanout = 0;
    const struct request *head = d->reqs;
    if (!d->ready) {
        if (head && !head->started && head->kind == REQ_PROTOCOL_FEATURES)
            p->kind = OUT_REQUEST;
        return p->kind != OUT_NONE;
    }
    if (d->set_proto_pending) {
        p->kind = OUT_SET_PROTOCOL;
        return true;
    }
    uint64_t best = UINT64_MAX;
    if (head && !head->started)
        consider(p, &best, head->seq, OUT_REQUEST, 0);
    for (unsigned int i = 0; i < d->num_scanouts; i++) {
        const struct scanout *s = &d->so[i];
        if (s->scanout_pending)
            consider(p, &best, s->scanout_seq, OUT_SCANOUT, i);
        if (s->update)
            consider(p, &best, s->update_seq, OUT_UPDATE, i);
        if (s->image_pending)
            consider(p, &best, s->image_seq, OUT_CURSOR_IMAGE, i);
        if (s->pos_pending)
            consider(p, &best, s->pos_seq, OUT_CURSOR_POS, i);
    }
    return p->kind != OUT_NONE;
}

static void out_head(struct out *o, uint32_t request, uint32_t size, const void *payload,
                     size_t payload_len)
{
    struct vgpu_vu_hdr h = {.request = request, .flags = 0, .size = size};
    assert(HDR + payload_len <= sizeof(o->head));
    memcpy(o->head, &h, HDR);
    if (payload_len)
        memcpy(o->head + HDR, payload, payload_len);
    o->head_len = HDR + payload_len;
    o->body = NULL;
    o->body_len = 0;
    o->off = 0;
    o->frame = NULL;
}

/* Moves the picked message from its slot into d->out. */
static void start(struct vgpu_vdisplay *d, const struct pick *p)
{
    struct out *o = &d->out;
    struct scanout *s = &d->so[p->scanout];
    switch (p->kind) {
    case OUT_NONE:
        assert(0);
        return;
    case OUT_REQUEST: {
        struct request *r = d->reqs;
        r->started = true;
        if (r->kind == REQ_EDID) {
            struct wire_edid_request e = {.scanout_id = r->scanout};
            out_head(o, MSG_GET_EDID, sizeof(e), &e, sizeof(e));
        } else {
            out_head(o, req_msg(r), 0, NULL, 0);
        }
        vgpu_dbg("display: -> %s", msg_name(req_msg(r)));
        break;
    }
    case OUT_SET_PROTOCOL:
        d->set_proto_pending = false;
        out_head(o, MSG_SET_PROTOCOL_FEATURES, sizeof(d->features), &d->features,
                 sizeof(d->features));
        break;
    case OUT_SCANOUT:
        s->scanout_pending = false;
        s->sent_enabled = s->scanout_msg.width > 0;
        out_head(o, MSG_SCANOUT, sizeof(s->scanout_msg), &s->scanout_msg, sizeof(s->scanout_msg));
        break;
    case OUT_UPDATE: {
        struct vgpu_frame *f = s->update;
        s->update = NULL;
        /* Queue order puts the enabling SCANOUT first; anything else is our bug. */
        assert(s->sent_enabled);
        struct wire_update u = {
            .scanout_id = f->scanout, .x = f->x, .y = f->y, .width = f->width, .height = f->height};
        size_t bytes = (size_t)f->width * f->height * 4u; /* checked in vgpu_vdisplay_update */
        out_head(o, MSG_UPDATE, (uint32_t)(sizeof(u) + bytes), &u, sizeof(u));
        o->body = f->pixels;
        o->body_len = bytes;
        o->frame = f;
        break;
    }
    case OUT_CURSOR_IMAGE:
        s->image_pending = false;
        /* The slot may take a newer image while this one is being written. */
        memcpy(d->out_image, s->image, sizeof(*s->image));
        out_head(o, MSG_CURSOR_UPDATE, sizeof(d->out_image), NULL, 0);
        o->body = d->out_image;
        o->body_len = sizeof(d->out_image);
        break;
    case OUT_CURSOR_POS:
        s->pos_pending = false;
        out_head(o, s->pos_visible ? MSG_CURSOR_POS : MSG_CURSOR_POS_HIDE, sizeof(s->pos_msg),
                 &s->pos_msg, sizeof(s->pos_msg));
        break;
    }
    o->kind = p->kind;
}

/*
 * Writes as much of d->out as the socket takes. Returns 0 once the message is complete,
 * -EAGAIN when the socket is full, or -errno.
 */
static int send_out(struct vgpu_vdisplay *d)
{
    struct out *o = &d->out;
    size_t total = o->head_len + o->body_len;
    while (o->off < total) {
        struct iovec iov[2];
        int n = 0;
        if (o->off < o->head_len) {
            iov[n].iov_base = o->head + o->off;
            iov[n].iov_len = o->head_len - o->off;
            n++;
        }
        if (o->body_len) {
            size_t boff = o->off > o->head_len ? o->off - o->head_len : 0;
            iov[n].iov_base = (void *)(o->body + boff);
            iov[n].iov_len = o->body_len - boff;
            n++;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(d->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return -EAGAIN;
            return -errno;
        }
        o->off += (size_t)w;
        d->stats.bytes_sent += (uint64_t)w;
    }
    return 0;
}

/* The current message is out. Returns its frame (to report as sent), if any. */
static struct vgpu_frame *finish(struct vgpu_vdisplay *d)
{
    struct vgpu_frame *f = NULL;
    if (d->out.kind == OUT_UPDATE) {
        f = d->out.frame;
        d->stats.updates_sent++;
    }
    d->out.kind = OUT_NONE;
    d->out.frame = NULL;
    return f;
}

static void write_watch_stop(struct vgpu_vdisplay *d)
{
    if (d->writing) {
        d->watcher->unwatch(d->watcher->ctx, d->wfd);
        d->writing = false;
    }
}

/* There is something to send: make sure the loop will tell us when the socket takes it. */
static void kick_output(struct vgpu_vdisplay *d)
{
    struct pick p;
    if (d->broken || d->writing)
        return;
    if (d->out.kind == OUT_NONE && !pick_next(d, &p))
        return;
    int r = d->watcher->watch(d->watcher->ctx, d->wfd, VGPU_EV_WRITE, on_writable, d);
    if (r < 0) {
        fail_later(d, r, "cannot watch for writing");
        return;
    }
    d->writing = true;
}

/* Writes until the socket is full or nothing is left. Between enter and leave. */
static void flush_output(struct vgpu_vdisplay *d)
{
    while (!d->broken) {
        if (d->out.kind == OUT_NONE) {
            struct pick p;
            if (!pick_next(d, &p))
                break;
            start(d, &p);
        }
        int r = send_out(d);
        if (r == -EAGAIN)
            return;
        if (r < 0) {
            break_conn(d, -ECONNRESET, "send: %s", strerror(-r));
            return;
        }
        struct vgpu_frame *f = finish(d);
        if (f)
            d->ops->frame_done(d->data, f, true);
    }
    if (!d->broken)
        write_watch_stop(d);
}

static void on_writable(void *data, int fd, unsigned int events)
{
    struct vgpu_vdisplay *d = data;
    enter(d);
    flush_output(d);
    leave(d);
}

/* ---- input: QEMU's replies ---- */

/* A complete header is in d->rx: it must announce the reply to the request on the wire. */
static int check_header(struct vgpu_vdisplay *d)
{
    struct vgpu_vu_hdr h;
    memcpy(&h, d->rx, HDR);
    const struct request *r = d->reqs;
    if (!r || !r->started) {
        break_conn(d, -EPROTO, "unsolicited %s (%u) flags 0x%x size %u", msg_name(h.request),
                   h.request, h.flags, h.size);
        return -EPROTO;
    }
    if (h.request != req_msg(r) || !(h.flags & VGPU_VU_FLAG_REPLY)) {
        break_conn(d, -EPROTO, "waiting for the reply to %s, got %s (%u) flags 0x%x",
                   msg_name(req_msg(r)), msg_name(h.request), h.request, h.flags);
        return -EPROTO;
    }
    if (h.size != req_reply_size(r)) {
        break_conn(d, -EPROTO, "reply to %s has %u bytes, expected %u", msg_name(h.request), h.size,
                   req_reply_size(r));
        return -EPROTO;
    }
    d->rx_size = h.size;
    return 0;
}

/* The head request's reply is complete in d->rx. */
static void handle_reply(struct vgpu_vdisplay *d)
{
    const uint8_t *payload = d->rx + HDR;
    union {
        uint64_t features;
        struct virtio_gpu_resp_display_info info;
        struct virtio_gpu_resp_edid edid;
    } reply;
    memcpy(&reply, payload, d->rx_size);

    switch (d->reqs->kind) {
    case REQ_PROTOCOL_FEATURES:
        break;
    case REQ_DISPLAY_INFO:
        if (le32toh(reply.info.hdr.type) != VIRTIO_GPU_RESP_OK_DISPLAY_INFO) {
            break_conn(d, -EPROTO, "GET_DISPLAY_INFO reply of type 0x%x",
                       le32toh(reply.info.hdr.type));
            return;
        }
        break;
    case REQ_EDID:
        if (le32toh(reply.edid.hdr.type) != VIRTIO_GPU_RESP_OK_EDID ||
            le32toh(reply.edid.size) > sizeof(reply.edid.edid)) {
            break_conn(d, -EPROTO, "GET_EDID reply of type 0x%x size %u",
                       le32toh(reply.edid.hdr.type), le32toh(reply.edid.size));
            return;
        }
        break;
    }

    struct request *r = request_pop(d);
    limbo_add(d, r, 0, &reply);
    if (r->kind == REQ_PROTOCOL_FEATURES) {
        d->features = reply.features & (VGPU_VDISPLAY_F_EDID | VGPU_VDISPLAY_F_DMABUF2);
        d->ready = true;
        d->set_proto_pending = true;
        vgpu_info("display socket: protocol features 0x%llx (offered 0x%llx)",
                  (unsigned long long)d->features, (unsigned long long)reply.features);
        if (!(d->features & VGPU_VDISPLAY_F_EDID)) {
            /* GET_EDID asked before negotiation: QEMU would not answer it (7.2 does not). */
            struct request **pp = &d->reqs;
            while (*pp) {
                struct request *q = *pp;
                if (q->kind == REQ_EDID) {
                    *pp = q->next;
                    limbo_add(d, q, -ENOTSUP, NULL);
                } else {
                    pp = &q->next;
                }
            }
            d->reqs_tail = pp;
        }
    }
    /* The next request (if any) starts its wait now. */
    d->head_since_ns = now_ns();
    int err = timer_update(d);
    if (err < 0)
        fail_later(d, err, "cannot arm the reply timer");
    kick_output(d);

    if (r->kind == REQ_PROTOCOL_FEATURES && !d->broken)
        d->ops->ready(d->data, d->features);
    /* Before returning: reply lives on this stack. */
    drain_limbo(d);
}

static void read_replies(struct vgpu_vdisplay *d)
{
    while (!d->broken) {
        size_t want = d->rx_have < HDR ? HDR - d->rx_have : HDR + d->rx_size - d->rx_have;
        ssize_t n = recv(d->fd, d->rx + d->rx_have, want, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            break_conn(d, -ECONNRESET, "recv: %s", strerror(errno));
            return;
        }
        if (n == 0) {
            if (d->deferred_err)
                break_conn(d, -ECONNRESET, "internal error: %s", strerror(-d->deferred_err));
            else
                break_conn(d, -ECONNRESET, "closed by QEMU%s", d->rx_have ? " mid-message" : "");
            return;
        }
        d->rx_have += (size_t)n;
        if (d->rx_have == HDR && check_header(d) < 0)
            return;
        if (d->rx_have > HDR && d->rx_have == HDR + d->rx_size) {
            d->rx_have = 0;
            handle_reply(d);
        }
    }
}

static void on_readable(void *data, int fd, unsigned int events)
{
    struct vgpu_vdisplay *d = data;
    enter(d);
    read_replies(d);
    leave(d);
}

static void on_timer(void *data, int fd, unsigned int events)
{
    struct vgpu_vdisplay *d = data;
    enter(d);
    uint64_t ticks;
    if (read(fd, &ticks, sizeof(ticks)) == (ssize_t)sizeof(ticks) && !d->broken) {
        const struct request *r = d->reqs;
        if (!r) {
            timer_stop(d);
        } else if (now_ns() < d->head_since_ns + (uint64_t)d->timeout_ms * NS_PER_MS) {
            int err = timer_update(d); /* re-armed meanwhile */
            if (err < 0)
                break_conn(d, -ECONNRESET, "cannot arm the reply timer: %s", strerror(-err));
        } else {
            d->stats.requests_timed_out++;
            break_conn(d, -ETIMEDOUT, "no reply to %s within %u ms", msg_name(req_msg(r)),
                       d->timeout_ms);
        }
    }
    leave(d);
}

/* ---- API ---- */

struct vgpu_vdisplay *vgpu_vdisplay_create(int fd, const struct vgpu_watcher *watcher,
                                           unsigned int num_scanouts,
                                           const struct vgpu_vdisplay_ops *ops, void *data)
{
    if (fd < 0)
        return NULL;
    if (!watcher || !ops || !ops->ready || !ops->frame_done || !ops->closed || num_scanouts == 0 ||
        num_scanouts > VGPU_VDISPLAY_MAX_SCANOUTS) {
        vgpu_err("display socket: invalid arguments (%u scanouts)", num_scanouts);
        goto err_fd;
    }
    struct vgpu_vdisplay *d = calloc(1, sizeof(*d));
    if (!d)
        goto err_fd;
    d->fd = fd;
    d->wfd = -1;
    d->tfd = -1;
    d->watcher = watcher;
    d->ops = ops;
    d->data = data;
    d->num_scanouts = num_scanouts;
    d->timeout_ms = DEFAULT_TIMEOUT_MS;
    d->reqs_tail = &d->reqs;
    d->limbo_tail = &d->limbo;

    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        vgpu_err("display socket: O_NONBLOCK: %s", strerror(errno));
        goto err_free;
    }
    /* Watched for writing only while output waits; fd's read watch never changes. */
    d->wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d->wfd < 0) {
        vgpu_err("display socket: dup: %s", strerror(errno));
        goto err_free;
    }
    int err = watcher->watch(watcher->ctx, fd, VGPU_EV_READ, on_readable, d);
    if (err < 0) {
        vgpu_err("display socket: cannot watch: %s", strerror(-err));
        goto err_wfd;
    }
    struct request *r = request_new(d, REQ_PROTOCOL_FEATURES, 0);
    if (!r)
        goto err_unwatch;
    request_append(d, r);
    d->head_since_ns = now_ns();
    err = timer_update(d);
    if (err < 0) {
        vgpu_err("display socket: reply timer: %s", strerror(-err));
        goto err_req;
    }

    /* GET_PROTOCOL_FEATURES now: 12 bytes into an empty socket all but always fit. */
    struct pick p;
    pick_next(d, &p);
    start(d, &p);
    err = send_out(d);
    if (err == 0) {
        finish(d);
    } else if (err == -EAGAIN) {
        err = watcher->watch(watcher->ctx, d->wfd, VGPU_EV_WRITE, on_writable, d);
        if (err < 0) {
            vgpu_err("display socket: cannot watch for writing: %s", strerror(-err));
            goto err_timer;
        }
        d->writing = true;
    } else {
        vgpu_err("display socket: send: %s", strerror(-err));
        goto err_timer;
    }
    return d;

err_timer:
    timer_stop(d);
err_req:
    free(request_pop(d));
err_unwatch:
    watcher->unwatch(watcher->ctx, fd);
err_wfd:
    close(d->wfd);
err_free:
    free(d);
err_fd:
    close(fd);
    return NULL;
}

void vgpu_vdisplay_destroy(struct vgpu_vdisplay *d)
{
    if (!d)
        return;
    enter(d);
    if (!d->dead) {
        d->dead = true;
        d->broken = true;
        teardown(d);
        detach(d, -ECANCELED, -ECANCELED);
        drain_limbo(d);
    }
    leave(d);
}

uint64_t vgpu_vdisplay_features(const struct vgpu_vdisplay *d)
{
    return d->features;
}

bool vgpu_vdisplay_is_ready(const struct vgpu_vdisplay *d)
{
    return d->ready && !d->broken;
}

void vgpu_vdisplay_get_stats(const struct vgpu_vdisplay *d, struct vgpu_vdisplay_stats *out)
{
    *out = d->stats;
}

void vgpu_vdisplay_set_timeout(struct vgpu_vdisplay *d, unsigned int ms)
{
    d->timeout_ms = ms ? ms : 1;
    if (!d->broken && d->reqs) {
        int err = timer_update(d);
        if (err < 0)
            fail_later(d, err, "cannot arm the reply timer");
    }
}

/*
 * Adds a waiter to a request of this kind (and scanout) that has not gone out yet, or queues a
 * new one. Only the first request ever needs the timer armed here; later ones are armed when
 * they reach the head.
 */
static int add_request(struct vgpu_vdisplay *d, enum req_kind kind, uint32_t scanout,
                       struct waiter *w)
{
    for (struct request *r = d->reqs; r; r = r->next) {
        if (r->kind == kind && r->scanout == scanout && !r->started) {
            request_add_waiter(r, w);
            return 0;
        }
    }
    struct request *r = request_new(d, kind, scanout);
    if (!r)
        return -ENOMEM;
    request_add_waiter(r, w);
    bool first = !d->reqs;
    request_append(d, r);
    if (first) {
        d->head_since_ns = now_ns();
        int err = timer_update(d);
        if (err < 0) {
            vgpu_err("display socket: reply timer: %s", strerror(-err));
            request_pop(d);
            free(r);
            return err;
        }
    }
    kick_output(d);
    return 0;
}

int vgpu_vdisplay_get_display_info(struct vgpu_vdisplay *d, vgpu_vdisplay_info_fn fn, void *data)
{
    if (!fn)
        return -EINVAL;
    if (d->broken)
        return -ECONNRESET;
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fn.info = fn;
    w->data = data;
    int err = add_request(d, REQ_DISPLAY_INFO, 0, w);
    if (err < 0)
        free(w);
    return err;
}

int vgpu_vdisplay_get_edid(struct vgpu_vdisplay *d, uint32_t scanout, vgpu_vdisplay_edid_fn fn,
                           void *data)
{
    if (!fn || scanout >= d->num_scanouts)
        return -EINVAL;
    if (d->broken)
        return -ECONNRESET;
    if (d->ready && !(d->features & VGPU_VDISPLAY_F_EDID))
        return -ENOTSUP;
    struct waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fn.edid = fn;
    w->data = data;
    int err = add_request(d, REQ_EDID, scanout, w);
    if (err < 0)
        free(w);
    return err;
}

void vgpu_vdisplay_scanout(struct vgpu_vdisplay *d, uint32_t scanout, uint32_t width,
                           uint32_t height)
{
    if (d->broken)
        return;
    if (scanout >= d->num_scanouts) {
        vgpu_warn("display: SCANOUT for scanout %u of %u ignored", scanout, d->num_scanouts);
        return;
    }
    if (width > VGPU_VDISPLAY_MAX_DIM || height > VGPU_VDISPLAY_MAX_DIM) {
        vgpu_warn("display: scanout %u: %ux%u is too large, disabled", scanout, width, height);
        width = 0;
    }
    if (width == 0 || height == 0)
        width = height = 0;

    enter(d);
    struct scanout *s = &d->so[scanout];
    /* A waiting UPDATE was cut for the old size; QEMU is about to get a new surface. */
    struct vgpu_frame *stale = s->update;
    s->update = NULL;
    s->scanout_pending = true;
    s->scanout_seq = d->next_seq++;
    s->scanout_msg = (struct wire_scanout){.scanout_id = scanout, .width = width, .height = height};
    s->enabled = width > 0;
    s->width = width;
    s->height = height;
    kick_output(d);
    if (stale) {
        vgpu_dbg("display: scanout %u: pending UPDATE dropped by SCANOUT", scanout);
        d->stats.updates_dropped++;
        d->ops->frame_done(d->data, stale, false);
    }
    leave(d);
}

/* Why frame cannot be sent, or NULL. */
static const char *update_invalid(const struct vgpu_vdisplay *d, const struct vgpu_frame *f)
{
    if (f->scanout >= d->num_scanouts)
        return "no such scanout";
    const struct scanout *s = &d->so[f->scanout];
    if (!s->enabled)
        return "scanout not enabled by a SCANOUT";
    if (f->width == 0 || f->height == 0)
        return "empty rectangle";
    uint64_t pixels = (uint64_t)f->width * f->height; /* < 2^64: both factors < 2^32 */
    if (pixels > (UINT32_MAX - sizeof(struct wire_update)) / 4u)
        return "rectangle too large for one message";
    if (!f->pixels || pixels * 4u > f->capacity)
        return "rectangle larger than the frame's buffer";
    if ((uint64_t)f->x + f->width > s->width || (uint64_t)f->y + f->height > s->height)
        return "rectangle outside the scanout";
    return NULL;
}

void vgpu_vdisplay_update(struct vgpu_vdisplay *d, struct vgpu_frame *frame)
{
    assert(frame);
    enter(d);
    const char *why = d->broken ? "socket closed" : update_invalid(d, frame);
    if (why) {
        if (d->broken)
            vgpu_dbg("display: UPDATE dropped: %s", why);
        else
            vgpu_warn("display: UPDATE scanout %u %ux%u+%u+%u dropped: %s", frame->scanout,
                      frame->width, frame->height, frame->x, frame->y, why);
        d->stats.updates_dropped++;
        d->ops->frame_done(d->data, frame, false);
        leave(d);
        return;
    }
    struct scanout *s = &d->so[frame->scanout];
    struct vgpu_frame *old = s->update;
    s->update = frame;
    s->update_seq = d->next_seq++;
    kick_output(d);
    if (old) {
        vgpu_dbg("display: scanout %u: pending UPDATE replaced by a newer one", frame->scanout);
        d->stats.updates_dropped++;
        d->ops->frame_done(d->data, old, false);
    }
    leave(d);
}

void vgpu_vdisplay_cursor_update(struct vgpu_vdisplay *d, uint32_t scanout, uint32_t x, uint32_t y,
                                 uint32_t hot_x, uint32_t hot_y, const uint32_t *image)
{
    if (d->broken)
        return;
    if (scanout >= d->num_scanouts || !image) {
        vgpu_warn("display: CURSOR_UPDATE for scanout %u ignored", scanout);
        return;
    }
    struct scanout *s = &d->so[scanout];
    if (!s->image) {
        s->image = malloc(sizeof(*s->image));
        if (!s->image) {
            vgpu_warn("display: CURSOR_UPDATE dropped: out of memory");
            d->stats.cursor_dropped++;
            return;
        }
    }
    if (s->image_pending)
        d->stats.cursor_dropped++;
    struct wire_cursor_pos pos = {.scanout_id = scanout, .x = x, .y = y};
    uint32_t hot[2] = {hot_x, hot_y};
    /* Byte offsets: the struct is packed, so no pointers to its members. */
    uint8_t *dst = (uint8_t *)s->image;
    memcpy(dst + offsetof(struct wire_cursor_update, pos), &pos, sizeof(pos));
    memcpy(dst + offsetof(struct wire_cursor_update, hot_x), hot, sizeof(hot));
    memcpy(dst + offsetof(struct wire_cursor_update, pixels), image, CURSOR_BYTES);
    s->image_pending = true;
    s->image_seq = d->next_seq++;
    kick_output(d);
}

void vgpu_vdisplay_cursor_move(struct vgpu_vdisplay *d, uint32_t scanout, uint32_t x, uint32_t y,
                               bool visible)
{
    if (d->broken)
        return;
    if (scanout >= d->num_scanouts) {
        vgpu_warn("display: CURSOR_POS for scanout %u ignored", scanout);
        return;
    }
    struct scanout *s = &d->so[scanout];
    if (s->pos_pending)
        d->stats.cursor_dropped++;
    s->pos_msg = (struct wire_cursor_pos){.scanout_id = scanout, .x = x, .y = y};
    s->pos_visible = visible;
    s->pos_pending = true;
    s->pos_seq = d->next_seq++;
    kick_output(d);
}
