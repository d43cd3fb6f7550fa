/* SPDX-License-Identifier: MIT */
#include "reactor/reactor.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "util/log.h"

static_assert((int)VGPU_EV_READ == (int)UV_READABLE, "event bits follow libuv");
static_assert((int)VGPU_EV_WRITE == (int)UV_WRITABLE, "event bits follow libuv");

#define MAX_SIGNALS 4

struct watch {
    uv_poll_t poll; /* first: the handle pointer is the watch pointer */
    struct vgpu_reactor *r;
    int fd;
    vgpu_watch_fn fn;
    void *data;
};

struct sig {
    uv_signal_t handle;
    vgpu_signal_fn fn;
    void *data;
};

struct vgpu_reactor_async {
    uv_async_t handle; /* first */
    void (*fn)(void *);
    void *data;
};

struct vgpu_reactor {
    uv_loop_t loop;
    struct watch **watches; /* indexed by fd */
    unsigned int nwatches_cap;
    unsigned int nwatches;
    struct sig sigs[MAX_SIGNALS];
    unsigned int nsigs;
    struct vgpu_watcher watcher;
};

static void free_on_close(uv_handle_t *h)
{
    free(h);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct watch *w = (struct watch *)handle;
    unsigned int ev = (unsigned int)events;
    /* On an error libuv has stopped the handle; let the owner read and see the error. */
    if (status < 0)
        ev = VGPU_EV_READ;
    w->fn(w->data, w->fd, ev);
}

int vgpu_reactor_watch(struct vgpu_reactor *r, int fd, unsigned int events, vgpu_watch_fn fn,
                       void *data)
{
    if (fd < 0)
        return -EBADF;
    unsigned int ufd = (unsigned int)fd;
    if (ufd >= r->nwatches_cap) {
        unsigned int cap = r->nwatches_cap ? r->nwatches_cap : 64;
        while (cap <= ufd)
            cap *= 2;
        struct watch **n = realloc(r->watches, cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        memset(n + r->nwatches_cap, 0, (cap - r->nwatches_cap) * sizeof(*n));
        r->watches = n;
        r->nwatches_cap = cap;
    }
    if (r->watches[ufd])
        return -EEXIST;
    struct watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->r = r;
    w->fd = fd;
    w->fn = fn;
    w->data = data;
    int ret = uv_poll_init(&r->loop, &w->poll, fd);
    if (ret < 0) {
        free(w);
        return ret;
    }
    ret = uv_poll_start(&w->poll, (int)events, on_poll);
    if (ret < 0) {
        uv_close((uv_handle_t *)&w->poll, free_on_close);
        return ret;
    }
    r->watches[ufd] = w;
    r->nwatches++;
    return 0;
}

void vgpu_reactor_unwatch(struct vgpu_reactor *r, int fd)
{
    if (fd < 0 || (unsigned int)fd >= r->nwatches_cap || !r->watches[fd])
        return;
    struct watch *w = r->watches[fd];
    r->watches[fd] = NULL;
    r->nwatches--;
    /* Stopping removes fd from epoll now, so the caller may close it right away; the handle
     * itself is freed in its close callback, as libuv requires. */
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, free_on_close);
}

unsigned int vgpu_reactor_num_watches(const struct vgpu_reactor *r)
{
    return r->nwatches;
}

static int watcher_watch(void *ctx, int fd, unsigned int events, vgpu_watch_fn fn, void *data)
{
    return vgpu_reactor_watch(ctx, fd, events, fn, data);
}

static void watcher_unwatch(void *ctx, int fd)
{
    vgpu_reactor_unwatch(ctx, fd);
}

const struct vgpu_watcher *vgpu_reactor_watcher(struct vgpu_reactor *r)
{
    return &r->watcher;
}

static void on_signal(uv_signal_t *handle, int signum)
{
    struct sig *s = (struct sig *)handle;
    s->fn(s->data, signum);
}

int vgpu_reactor_on_signal(struct vgpu_reactor *r, int signum, vgpu_signal_fn fn, void *data)
{
    if (r->nsigs == MAX_SIGNALS)
        return -ENOSPC;
    struct sig *s = &r->sigs[r->nsigs];
    int ret = uv_signal_init(&r->loop, &s->handle);
    if (ret < 0)
        return ret;
    s->fn = fn;
    s->data = data;
    ret = uv_signal_start(&s->handle, on_signal, signum);
    if (ret < 0) {
        uv_close((uv_handle_t *)&s->handle, NULL);
        return ret;
    }
    /* A signal handle must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&s->handle);
    r->nsigs++;
    return 0;
}

static void on_async(uv_async_t *handle)
{
    struct vgpu_reactor_async *a = (struct vgpu_reactor_async *)handle;
    a->fn(a->data);
}

struct vgpu_reactor_async *vgpu_reactor_async_create(struct vgpu_reactor *r, void (*fn)(void *),
                                                     void *data)
{
    struct vgpu_reactor_async *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->fn = fn;
    a->data = data;
    if (uv_async_init(&r->loop, &a->handle, on_async) < 0) {
        free(a);
        return NULL;
    }
    /* Like signals, the wake-up alone must not keep the loop running. */
    uv_unref((uv_handle_t *)&a->handle);
    return a;
}

void vgpu_reactor_async_send(struct vgpu_reactor_async *a)
{
    uv_async_send(&a->handle);
}

void vgpu_reactor_async_destroy(struct vgpu_reactor_async *a)
{
    if (a)
        uv_close((uv_handle_t *)&a->handle, free_on_close);
}

struct vgpu_reactor *vgpu_reactor_create(void)
{
    struct vgpu_reactor *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (uv_loop_init(&r->loop) < 0) {
        free(r);
        return NULL;
    }
    r->watcher = (struct vgpu_watcher){
        .watch = watcher_watch,
        .unwatch = watcher_unwatch,
        .ctx = r,
    };
    return r;
}

int vgpu_reactor_run(struct vgpu_reactor *r)
{
    int ret = uv_run(&r->loop, UV_RUN_DEFAULT);
    (void)ret;
    return 0;
}

void vgpu_reactor_stop(struct vgpu_reactor *r)
{
    uv_stop(&r->loop);
}

void vgpu_reactor_destroy(struct vgpu_reactor *r)
{
    if (!r)
        return;
    for (unsigned int fd = 0; fd < r->nwatches_cap; fd++)
        vgpu_reactor_unwatch(r, (int)fd);
    for (unsigned int i = 0; i < r->nsigs; i++)
        uv_close((uv_handle_t *)&r->sigs[i].handle, NULL);
    /* Let the close callbacks run, then the loop can close. */
    uv_run(&r->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&r->loop) < 0)
        vgpu_warn("event loop closed with live handles");
    free(r->watches);
    free(r);
}
