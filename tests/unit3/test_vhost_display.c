/* SPDX-License-Identifier: MIT */
/*
 * present/vhost_display against a fake QEMU: the module gets one end of a socketpair and a
 * tiny poll()-based event loop implementing struct vgpu_watcher; the test reads and writes the
 * other end the way QEMU's display handler does.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "present/vhost_display.h"

/* ---- a fake event loop ---- */

#define MAX_WATCHES 8

struct fake_watch {
    bool active;
    int fd;
    unsigned int events;
    vgpu_watch_fn fn;
    void *data;
    unsigned int gen;
};

struct loop {
    struct fake_watch w[MAX_WATCHES];
    unsigned int gen;
};

static int loop_watch(void *ctx, int fd, unsigned int events, vgpu_watch_fn fn, void *data)
{
    struct loop *l = ctx;
    for (unsigned int i = 0; i < MAX_WATCHES; i++) {
        if (l->w[i].active && l->w[i].fd == fd)
            return -EEXIST;
    }
    for (unsigned int i = 0; i < MAX_WATCHES; i++) {
        if (!l->w[i].active) {
            l->w[i] = (struct fake_watch){.active = true,
                                          .fd = fd,
                                          .events = events,
                                          .fn = fn,
                                          .data = data,
                                          .gen = ++l->gen};
            return 0;
        }
    }
    return -ENOMEM;
}

static void loop_unwatch(void *ctx, int fd)
{
    struct loop *l = ctx;
    for (unsigned int i = 0; i < MAX_WATCHES; i++) {
        if (l->w[i].active && l->w[i].fd == fd)
            l->w[i].active = false;
    }
}

static unsigned int loop_count(const struct loop *l)
{
    unsigned int n = 0;
    for (unsigned int i = 0; i < MAX_WATCHES; i++)
        n += l->w[i].active;
    return n;
}

/* Number of watched fds that are timerfds. */
static unsigned int loop_count_timers(const struct loop *l)
{
    unsigned int n = 0;
    for (unsigned int i = 0; i < MAX_WATCHES; i++) {
        if (!l->w[i].active)
            continue;
        char path[64], target[128];
        assert_true(snprintf(path, sizeof(path), "/proc/self/fd/%d", l->w[i].fd) > 0);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        assert_true(len > 0);
        target[len] = '\0';
        if (strstr(target, "timerfd"))
            n++;
    }
    return n;
}

static bool loop_has_write_watch(const struct loop *l)
{
    for (unsigned int i = 0; i < MAX_WATCHES; i++) {
        if (l->w[i].active && (l->w[i].events & VGPU_EV_WRITE))
            return true;
    }
    return false;
}

/* One poll() over the watched fds, then their callbacks (a watch removed meanwhile is skipped). */
static void loop_run_once(struct loop *l, int timeout_ms)
{
    struct pollfd pfd[MAX_WATCHES];
    unsigned int slot[MAX_WATCHES], gen[MAX_WATCHES];
    nfds_t n = 0;
    for (unsigned int i = 0; i < MAX_WATCHES; i++) {
        if (!l->w[i].active)
            continue;
        int ev = 0;
        if (l->w[i].events & VGPU_EV_READ)
            ev |= POLLIN;
        if (l->w[i].events & VGPU_EV_WRITE)
            ev |= POLLOUT;
        pfd[n] = (struct pollfd){.fd = l->w[i].fd, .events = (short)ev};
        slot[n] = i;
        gen[n] = l->w[i].gen;
        n++;
    }
    if (n == 0) {
        if (timeout_ms > 0)
            poll(NULL, 0, timeout_ms);
        return;
    }
    int r = poll(pfd, n, timeout_ms);
    assert_true(r >= 0 || errno == EINTR);
    for (nfds_t k = 0; r > 0 && k < n; k++) {
        struct fake_watch *w = &l->w[slot[k]];
        if (!pfd[k].revents || !w->active || w->gen != gen[k])
            continue;
        /* A module that closes a watched fd is buggy. */
        assert_false(pfd[k].revents & POLLNVAL);
        unsigned int ev = 0;
        if (pfd[k].revents & POLLIN)
            ev |= VGPU_EV_READ;
        if (pfd[k].revents & POLLOUT)
            ev |= VGPU_EV_WRITE;
        if (pfd[k].revents & (POLLERR | POLLHUP))
            ev |= w->events; /* as libuv reports errors */
        w->fn(w->data, w->fd, ev & w->events);
    }
}

/* ---- fixture: the module, its callbacks, and QEMU's end of the socket ---- */

struct tframe {
    struct vgpu_frame f; /* first: frame_done's pointer is the tframe's */
    int done_calls;
    bool sent;
    uint32_t id;
};

struct fx {
    struct loop loop;
    struct vgpu_watcher watcher;
    int peer;
    int mine; /* the module's end, for tests that tune it before create */
    struct vgpu_vdisplay *d;
    int ready_calls;
    uint64_t ready_features;
    int closed_calls;
    int frames_done, frames_sent;
    bool destroy_in_closed;
    bool destroy_in_frame_done;
};

static void cb_ready(void *data, uint64_t features)
{
    struct fx *f = data;
    f->ready_calls++;
    f->ready_features = features;
}

static void cb_frame_done(void *data, struct vgpu_frame *frame, bool sent)
{
    struct fx *f = data;
    struct tframe *t = (struct tframe *)frame;
    t->done_calls++;
    t->sent = sent;
    f->frames_done++;
    f->frames_sent += sent;
    if (f->destroy_in_frame_done && f->d) {
        struct vgpu_vdisplay *d = f->d;
        f->d = NULL;
        vgpu_vdisplay_destroy(d);
    }
}

static void cb_closed(void *data)
{
    struct fx *f = data;
    f->closed_calls++;
    if (f->destroy_in_closed) {
        vgpu_vdisplay_destroy(f->d);
        f->d = NULL;
    }
}

static const struct vgpu_vdisplay_ops test_ops = {
    .ready = cb_ready,
    .frame_done = cb_frame_done,
    .closed = cb_closed,
};

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Generous: sanitizer lanes are slow, and a deadline only matters when a test fails. */
#define WAIT_MS 5000u

#define PUMP_UNTIL(f, cond)                                                                        \
    do {                                                                                           \
        uint64_t deadline_ = ms_now() + WAIT_MS;                                                   \
        while (!(cond)) {                                                                          \
            assert_true(ms_now() < deadline_);                                                     \
            loop_run_once(&(f)->loop, 5);                                                          \
        }                                                                                          \
    } while (0)

static void pump(struct fx *f, unsigned int ms)
{
    uint64_t end = ms_now() + ms;
    do {
        loop_run_once(&f->loop, 2);
    } while (ms_now() < end);
}

static void fx_socketpair(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    f->watcher =
        (struct vgpu_watcher){.watch = loop_watch, .unwatch = loop_unwatch, .ctx = &f->loop};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->mine = sv[0];
    f->peer = sv[1];
}

static void fx_create(struct fx *f, unsigned int scanouts)
{
    f->d = vgpu_vdisplay_create(f->mine, &f->watcher, scanouts, &test_ops, f);
    assert_non_null(f->d);
}

static void fx_init(struct fx *f, unsigned int scanouts)
{
    fx_socketpair(f);
    fx_create(f, scanouts);
}

static void fx_finish(struct fx *f)
{
    vgpu_vdisplay_destroy(f->d);
    f->d = NULL;
    assert_int_equal(loop_count(&f->loop), 0);
    if (f->peer >= 0)
        close(f->peer);
    f->peer = -1;
}

/* Reads exactly n bytes from QEMU's end, running the module's loop meanwhile. */
static void peer_read(struct fx *f, void *buf, size_t n)
{
    uint64_t deadline = ms_now() + WAIT_MS;
    size_t have = 0;
    while (have < n) {
        assert_true(ms_now() < deadline);
        loop_run_once(&f->loop, 0);
        struct pollfd p = {.fd = f->peer, .events = POLLIN};
        if (poll(&p, 1, 2) <= 0)
            continue;
        ssize_t r = recv(f->peer, (char *)buf + have, n - have, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        assert_true(r > 0); /* no EOF, no error */
        have += (size_t)r;
    }
}

struct msg {
    uint32_t request, flags, size;
    uint8_t *payload; /* size bytes, malloc'ed */
};

/* The largest message the module may send: one 1280x800 UPDATE. */
#define MAX_MSG (20u + 1280u * 800u * 4u)

static void peer_read_msg(struct fx *f, struct msg *m)
{
    uint32_t hdr[3];
    peer_read(f, hdr, sizeof(hdr));
    m->request = hdr[0];
    m->flags = hdr[1];
    m->size = hdr[2];
    assert_int_equal(m->flags, 0); /* we send 0, unlike QEMU's back-end */
    assert_true(m->size <= MAX_MSG);
    m->payload = malloc(m->size ? m->size : 1);
    assert_non_null(m->payload);
    peer_read(f, m->payload, m->size);
}

/* Reads one message and checks its number and size. */
static void peer_expect(struct fx *f, uint32_t request, uint32_t size, struct msg *m)
{
    peer_read_msg(f, m);
    assert_int_equal(m->request, request);
    assert_int_equal(m->size, size);
}

static void peer_expect_free(struct fx *f, uint32_t request, uint32_t size)
{
    struct msg m;
    peer_expect(f, request, size, &m);
    free(m.payload);
}

/* True if QEMU's end has something to read after running the loop for ms. */
static bool peer_has_data(struct fx *f, unsigned int ms)
{
    pump(f, ms);
    struct pollfd p = {.fd = f->peer, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static void peer_send(struct fx *f, const void *buf, size_t n)
{
    assert_int_equal(send(f->peer, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void peer_reply(struct fx *f, uint32_t request, const void *payload, uint32_t size)
{
    uint32_t hdr[3] = {request, 0x4, size};
    peer_send(f, hdr, sizeof(hdr));
    if (size)
        peer_send(f, payload, size);
}

/* Plays QEMU's side of the handshake, offering features. */
static void negotiate(struct fx *f, uint64_t offered)
{
    peer_expect_free(f, 1, 0);
    assert_false(vgpu_vdisplay_is_ready(f->d));
    assert_int_equal(vgpu_vdisplay_features(f->d), 0);
    peer_reply(f, 1, &offered, sizeof(offered));
    PUMP_UNTIL(f, f->ready_calls == 1);
    assert_int_equal(f->ready_features, offered & 3);
    struct msg m;
    peer_expect(f, 2, 8, &m);
    uint64_t set;
    memcpy(&set, m.payload, sizeof(set));
    free(m.payload);
    assert_int_equal(set, offered & 3);
    assert_true(vgpu_vdisplay_is_ready(f->d));
    assert_int_equal(vgpu_vdisplay_features(f->d), offered & 3);
}

static unsigned int count_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    assert_non_null(dir);
    unsigned int n = 0;
    while (readdir(dir))
        n++;
    closedir(dir);
    return n;
}

/* ---- request callbacks ---- */

struct info_result {
    int calls;
    int status;
    int order; /* value of *counter when called */
    int *counter;
    struct virtio_gpu_resp_display_info info;
    /* Optional: destroy f->d from inside the callback. */
    struct fx *destroy;
};

static void cb_info(void *data, int status, const struct virtio_gpu_resp_display_info *info)
{
    struct info_result *r = data;
    r->calls++;
    r->status = status;
    if (r->counter)
        r->order = (*r->counter)++;
    if (status == 0) {
        assert_non_null(info);
        r->info = *info;
    } else {
        assert_null(info);
    }
    if (r->destroy && r->destroy->d) {
        struct vgpu_vdisplay *d = r->destroy->d;
        r->destroy->d = NULL;
        vgpu_vdisplay_destroy(d);
    }
}

struct edid_result {
    int calls;
    int status;
    struct virtio_gpu_resp_edid edid;
};

static void cb_edid(void *data, int status, const struct virtio_gpu_resp_edid *edid)
{
    struct edid_result *r = data;
    r->calls++;
    r->status = status;
    if (status == 0) {
        assert_non_null(edid);
        r->edid = *edid;
    } else {
        assert_null(edid);
    }
}

static void make_info(struct virtio_gpu_resp_display_info *info, uint32_t w0, uint32_t h0)
{
    memset(info, 0, sizeof(*info));
    info->hdr.type = VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
    info->pmodes[0].r.width = w0;
    info->pmodes[0].r.height = h0;
    info->pmodes[0].enabled = 1;
    info->pmodes[1].r.width = 1024;
    info->pmodes[1].r.height = 768;
    info->pmodes[1].enabled = 1;
}

/* A socket send buffer far smaller than one 1280x800 UPDATE, whatever the sysctls say. */
static void shrink_sndbuf(int fd)
{
    int sz = 64 * 1024;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
}

#define W 1280u
#define H 800u
#define PER_SCANOUT 6u

/* ---- frames ---- */

static struct tframe *frame_new(uint32_t id, uint32_t scanout, uint32_t x, uint32_t y, uint32_t w,
                                uint32_t h)
{
    struct tframe *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    size_t bytes = (size_t)w * h * 4u;
    t->f = (struct vgpu_frame){.scanout = scanout, .x = x, .y = y, .width = w, .height = h};
    t->f.pixels = malloc(bytes ? bytes : 1);
    assert_non_null(t->f.pixels);
    t->f.capacity = bytes;
    t->id = id;
    uint32_t word = 0xff000000u | id;
    for (size_t i = 0; i < bytes / 4; i++)
        memcpy(t->f.pixels + i * 4, &word, 4);
    return t;
}

static void frame_free(struct tframe *t)
{
    free(t->f.pixels);
    free(t);
}

/* Checks an UPDATE payload's rectangle and that every pixel says id; returns the id. */
static uint32_t update_id(const struct msg *m, uint32_t *scanout)
{
    assert_int_equal(m->request, 8);
    assert_true(m->size >= 20);
    uint32_t u[5];
    memcpy(u, m->payload, sizeof(u));
    assert_int_equal(m->size, 20 + (uint64_t)u[3] * u[4] * 4);
    uint32_t first;
    memcpy(&first, m->payload + 20, 4);
    for (uint32_t i = 0; i < u[3] * u[4]; i++) {
        uint32_t word;
        memcpy(&word, m->payload + 20 + (size_t)i * 4, 4);
        assert_int_equal(word, first);
    }
    *scanout = u[0];
    return first & 0xffffffu;
}

/* ---- negotiation ---- */

static void test_negotiate_none(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 0);
    assert_int_equal(f.ready_calls, 1);
    assert_int_equal(f.ready_features, 0);
    struct edid_result er = {0};
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 0, cb_edid, &er), -ENOTSUP);
    assert_false(peer_has_data(&f, 20));
    assert_int_equal(er.calls, 0);
    fx_finish(&f);
}

static void test_negotiate_edid_dmabuf2(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 3);
    assert_int_equal(f.ready_features, 3);
    fx_finish(&f);

    /* Bits we do not know are not agreed. */
    fx_init(&f, 2);
    negotiate(&f, 0xfffffffffffffff5ull);
    assert_int_equal(f.ready_features, 1);
    fx_finish(&f);
}

static void test_negotiation_timeout(void **state)
{
    struct fx f;
    fx_init(&f, 1);
    vgpu_vdisplay_set_timeout(f.d, 50);
    peer_expect_free(&f, 1, 0);
    uint64_t t0 = ms_now();
    PUMP_UNTIL(&f, f.closed_calls == 1);
    assert_true(ms_now() - t0 < 1000);
    assert_int_equal(f.ready_calls, 0);
    struct vgpu_vdisplay_stats st;
    vgpu_vdisplay_get_stats(f.d, &st);
    assert_int_equal(st.requests_timed_out, 1);
    fx_finish(&f);
}

/* Until QEMU answers GET_PROTOCOL_FEATURES nothing else goes out; then all in order. */
static void test_queued_before_ready(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    uint32_t img[VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE];
    for (uint32_t i = 0; i < VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE; i++)
        img[i] = 0x80000000u | i;

    vgpu_vdisplay_scanout(f.d, 1, 16, 16);
    vgpu_vdisplay_scanout(f.d, 1, 32, 24); /* replaces the first */
    struct tframe *t = frame_new(7, 1, 0, 0, 32, 24);
    vgpu_vdisplay_update(f.d, &t->f);
    vgpu_vdisplay_cursor_update(f.d, 0, 5, 6, 1, 2, img);
    vgpu_vdisplay_cursor_move(f.d, 0, 1, 1, true);
    vgpu_vdisplay_cursor_move(f.d, 0, 2, 2, true);
    vgpu_vdisplay_cursor_move(f.d, 0, 9, 8, false); /* newest wins */
    struct info_result ir = {0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), 0);
    struct edid_result er = {0};
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 1, cb_edid, &er), 0);

    peer_expect_free(&f, 1, 0);
    assert_false(peer_has_data(&f, 30));
    uint64_t offered = 0; /* QEMU 7.2: no EDID */
    peer_reply(&f, 1, &offered, sizeof(offered));

    struct msg m;
    peer_expect_free(&f, 2, 8);
    peer_expect(&f, 7, 12, &m);
    uint32_t sc[3];
    memcpy(sc, m.payload, sizeof(sc));
    free(m.payload);
    assert_int_equal(sc[0], 1);
    assert_int_equal(sc[1], 32);
    assert_int_equal(sc[2], 24);

    peer_read_msg(&f, &m);
    uint32_t scanout;
    assert_int_equal(update_id(&m, &scanout), 7);
    assert_int_equal(scanout, 1);
    free(m.payload);

    peer_expect(&f, 6, 16404, &m);
    uint32_t cu[5];
    memcpy(cu, m.payload, sizeof(cu));
    assert_int_equal(cu[0], 0);
    assert_int_equal(cu[1], 5);
    assert_int_equal(cu[2], 6);
    assert_int_equal(cu[3], 1);
    assert_int_equal(cu[4], 2);
    assert_memory_equal(m.payload + 20, img, sizeof(img));
    free(m.payload);

    peer_expect(&f, 5, 12, &m); /* hidden */
    uint32_t pos[3];
    memcpy(pos, m.payload, sizeof(pos));
    free(m.payload);
    assert_int_equal(pos[0], 0);
    assert_int_equal(pos[1], 9);
    assert_int_equal(pos[2], 8);

    peer_expect_free(&f, 3, 0);
    /* GET_EDID was asked before QEMU said no: it fails, and never goes out. */
    PUMP_UNTIL(&f, er.calls == 1);
    assert_int_equal(er.status, -ENOTSUP);
    assert_int_equal(ir.calls, 0);

    struct vgpu_vdisplay_stats st;
    vgpu_vdisplay_get_stats(f.d, &st);
    assert_int_equal(st.cursor_dropped, 2);
    assert_int_equal(t->done_calls, 1);
    assert_true(t->sent);

    struct virtio_gpu_resp_display_info info;
    make_info(&info, 32, 24);
    peer_reply(&f, 3, &info, sizeof(info));
    PUMP_UNTIL(&f, ir.calls == 1);
    assert_int_equal(ir.status, 0);
    assert_false(peer_has_data(&f, 20));
    fx_finish(&f);
    frame_free(t);
}

/* ---- requests ---- */

static void test_display_info(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 0);
    pump(&f, 10);
    /* Idle: the read watch only, no timer. */
    assert_int_equal(loop_count(&f.loop), 1);
    assert_int_equal(loop_count_timers(&f.loop), 0);

    struct info_result ir = {0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), 0);
    assert_int_equal(ir.calls, 0); /* never from inside the call */
    peer_expect_free(&f, 3, 0);
    assert_int_equal(loop_count_timers(&f.loop), 1);

    struct virtio_gpu_resp_display_info info;
    make_info(&info, 1280, 800);
    peer_reply(&f, 3, &info, sizeof(info));
    PUMP_UNTIL(&f, ir.calls == 1);
    assert_int_equal(ir.status, 0);
    assert_memory_equal(&ir.info, &info, sizeof(info));
    pump(&f, 10);
    assert_int_equal(ir.calls, 1);
    assert_int_equal(loop_count(&f.loop), 1);
    assert_int_equal(loop_count_timers(&f.loop), 0);
    fx_finish(&f);
}

/* The reply trickles in: the module reassembles it across reads. */
static void test_display_info_partial_reply(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 0);
    struct info_result ir = {0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), 0);
    peer_expect_free(&f, 3, 0);

    uint8_t buf[12 + sizeof(struct virtio_gpu_resp_display_info)];
    uint32_t hdr[3] = {3, 4, sizeof(struct virtio_gpu_resp_display_info)};
    struct virtio_gpu_resp_display_info info;
    make_info(&info, 800, 600);
    memcpy(buf, hdr, sizeof(hdr));
    memcpy(buf + 12, &info, sizeof(info));
    size_t cuts[] = {0, 5, 12, 13, 200, sizeof(buf)};
    for (size_t i = 0; i + 1 < sizeof(cuts) / sizeof(cuts[0]); i++) {
        peer_send(&f, buf + cuts[i], cuts[i + 1] - cuts[i]);
        if (i + 2 < sizeof(cuts) / sizeof(cuts[0])) {
            pump(&f, 10);
            assert_int_equal(ir.calls, 0);
        }
    }
    PUMP_UNTIL(&f, ir.calls == 1);
    assert_int_equal(ir.status, 0);
    assert_int_equal(ir.info.pmodes[0].r.width, 800);
    assert_int_equal(f.closed_calls, 0);
    fx_finish(&f);
}

static void test_edid(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 3);
    struct edid_result er = {0};
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 2, cb_edid, &er), -EINVAL);
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 1, cb_edid, &er), 0);
    struct msg m;
    peer_expect(&f, 11, 4, &m);
    uint32_t scanout;
    memcpy(&scanout, m.payload, 4);
    free(m.payload);
    assert_int_equal(scanout, 1);

    struct virtio_gpu_resp_edid edid;
    memset(&edid, 0, sizeof(edid));
    edid.hdr.type = VIRTIO_GPU_RESP_OK_EDID;
    edid.size = 128;
    for (unsigned int i = 0; i < 128; i++)
        edid.edid[i] = (uint8_t)(i * 7);
    peer_reply(&f, 11, &edid, sizeof(edid));
    PUMP_UNTIL(&f, er.calls == 1);
    assert_int_equal(er.status, 0);
    assert_int_equal(er.edid.size, 128);
    assert_memory_equal(er.edid.edid, edid.edid, 128);
    fx_finish(&f);
}

/* Waiting requests are shared; only one is on the wire at a time. */
static void test_coalesce(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 1);
    int counter = 0;
    struct info_result a = {.counter = &counter}, b = {.counter = &counter},
                       c = {.counter = &counter};

    /* Back to back: one request, three callbacks in call order. */
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &a), 0);
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &b), 0);
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &c), 0);
    peer_expect_free(&f, 3, 0);
    assert_false(peer_has_data(&f, 20));
    struct virtio_gpu_resp_display_info info;
    make_info(&info, 640, 480);
    peer_reply(&f, 3, &info, sizeof(info));
    PUMP_UNTIL(&f, c.calls == 1);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.order, 0);
    assert_int_equal(b.order, 1);
    assert_int_equal(c.order, 2);
    assert_int_equal(c.info.pmodes[0].r.width, 640);

    /* One on the wire: the next two share one queued request, sent after the reply. */
    a = (struct info_result){0};
    b = (struct info_result){0};
    c = (struct info_result){0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &a), 0);
    peer_expect_free(&f, 3, 0);
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &b), 0);
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &c), 0);
    struct edid_result e0 = {0}, e0b = {0}, e1 = {0};
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 0, cb_edid, &e0), 0);
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 0, cb_edid, &e0b), 0);
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 1, cb_edid, &e1), 0);
    assert_false(peer_has_data(&f, 20));

    make_info(&info, 1, 1);
    peer_reply(&f, 3, &info, sizeof(info));
    PUMP_UNTIL(&f, a.calls == 1);
    assert_int_equal(a.info.pmodes[0].r.width, 1);
    assert_int_equal(b.calls, 0);
    peer_expect_free(&f, 3, 0);
    assert_false(peer_has_data(&f, 20));
    make_info(&info, 2, 2);
    peer_reply(&f, 3, &info, sizeof(info));
    PUMP_UNTIL(&f, c.calls == 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.info.pmodes[0].r.width, 2);
    assert_int_equal(c.info.pmodes[0].r.width, 2);

    struct virtio_gpu_resp_edid edid;
    memset(&edid, 0, sizeof(edid));
    edid.hdr.type = VIRTIO_GPU_RESP_OK_EDID;
    struct msg m;
    peer_expect(&f, 11, 4, &m);
    assert_int_equal(m.payload[0], 0);
    free(m.payload);
    assert_false(peer_has_data(&f, 20));
    edid.size = 10;
    peer_reply(&f, 11, &edid, sizeof(edid));
    peer_expect(&f, 11, 4, &m);
    assert_int_equal(m.payload[0], 1);
    free(m.payload);
    assert_int_equal(e0.calls, 1);
    assert_int_equal(e0b.calls, 1);
    assert_int_equal(e0b.edid.size, 10);
    assert_int_equal(e1.calls, 0);
    edid.size = 11;
    peer_reply(&f, 11, &edid, sizeof(edid));
    PUMP_UNTIL(&f, e1.calls == 1);
    assert_int_equal(e1.edid.size, 11);
    assert_false(peer_has_data(&f, 20));
    assert_int_equal(f.closed_calls, 0);
    fx_finish(&f);
}

static void test_timeout(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 1);
    vgpu_vdisplay_set_timeout(f.d, 50);
    vgpu_vdisplay_scanout(f.d, 0, 64, 64);
    peer_expect_free(&f, 7, 12);
    struct info_result ir = {0};
    struct edid_result er = {0};
    uint64_t t0 = ms_now();
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), 0);
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 0, cb_edid, &er), 0);
    peer_expect_free(&f, 3, 0);
    /* QEMU does not answer. */
    PUMP_UNTIL(&f, f.closed_calls == 1);
    assert_true(ms_now() - t0 >= 49);
    assert_int_equal(ir.calls, 1);
    assert_int_equal(ir.status, -ETIMEDOUT);
    assert_int_equal(er.calls, 1);
    assert_int_equal(er.status, -ECONNRESET);
    struct vgpu_vdisplay_stats st;
    vgpu_vdisplay_get_stats(f.d, &st);
    assert_int_equal(st.requests_timed_out, 1);
    assert_false(vgpu_vdisplay_is_ready(f.d));
    assert_int_equal(loop_count(&f.loop), 0);

    /* QEMU sees the close; a late reply has nowhere to go. */
    char c;
    assert_int_equal(recv(f.peer, &c, 1, MSG_DONTWAIT), 0);

    /* Later calls are harmless. */
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), -ECONNRESET);
    struct tframe *t = frame_new(1, 0, 0, 0, 4, 4);
    vgpu_vdisplay_update(f.d, &t->f);
    assert_int_equal(t->done_calls, 1);
    assert_false(t->sent);
    vgpu_vdisplay_scanout(f.d, 0, 8, 8);
    vgpu_vdisplay_cursor_move(f.d, 0, 1, 1, true);
    pump(&f, 10);
    assert_int_equal(f.closed_calls, 1);
    assert_int_equal(ir.calls, 1);
    fx_finish(&f);
    frame_free(t);
}

static void test_peer_closes(void **state)
{
    unsigned int fds_before = count_fds();
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 1);
    vgpu_vdisplay_scanout(f.d, 0, 64, 64);
    peer_expect_free(&f, 7, 12);
    struct info_result ir = {0};
    struct edid_result er = {0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), 0);
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 0, cb_edid, &er), 0);
    peer_expect_free(&f, 3, 0);
    struct tframe *t = frame_new(1, 0, 0, 0, 64, 64);
    vgpu_vdisplay_update(f.d, &t->f);

    close(f.peer);
    f.peer = -1;
    PUMP_UNTIL(&f, f.closed_calls == 1);
    assert_int_equal(ir.calls, 1);
    assert_int_equal(ir.status, -ECONNRESET);
    assert_int_equal(er.calls, 1);
    assert_int_equal(er.status, -ECONNRESET);
    assert_int_equal(t->done_calls, 1); /* sent or not: back exactly once */
    assert_int_equal(loop_count(&f.loop), 0);

    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), -ECONNRESET);
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 0, cb_edid, &er), -ECONNRESET);
    vgpu_vdisplay_scanout(f.d, 1, 64, 64);
    vgpu_vdisplay_update(f.d, &t->f);
    assert_int_equal(t->done_calls, 2);
    assert_false(t->sent);
    uint32_t img[VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE] = {0};
    vgpu_vdisplay_cursor_update(f.d, 0, 0, 0, 0, 0, img);
    vgpu_vdisplay_cursor_move(f.d, 0, 0, 0, false);
    vgpu_vdisplay_set_timeout(f.d, 10);
    pump(&f, 20);
    assert_int_equal(f.closed_calls, 1);
    fx_finish(&f);
    frame_free(t);
    assert_int_equal(count_fds(), fds_before);
}

/* QEMU stops reading (SHUT_RD): our sends fail with EPIPE, which must not raise SIGPIPE. */
static void test_send_fails(void **state)
{
    struct fx f;
    fx_init(&f, 1);
    negotiate(&f, 0);
    assert_int_equal(shutdown(f.peer, SHUT_RD), 0);
    vgpu_vdisplay_scanout(f.d, 0, 64, 64);
    struct tframe *t = frame_new(1, 0, 0, 0, 64, 64);
    vgpu_vdisplay_update(f.d, &t->f);
    PUMP_UNTIL(&f, f.closed_calls == 1);
    assert_int_equal(t->done_calls, 1);
    assert_false(t->sent);
    fx_finish(&f);
    frame_free(t);
}

/* QEMU sends reply bytes that do not fit: each closes the socket. */
static void bad_reply_case(uint32_t request, uint32_t flags, uint32_t size, bool ask, uint32_t type)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 1);
    struct info_result ir = {0};
    if (ask) {
        assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), 0);
        peer_expect_free(&f, 3, 0);
    }
    uint8_t payload[1056];
    memset(payload, 0, sizeof(payload));
    memcpy(payload, &type, sizeof(type));
    uint32_t hdr[3] = {request, flags, size};
    peer_send(&f, hdr, sizeof(hdr));
    peer_send(&f, payload, size < sizeof(payload) ? size : sizeof(payload));
    PUMP_UNTIL(&f, f.closed_calls == 1);
    if (ask) {
        assert_int_equal(ir.calls, 1);
        assert_int_equal(ir.status, -EPROTO);
    }
    assert_int_equal(loop_count(&f.loop), 0);
    fx_finish(&f);
}

static void test_bad_reply_size(void **state)
{
    bad_reply_case(3, 4, 400, true, VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    bad_reply_case(3, 4, 409, true, VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    bad_reply_case(3, 4, 0xffffffffu, true, VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
}

static void test_unsolicited_reply(void **state)
{
    /* Nothing asked. */
    bad_reply_case(3, 4, 408, false, VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    bad_reply_case(10, 4, 0, false, 0); /* a DMABUF_UPDATE ack we never asked for */
    bad_reply_case(1, 4, 8, false, 0);
    /* Asked for display info, got something else. */
    bad_reply_case(11, 4, 1056, true, VIRTIO_GPU_RESP_OK_EDID);
    /* Not flagged as a reply. */
    bad_reply_case(3, 0, 408, true, VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
    /* Right size, wrong content. */
    bad_reply_case(3, 4, 408, true, VIRTIO_GPU_RESP_ERR_UNSPEC);
}

static void test_bad_edid_reply(void **state)
{
    struct fx f;
    fx_init(&f, 1);
    negotiate(&f, 1);
    struct edid_result er = {0};
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 0, cb_edid, &er), 0);
    peer_expect_free(&f, 11, 4);
    struct virtio_gpu_resp_edid edid;
    memset(&edid, 0, sizeof(edid));
    edid.hdr.type = VIRTIO_GPU_RESP_OK_EDID;
    edid.size = 1025; /* more than the blob holds */
    peer_reply(&f, 11, &edid, sizeof(edid));
    PUMP_UNTIL(&f, f.closed_calls == 1);
    assert_int_equal(er.calls, 1);
    assert_int_equal(er.status, -EPROTO);
    fx_finish(&f);
}

/* A "reply" to a request still queued behind a stalled UPDATE cannot be one. */
static void test_reply_before_request(void **state)
{
    struct fx f;
    fx_socketpair(&f);
    shrink_sndbuf(f.mine);
    fx_create(&f, 1);
    negotiate(&f, 0);
    vgpu_vdisplay_scanout(f.d, 0, W, H);
    struct tframe *t = frame_new(1, 0, 0, 0, W, H);
    vgpu_vdisplay_update(f.d, &t->f);
    pump(&f, 10);
    struct info_result ir = {0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), 0);
    pump(&f, 10);
    struct virtio_gpu_resp_display_info info;
    make_info(&info, 1, 1);
    peer_reply(&f, 3, &info, sizeof(info));
    PUMP_UNTIL(&f, f.closed_calls == 1);
    assert_int_equal(ir.calls, 1);
    assert_int_equal(ir.status, -EPROTO);
    assert_int_equal(t->done_calls, 1);
    assert_false(t->sent);
    fx_finish(&f);
    frame_free(t);
}

/* ---- display messages ---- */

static void test_update_needs_scanout(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 0);
    struct vgpu_vdisplay_stats st;

    struct tframe *t = frame_new(1, 0, 0, 0, 16, 16);
    vgpu_vdisplay_update(f.d, &t->f);
    assert_int_equal(t->done_calls, 1);
    assert_false(t->sent);
    assert_false(peer_has_data(&f, 20)); /* QEMU 7.2 would crash on it */

    /* Disabled again: still dropped. */
    vgpu_vdisplay_scanout(f.d, 0, 64, 48);
    peer_expect_free(&f, 7, 12);
    vgpu_vdisplay_scanout(f.d, 0, 0, 48);
    struct msg m;
    peer_expect(&f, 7, 12, &m);
    uint32_t sc[3];
    memcpy(sc, m.payload, sizeof(sc));
    free(m.payload);
    assert_int_equal(sc[1], 0);
    assert_int_equal(sc[2], 0);
    vgpu_vdisplay_update(f.d, &t->f);
    assert_int_equal(t->done_calls, 2);
    assert_false(t->sent);

    /* Invalid rectangles, with the scanout enabled. */
    vgpu_vdisplay_scanout(f.d, 0, 64, 48);
    peer_expect_free(&f, 7, 12);
    struct tframe *bad[6];
    bad[0] = frame_new(2, 2, 0, 0, 4, 4);  /* no such scanout */
    bad[1] = frame_new(3, 0, 60, 0, 8, 8); /* sticks out */
    bad[2] = frame_new(4, 0, 0, 44, 8, 8); /* sticks out */
    bad[3] = frame_new(5, 0, 0, 0, 8, 8);
    bad[3]->f.capacity = 8 * 8 * 4 - 1; /* buffer too small */
    bad[4] = frame_new(6, 0, 0, 0, 0, 8);
    bad[5] = frame_new(7, 0, 0, 0, 1, 1);
    bad[5]->f.width = 0x10000; /* 0x10000 * 0x10000 * 4 overflows 32 bits */
    bad[5]->f.height = 0x10000;
    for (unsigned int i = 0; i < 6; i++) {
        vgpu_vdisplay_update(f.d, &bad[i]->f);
        assert_int_equal(bad[i]->done_calls, 1);
        assert_false(bad[i]->sent);
    }
    /* A scanout id past the end is ignored. */
    vgpu_vdisplay_scanout(f.d, 2, 64, 48);
    vgpu_vdisplay_cursor_move(f.d, 2, 1, 1, true);
    assert_false(peer_has_data(&f, 20));
    vgpu_vdisplay_get_stats(f.d, &st);
    assert_int_equal(st.updates_dropped, 8);
    assert_int_equal(st.updates_sent, 0);
    assert_int_equal(f.closed_calls, 0);
    fx_finish(&f);
    frame_free(t);
    for (unsigned int i = 0; i < 6; i++)
        frame_free(bad[i]);
}

static void test_scanout_then_update(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 0);
    vgpu_vdisplay_scanout(f.d, 1, 64, 48);
    struct tframe *t = frame_new(0, 1, 8, 4, 16, 8);
    for (uint32_t i = 0; i < 16 * 8; i++) {
        uint32_t word = 0xff000000u | (i * 0x010203u);
        memcpy(t->f.pixels + (size_t)i * 4, &word, 4);
    }
    vgpu_vdisplay_update(f.d, &t->f);
    assert_int_equal(t->done_calls, 0);

    struct msg m;
    peer_expect(&f, 7, 12, &m);
    uint32_t sc[3];
    memcpy(sc, m.payload, sizeof(sc));
    free(m.payload);
    assert_int_equal(sc[0], 1);
    assert_int_equal(sc[1], 64);
    assert_int_equal(sc[2], 48);

    peer_expect(&f, 8, 20 + 16 * 8 * 4, &m);
    uint32_t u[5];
    memcpy(u, m.payload, sizeof(u));
    assert_int_equal(u[0], 1);
    assert_int_equal(u[1], 8);
    assert_int_equal(u[2], 4);
    assert_int_equal(u[3], 16);
    assert_int_equal(u[4], 8);
    assert_memory_equal(m.payload + 20, t->f.pixels, (size_t)16 * 8 * 4);
    free(m.payload);

    PUMP_UNTIL(&f, t->done_calls == 1);
    assert_true(t->sent);
    struct vgpu_vdisplay_stats st;
    vgpu_vdisplay_get_stats(f.d, &st);
    assert_int_equal(st.updates_sent, 1);
    assert_int_equal(st.updates_dropped, 0);
    /* GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, SCANOUT, UPDATE */
    assert_int_equal(st.bytes_sent, 12 + 20 + 24 + 32 + 16 * 8 * 4);
    pump(&f, 10);
    assert_int_equal(loop_count(&f.loop), 1);
    assert_false(loop_has_write_watch(&f.loop));
    fx_finish(&f);
    frame_free(t);
}

static void test_cursor(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 0);
    uint32_t img[VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE];
    for (uint32_t i = 0; i < VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE; i++)
        img[i] = i * 2654435761u;
    vgpu_vdisplay_cursor_update(f.d, 1, 10, 20, 3, 4, img);
    img[0] = 0; /* copied at the call */
    struct msg m;
    peer_expect(&f, 6, 16404, &m);
    uint32_t cu[5];
    memcpy(cu, m.payload, sizeof(cu));
    assert_int_equal(cu[0], 1);
    assert_int_equal(cu[1], 10);
    assert_int_equal(cu[2], 20);
    assert_int_equal(cu[3], 3);
    assert_int_equal(cu[4], 4);
    uint32_t first;
    memcpy(&first, m.payload + 20, 4);
    assert_int_equal(first, 0u);
    assert_memory_equal(m.payload + 24, img + 1, sizeof(img) - 4);
    free(m.payload);

    vgpu_vdisplay_cursor_move(f.d, 1, 5, 6, false);
    peer_expect(&f, 5, 12, &m);
    uint32_t pos[3];
    memcpy(pos, m.payload, sizeof(pos));
    free(m.payload);
    assert_int_equal(pos[0], 1);
    assert_int_equal(pos[1], 5);
    assert_int_equal(pos[2], 6);
    vgpu_vdisplay_cursor_move(f.d, 0, 7, 8, true);
    peer_expect(&f, 4, 12, &m);
    memcpy(pos, m.payload, sizeof(pos));
    free(m.payload);
    assert_int_equal(pos[0], 0);
    assert_int_equal(pos[1], 7);
    assert_int_equal(pos[2], 8);
    fx_finish(&f);
}

/*
 * QEMU stops reading while big UPDATEs keep coming: nothing blocks, at most one UPDATE per
 * scanout waits besides the one being written, every frame comes back once, and the stream
 * stays well-formed when QEMU reads again.
 */
static void test_stalled_reader(void **state)
{
    struct fx f;
    fx_socketpair(&f);
    shrink_sndbuf(f.mine);
    fx_create(&f, 2);
    negotiate(&f, 0);
    vgpu_vdisplay_scanout(f.d, 0, W, H);
    vgpu_vdisplay_scanout(f.d, 1, W, H);

    struct tframe *fr[2][PER_SCANOUT];
    unsigned int given = 0;
    for (unsigned int i = 0; i < PER_SCANOUT; i++) {
        for (uint32_t s = 0; s < 2; s++) {
            fr[s][i] = frame_new(s * 100 + i, s, 0, 0, W, H);
            uint64_t t0 = ms_now();
            vgpu_vdisplay_update(f.d, &fr[s][i]->f);
            given++;
            assert_true(ms_now() - t0 < 100); /* returns at once */
            loop_run_once(&f.loop, 0);
            /* One being written plus at most one waiting per scanout. */
            assert_true(given - (unsigned int)f.frames_done <= 3);
        }
    }
    pump(&f, 20);
    assert_true(loop_has_write_watch(&f.loop));
    /* The first UPDATE is stuck in the socket; each scanout's newest frame waits. */
    assert_int_equal(fr[0][0]->done_calls, 0);
    assert_int_equal(fr[0][PER_SCANOUT - 1]->done_calls, 0);
    assert_int_equal(fr[1][PER_SCANOUT - 1]->done_calls, 0);
    assert_int_equal(f.frames_done, 2 * PER_SCANOUT - 3);
    assert_int_equal(f.frames_sent, 0);

    /* A SCANOUT while scanout 0's UPDATE waits: that UPDATE has a stale size, dropped. */
    vgpu_vdisplay_scanout(f.d, 0, W, H);
    assert_int_equal(fr[0][PER_SCANOUT - 1]->done_calls, 1);
    assert_false(fr[0][PER_SCANOUT - 1]->sent);
    struct tframe *last = frame_new(42, 0, 0, 0, W, H);
    vgpu_vdisplay_update(f.d, &last->f);
    given++;
    struct vgpu_vdisplay_stats st;
    vgpu_vdisplay_get_stats(f.d, &st);
    assert_int_equal(st.updates_dropped, 2 * PER_SCANOUT - 2);
    assert_int_equal(st.updates_sent, 0);

    /* QEMU reads again: SCANOUT 0, SCANOUT 1, UPDATE 0 (first), UPDATE 1 (newest),
     * SCANOUT 0, UPDATE 0 (last). */
    struct {
        uint32_t request, scanout, id;
    } expect[] = {
        {7, 0, 0}, {7, 1, 0}, {8, 0, 0}, {8, 1, 100 + PER_SCANOUT - 1}, {7, 0, 0}, {8, 0, 42},
    };
    for (unsigned int i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        struct msg m;
        peer_read_msg(&f, &m);
        assert_int_equal(m.request, expect[i].request);
        if (m.request == 7) {
            assert_int_equal(m.size, 12);
            uint32_t sc[3];
            memcpy(sc, m.payload, sizeof(sc));
            assert_int_equal(sc[0], expect[i].scanout);
            assert_int_equal(sc[1], W);
            assert_int_equal(sc[2], H);
        } else {
            uint32_t scanout;
            assert_int_equal(update_id(&m, &scanout), expect[i].id);
            assert_int_equal(scanout, expect[i].scanout);
        }
        free(m.payload);
    }
    PUMP_UNTIL(&f, f.frames_done == (int)given);
    assert_false(peer_has_data(&f, 20));
    assert_false(loop_has_write_watch(&f.loop));
    assert_int_equal(loop_count(&f.loop), 1);

    vgpu_vdisplay_get_stats(f.d, &st);
    assert_int_equal(st.updates_sent, 3);
    assert_int_equal(f.frames_sent, 3);
    assert_int_equal(st.updates_dropped, given - 3);
    assert_int_equal(st.bytes_sent, 12 + 20 + 3 * 24 + 3 * (12 + 20 + (uint64_t)W * H * 4));
    for (unsigned int i = 0; i < PER_SCANOUT; i++) {
        for (unsigned int s = 0; s < 2; s++) {
            assert_int_equal(fr[s][i]->done_calls, 1);
            frame_free(fr[s][i]);
        }
    }
    assert_int_equal(last->done_calls, 1);
    assert_true(last->sent);
    fx_finish(&f);
    frame_free(last);
}

/* Destroy with everything pending: every frame back, every callback -ECANCELED, fds closed. */
static void test_destroy_pending(void **state)
{
    unsigned int fds_before = count_fds();
    struct fx f;
    fx_socketpair(&f);
    shrink_sndbuf(f.mine);
    fx_create(&f, 2);
    negotiate(&f, 1);
    vgpu_vdisplay_scanout(f.d, 0, W, H);
    vgpu_vdisplay_scanout(f.d, 1, W, H);
    struct info_result a = {0}, b = {0}, c = {0};
    struct edid_result e = {0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &a), 0);
    peer_expect_free(&f, 7, 12);
    peer_expect_free(&f, 7, 12);
    peer_expect_free(&f, 3, 0); /* a's request is on the wire */

    struct tframe *t[3] = {frame_new(1, 0, 0, 0, W, H), frame_new(2, 0, 0, 0, W, H),
                           frame_new(3, 1, 0, 0, W, H)};
    for (unsigned int i = 0; i < 3; i++) {
        vgpu_vdisplay_update(f.d, &t[i]->f);
        loop_run_once(&f.loop, 0);
    }
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &b), 0);
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &c), 0);
    assert_int_equal(vgpu_vdisplay_get_edid(f.d, 1, cb_edid, &e), 0);
    uint32_t img[VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE] = {0};
    vgpu_vdisplay_cursor_update(f.d, 0, 0, 0, 0, 0, img);
    pump(&f, 20);
    assert_int_equal(f.frames_done, 0);

    vgpu_vdisplay_destroy(f.d);
    f.d = NULL;
    for (unsigned int i = 0; i < 3; i++) {
        assert_int_equal(t[i]->done_calls, 1);
        assert_false(t[i]->sent);
        frame_free(t[i]);
    }
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, -ECANCELED);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, -ECANCELED);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, -ECANCELED);
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.status, -ECANCELED);
    assert_int_equal(f.closed_calls, 0);
    assert_int_equal(loop_count(&f.loop), 0);
    fx_finish(&f);
    assert_int_equal(count_fds(), fds_before);
}

/* The owner may destroy from inside closed. */
static void test_destroy_in_closed(void **state)
{
    unsigned int fds_before = count_fds();
    struct fx f;
    fx_init(&f, 1);
    negotiate(&f, 0);
    vgpu_vdisplay_scanout(f.d, 0, 8, 8);
    peer_expect_free(&f, 7, 12);
    struct info_result ir = {0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &ir), 0);
    f.destroy_in_closed = true;
    close(f.peer);
    f.peer = -1;
    PUMP_UNTIL(&f, f.closed_calls == 1);
    assert_null(f.d);
    assert_int_equal(ir.calls, 1);
    assert_int_equal(ir.status, -ECONNRESET);
    fx_finish(&f);
    assert_int_equal(count_fds(), fds_before);
}

/*
 * Destroy from inside a request callback while others share its reply and a frame waits:
 * everyone is called back before destroy returns.
 */
static void test_destroy_in_request_callback(void **state)
{
    struct fx f;
    fx_socketpair(&f);
    shrink_sndbuf(f.mine);
    fx_create(&f, 1);
    negotiate(&f, 0);
    vgpu_vdisplay_scanout(f.d, 0, W, H);
    peer_expect_free(&f, 7, 12);
    struct info_result a = {.destroy = &f}, b = {0}, c = {0};
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &a), 0);
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &b), 0);
    peer_expect_free(&f, 3, 0);
    assert_int_equal(vgpu_vdisplay_get_display_info(f.d, cb_info, &c), 0); /* queued */
    struct tframe *t0 = frame_new(1, 0, 0, 0, W, H), *t1 = frame_new(2, 0, 0, 0, W, H);
    vgpu_vdisplay_update(f.d, &t0->f);
    loop_run_once(&f.loop, 0);
    vgpu_vdisplay_update(f.d, &t1->f);
    struct virtio_gpu_resp_display_info info;
    make_info(&info, 3, 3);
    peer_reply(&f, 3, &info, sizeof(info));
    PUMP_UNTIL(&f, a.calls == 1);
    assert_null(f.d);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, 0); /* its reply had come */
    assert_int_equal(b.info.pmodes[0].r.width, 3);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, -ECANCELED);
    assert_int_equal(t0->done_calls, 1);
    assert_int_equal(t1->done_calls, 1);
    assert_int_equal(f.closed_calls, 0);
    fx_finish(&f);
    frame_free(t0);
    frame_free(t1);
}

static void test_destroy_in_frame_done(void **state)
{
    struct fx f;
    fx_init(&f, 2);
    negotiate(&f, 0);
    vgpu_vdisplay_scanout(f.d, 0, 16, 16);
    vgpu_vdisplay_scanout(f.d, 1, 16, 16);
    struct tframe *t0 = frame_new(1, 0, 0, 0, 16, 16), *t1 = frame_new(2, 1, 0, 0, 16, 16);
    vgpu_vdisplay_update(f.d, &t0->f);
    vgpu_vdisplay_update(f.d, &t1->f);
    f.destroy_in_frame_done = true;
    PUMP_UNTIL(&f, t0->done_calls == 1);
    assert_null(f.d);
    assert_true(t0->sent);
    assert_int_equal(t1->done_calls, 1);
    assert_false(t1->sent);
    fx_finish(&f);
    frame_free(t0);
    frame_free(t1);
}

static void test_create_fails(void **state)
{
    struct fx f;
    fx_socketpair(&f);
    /* Bad arguments: NULL, and the fd is closed. */
    assert_null(vgpu_vdisplay_create(f.mine, &f.watcher, 0, &test_ops, &f));
    assert_int_equal(fcntl(f.mine, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    close(f.peer);

    fx_socketpair(&f);
    assert_null(
        vgpu_vdisplay_create(f.mine, &f.watcher, VGPU_VDISPLAY_MAX_SCANOUTS + 1, &test_ops, &f));
    assert_int_equal(fcntl(f.mine, F_GETFD), -1);
    close(f.peer);

    /* Not a socket: the first send fails. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_null(vgpu_vdisplay_create(p[1], &f.watcher, 1, &test_ops, &f));
    assert_int_equal(fcntl(p[1], F_GETFD), -1);
    assert_int_equal(loop_count(&f.loop), 0);
    close(p[0]);

    vgpu_vdisplay_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate_none),
        cmocka_unit_test(test_negotiate_edid_dmabuf2),
        cmocka_unit_test(test_negotiation_timeout),
        cmocka_unit_test(test_queued_before_ready),
        cmocka_unit_test(test_display_info),
        cmocka_unit_test(test_display_info_partial_reply),
        cmocka_unit_test(test_edid),
        cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_peer_closes),
        cmocka_unit_test(test_send_fails),
        cmocka_unit_test(test_bad_reply_size),
        cmocka_unit_test(test_unsolicited_reply),
        cmocka_unit_test(test_bad_edid_reply),
        cmocka_unit_test(test_reply_before_request),
        cmocka_unit_test(test_update_needs_scanout),
        cmocka_unit_test(test_scanout_then_update),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_stalled_reader),
        cmocka_unit_test(test_destroy_pending),
        cmocka_unit_test(test_destroy_in_closed),
        cmocka_unit_test(test_destroy_in_request_callback),
        cmocka_unit_test(test_destroy_in_frame_done),
        cmocka_unit_test(test_create_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
