/* SPDX-License-Identifier: MIT */
#include "reactor/server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "render/render.h"
#include "util/log.h"
#include "virtio/vu_dev.h"

struct vgpu_server {
    struct vgpu_reactor *r;
    struct vgpu_server_options opts;
    char *path;    /* socket file we created, removed at destroy */
    int listen_fd; /* -1 when serving an inherited connected socket */
    struct vgpu_vu_dev *session;
    struct vgpu_gpu_dev *gpu; /* the session's device, destroyed with it */
    int session_fd;
    /* The render thread serves one session after another; it lives as long as the server. */
    struct vgpu_render *render;
    struct vgpu_reactor_async *render_wake;
};

static void on_render_wake(void *data)
{
    struct vgpu_server *s = data;
    if (s->gpu)
        vgpu_gpu_dev_process_completions(s->gpu);
}

static void render_notify(void *data)
{
    vgpu_reactor_async_send(data);
}

static void on_listen(void *data, int fd, unsigned int events);

static int set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

static void end_session(struct vgpu_server *s)
{
    if (!s->session)
        return;
    vgpu_reactor_unwatch(s->r, s->session_fd);
    vgpu_vu_dev_destroy(s->session);
    s->session = NULL;
    s->gpu = NULL;
    s->session_fd = -1;
}

static void on_session(void *data, int fd, unsigned int events)
{
    struct vgpu_server *s = data;
    if (vgpu_vu_dev_handle_socket(s->session) == 0)
        return;
    end_session(s);
    if (s->listen_fd < 0) {
        vgpu_info("front-end gone; exiting");
        vgpu_reactor_stop(s->r);
        return;
    }
    /* Serve the next front-end (QEMU's reconnect= relies on this). */
    int r = vgpu_reactor_watch(s->r, s->listen_fd, VGPU_EV_READ, on_listen, s);
    if (r < 0) {
        vgpu_err("cannot watch the listening socket: %s", strerror(-r));
        vgpu_reactor_stop(s->r);
        return;
    }
    vgpu_info("waiting for the next front-end");
}

/* Takes ownership of fd. */
static int start_session(struct vgpu_server *s, int fd)
{
    struct vgpu_vu_dev *dev = vgpu_vu_dev_create(fd, vgpu_reactor_watcher(s->r));
    if (!dev)
        return -ENOMEM;
    struct vgpu_gpu_dev *gpu = vgpu_gpu_dev_attach(dev, &s->opts.gpu, s->render);
    if (!gpu) {
        vgpu_vu_dev_destroy(dev);
        return -ENOMEM;
    }
    int r = vgpu_reactor_watch(s->r, fd, VGPU_EV_READ, on_session, s);
    if (r < 0) {
        vgpu_vu_dev_destroy(dev);
        return r;
    }
    s->session = dev;
    s->gpu = gpu;
    s->session_fd = fd;
    return 0;
}

static void on_listen(void *data, int fd, unsigned int events)
{
    struct vgpu_server *s = data;
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            vgpu_warn("accept failed: %s", strerror(errno));
        return;
    }
    int r = start_session(s, c);
    if (r < 0) {
        vgpu_err("cannot start a session: %s", strerror(-r));
        return;
    }
    /* One front-end at a time: later ones wait in the backlog until this one leaves. */
    vgpu_reactor_unwatch(s->r, fd);
    vgpu_info("front-end connected");
}

/* Refuses paths a live server holds or that are not sockets; removes a stale socket file. */
static int prepare_path(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        vgpu_err("%s exists and is not a socket; refusing to replace it", path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    close(fd);
    if (r == 0) {
        vgpu_err("%s is served by a live process; refusing to take it over", path);
        return -EADDRINUSE;
    }
    if (e != ECONNREFUSED) {
        vgpu_err("cannot probe %s: %s", path, strerror(e));
        return -e;
    }
    vgpu_info("replacing stale socket %s", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static int listen_path(struct vgpu_server *s, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(sa.sun_path)) {
        vgpu_err("socket path must be 1..%zu bytes", sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    int r = prepare_path(path);
    if (r < 0)
        return r;
    memcpy(sa.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        vgpu_err("cannot bind %s: %s", path, strerror(errno));
        close(fd);
        return r;
    }
    s->path = strdup(path);
    if (!s->path || listen(fd, 1) < 0) {
        r = s->path ? -errno : -ENOMEM;
        unlink(path);
        close(fd);
        return r;
    }
    s->listen_fd = fd;
    return 0;
}

/* An inherited fd: a listening socket (serve many) or a connected one (serve it, then exit). */
static int adopt_fd(struct vgpu_server *s, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        vgpu_err("--fd %d is not an open socket", fd);
        return -ENOTSOCK;
    }
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
        return -errno;
    int r = set_nonblock_cloexec(fd);
    if (r < 0)
        return r;
    if (listening) {
        s->listen_fd = fd;
        return 0;
    }
    return start_session(s, fd);
}

struct vgpu_server *vgpu_server_create(struct vgpu_reactor *r,
                                       const struct vgpu_server_options *opts, int *err)
{
    struct vgpu_server *s = calloc(1, sizeof(*s));
    if (!s) {
        *err = -ENOMEM;
        return NULL;
    }
    s->r = r;
    s->opts = *opts;
    s->listen_fd = -1;
    s->session_fd = -1;

    int ret = -ENOMEM;
    s->render_wake = vgpu_reactor_async_create(r, on_render_wake, s);
    if (!s->render_wake)
        goto err;
    struct vgpu_render_options ropts = {
        .notify = render_notify,
        .notify_data = s->render_wake,
        .virgl = opts->virgl,
        .render_node = opts->render_node,
    };
    /* Before the socket: a daemon that cannot do 3D when asked fails before it serves. */
    s->render = vgpu_render_create(&ropts);
    if (!s->render) {
        ret = opts->virgl ? -ENODEV : -ENOMEM;
        goto err;
    }

    ret = opts->socket_path ? listen_path(s, opts->socket_path) : adopt_fd(s, opts->fd);
    if (ret < 0)
        goto err;
    if (s->listen_fd >= 0) {
        ret = vgpu_reactor_watch(r, s->listen_fd, VGPU_EV_READ, on_listen, s);
        if (ret < 0)
            goto err;
        vgpu_info("listening on %s", opts->socket_path ? opts->socket_path : "inherited socket");
    }
    return s;

err:
    *err = ret;
    vgpu_server_destroy(s);
    return NULL;
}

void vgpu_server_destroy(struct vgpu_server *s)
{
    if (!s)
        return;
    end_session(s);
    if (s->listen_fd >= 0) {
        vgpu_reactor_unwatch(s->r, s->listen_fd);
        close(s->listen_fd);
    }
    if (s->path) {
        unlink(s->path);
        free(s->path);
    }
    vgpu_render_destroy(s->render);
    vgpu_reactor_async_destroy(s->render_wake);
    free(s);
}
