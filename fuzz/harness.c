/* SPDX-License-Identifier: MIT */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "render/render.h"
#include "util/log.h"

/*
 * Where findings are printed: a copy of stderr taken before libFuzzer parses its flags, so that
 * they survive -close_fd_mask=2 (which silences the daemon's own log).
 */
static int report_fd = STDERR_FILENO;

void fz_die(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    dprintf(report_fd, "fuzz: %.*s", n, line);
    abort();
}

void fz_init_logging(void)
{
    int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd >= 0)
        report_fd = fd;

    /* Warnings about bad guest input are the normal case here: keep the run quiet and fast. */
    enum vgpu_log_level level = VGPU_LOG_ERROR;
    const char *env = getenv("VGPU_FUZZ_LOG");
    if (env && vgpu_log_parse_level(env, &level) < 0)
        fz_die("VGPU_FUZZ_LOG=%s: expected error, warn, info or debug", env);
    vgpu_log_set_level(level);
}

/* ---- fake watcher ---- */

static int fw_watch(void *ctx, int fd, unsigned int events, vgpu_watch_fn fn, void *data)
{
    struct fz_watcher *fw = ctx;
    if (fd < 0 || !fn || events == 0 || (events & ~(unsigned int)(VGPU_EV_READ | VGPU_EV_WRITE)))
        fz_die("watch(fd %d, events 0x%x): bad arguments", fd, events);
    if (fcntl(fd, F_GETFD) < 0)
        fz_die("watch(fd %d): the fd is not open", fd);
    if (fz_watcher_find(fw, fd))
        return -EEXIST;
    for (unsigned int i = 0; i < FZ_MAX_WATCHES; i++) {
        struct fz_watch *w = &fw->watches[i];
        if (w->active)
            continue;
        *w = (struct fz_watch){.active = true, .fd = fd, .events = events, .fn = fn, .data = data};
        fw->last_fd = fd;
        return 0;
    }
    /* More than the reactor would ever see for one session: a leak of watches. */
    fz_die("more than %u fds watched at once", FZ_MAX_WATCHES);
}

static void fw_unwatch(void *ctx, int fd)
{
    struct fz_watch *w = fz_watcher_find(ctx, fd);
    if (w)
        w->active = false;
}

void fz_watcher_init(struct fz_watcher *fw)
{
    memset(fw, 0, sizeof(*fw));
    fw->w = (struct vgpu_watcher){.watch = fw_watch, .unwatch = fw_unwatch, .ctx = fw};
    fw->last_fd = -1;
}

unsigned int fz_watcher_count(const struct fz_watcher *fw)
{
    unsigned int n = 0;
    for (unsigned int i = 0; i < FZ_MAX_WATCHES; i++)
        n += fw->watches[i].active;
    return n;
}

struct fz_watch *fz_watcher_find(struct fz_watcher *fw, int fd)
{
    for (unsigned int i = 0; i < FZ_MAX_WATCHES; i++)
        if (fw->watches[i].active && fw->watches[i].fd == fd)
            return &fw->watches[i];
    return NULL;
}

struct fz_watch *fz_watcher_nth(struct fz_watcher *fw, unsigned int i)
{
    unsigned int n = fz_watcher_count(fw);
    if (n == 0)
        return NULL;
    i %= n;
    for (unsigned int k = 0; k < FZ_MAX_WATCHES; k++) {
        if (!fw->watches[k].active)
            continue;
        if (i-- == 0)
            return &fw->watches[k];
    }
    return NULL;
}

void fz_watcher_check_open(const struct fz_watcher *fw, const char *when)
{
    for (unsigned int i = 0; i < FZ_MAX_WATCHES; i++) {
        const struct fz_watch *w = &fw->watches[i];
        if (w->active && fcntl(w->fd, F_GETFD) < 0)
            fz_die("%s: fd %d is closed but still watched", when, w->fd);
    }
}

void fz_watch_fire(struct fz_watch *w, unsigned int events)
{
    /* Copy first: the callback may unwatch (and the slot be reused) while it runs. */
    struct fz_watch copy = *w;
    copy.fn(copy.data, copy.fd, events & copy.events ? events & copy.events : copy.events);
}

unsigned int fz_watch_ready(const struct fz_watch *w)
{
    struct pollfd p = {.fd = w->fd, .events = 0};
    if (w->events & VGPU_EV_READ)
        p.events |= POLLIN;
    if (w->events & VGPU_EV_WRITE)
        p.events |= POLLOUT;
    if (poll(&p, 1, 0) <= 0)
        return 0;
    /* As libuv reports them: errors and hang-ups wake whichever direction is watched. */
    unsigned int ev = 0;
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
        ev |= VGPU_EV_READ;
    if (p.revents & (POLLOUT | POLLHUP | POLLERR))
        ev |= VGPU_EV_WRITE;
    return ev & w->events;
}

bool fz_is_eventfd(int fd)
{
    char path[64], target[64];
    if (snprintf(path, sizeof(path), "/proc/self/fd/%d", fd) >= (int)sizeof(path))
        return false;
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/* ---- the render thread ---- */

static void render_notify(void *data)
{
    /* Completions are collected by polling vgpu_render_wait(); nothing to wake. */
}

struct vgpu_render *fz_render(void)
{
    static struct vgpu_render *render;
    if (!render) {
        struct vgpu_render_options ropts = {.notify = render_notify};
        render = vgpu_render_create(&ropts);
        if (!render)
            fz_die("cannot start the render thread");
    }
    return render;
}

void fz_gpu_options(struct vgpu_gpu_options *opts)
{
    vgpu_gpu_options_init(opts);
    opts->max_hostmem = 32ull << 20;
    opts->max_resources = 64;
    opts->max_contexts = 8;
}

/* ---- a session ---- */

void fz_session_init(struct fz_session *s, const struct vgpu_gpu_options *opts)
{
    memset(s, 0, sizeof(*s));
    fz_watcher_init(&s->watcher);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        fz_die("socketpair: %s", strerror(errno));
    s->peer = sv[0];
    s->dev = vgpu_vu_dev_create(sv[1], &s->watcher.w);
    if (!s->dev)
        fz_die("vgpu_vu_dev_create failed");
    s->gpu = vgpu_gpu_dev_attach(s->dev, opts, fz_render());
    if (!s->gpu)
        fz_die("vgpu_gpu_dev_attach failed");
}

/* Reads and discards everything the session wrote (replies), closing any fds it sent. */
static void drain_peer(struct fz_session *s)
{
    if (s->peer < 0)
        return;
    for (;;) {
        char buf[8192];
        union {
            char buf[CMSG_SPACE(16 * sizeof(int))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control.buf,
                            .msg_controllen = sizeof(control.buf)};
        ssize_t n = recvmsg(s->peer, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n <= 0)
            return;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfd; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
                close(fd);
            }
        }
    }
}

static void send_raw(struct fz_session *s, const void *buf, size_t len, const int *fds,
                     unsigned int nfds)
{
    union {
        char buf[CMSG_SPACE(16 * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 16)
        fz_die("send_raw: %u fds", nfds);
    if (nfds) {
        memset(&control, 0, sizeof(control));
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    /* fds need at least one byte to travel with. */
    if (len == 0 && nfds == 0)
        return;
    char zero = 0;
    if (len == 0) {
        iov.iov_base = &zero;
        iov.iov_len = 1;
    }
    ssize_t n = sendmsg(s->peer, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    /* The session reads everything before we send more, so the buffer never fills. */
    if (n < 0 || (size_t)n != iov.iov_len)
        fz_die("sendmsg of %zu bytes: %s", iov.iov_len, n < 0 ? strerror(errno) : "short write");
}

int fz_session_feed(struct fz_session *s, const void *buf, size_t len, const int *fds,
                    unsigned int nfds)
{
    if (s->dead || s->peer < 0)
        return -ECONNRESET;
    send_raw(s, buf, len, fds, nfds);
    int r = vgpu_vu_dev_handle_socket(s->dev);
    if (r < 0)
        s->dead = true;
    drain_peer(s);
    fz_watcher_check_open(&s->watcher, "after a message");
    return r;
}

int fz_session_request(struct fz_session *s, uint32_t request, const void *payload, uint32_t size,
                       const int *fds, unsigned int nfds, void *reply, size_t reply_max)
{
    uint8_t buf[VGPU_VU_HDR_SIZE + VGPU_VU_MAX_PAYLOAD];
    struct vgpu_vu_hdr hdr = {
        .request = request,
        .flags = VGPU_VU_VERSION | VGPU_VU_FLAG_NEED_REPLY,
        .size = size,
    };
    if (size > VGPU_VU_MAX_PAYLOAD)
        fz_die("request %u: payload of %u bytes", request, size);
    memcpy(buf, &hdr, sizeof(hdr));
    if (size)
        memcpy(buf + VGPU_VU_HDR_SIZE, payload, size);
    if (s->dead)
        fz_die("request %s on a dead session", vgpu_vu_request_name(request));
    send_raw(s, buf, VGPU_VU_HDR_SIZE + size, fds, nfds);
    if (vgpu_vu_dev_handle_socket(s->dev) < 0)
        fz_die("request %s: the session closed", vgpu_vu_request_name(request));

    /* The handler ran synchronously: a reply, if any, is already in the socket. */
    struct vgpu_vu_hdr rh;
    ssize_t n = recv(s->peer, &rh, sizeof(rh), MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN)
        return -1;
    if (n != (ssize_t)sizeof(rh))
        fz_die("request %s: truncated reply", vgpu_vu_request_name(request));
    if (rh.request != request || rh.size > sizeof(buf))
        fz_die("request %s: reply %u of %u bytes", vgpu_vu_request_name(request), rh.request,
               rh.size);
    n = rh.size ? recv(s->peer, buf, rh.size, MSG_DONTWAIT) : 0;
    if (n != (ssize_t)rh.size)
        fz_die("request %s: short reply", vgpu_vu_request_name(request));
    if (reply)
        memcpy(reply, buf, rh.size < reply_max ? rh.size : reply_max);
    return (int)rh.size;
}

void fz_session_disconnect(struct fz_session *s)
{
    if (s->peer < 0)
        return;
    close(s->peer);
    s->peer = -1;
    if (!s->dead && vgpu_vu_dev_handle_socket(s->dev) < 0)
        s->dead = true;
}

void fz_session_finish(struct fz_session *s)
{
    vgpu_vu_dev_destroy(s->dev);
    s->dev = NULL;
    s->gpu = NULL;
    if (s->peer >= 0)
        close(s->peer);
    s->peer = -1;
    for (unsigned int i = 0; i < FZ_MAX_WATCHES; i++)
        if (s->watcher.watches[i].active)
            fz_die("fd %d is still watched after the session was destroyed",
                   s->watcher.watches[i].fd);
}

/* ---- fds ---- */

int fz_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        fz_die("opendir /proc/self/fd: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

void fz_check_fds(int before, const char *when)
{
    int now = fz_count_fds();
    if (now != before)
        fz_die("%s: %d fds open, %d before (%s)", when, now, before,
               now > before ? "leaked" : "closed twice or someone else's");
}

int fz_memfd(const char *name, size_t size)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        fz_die("memfd of %zu bytes: %s", size, strerror(errno));
    return fd;
}

int fz_eventfd(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        fz_die("eventfd: %s", strerror(errno));
    return fd;
}
