/* SPDX-License-Identifier: MIT */
#ifndef VGPU_REACTOR_REACTOR_H
#define VGPU_REACTOR_REACTOR_H

#include "virtio/watch.h"

/*
 * The event loop: one libuv loop that owns every watch on every fd (the vhost-user socket,
 * kick eventfds, the display socket) and the signal handlers. Nothing run from it blocks.
 *
 * Threading: every function runs on the reactor thread (the one calling vgpu_reactor_run),
 * except vgpu_reactor_create before the loop runs.
 */

struct vgpu_reactor;

typedef void (*vgpu_signal_fn)(void *data, int signum);

/* Creates the loop. Returns NULL on failure. */
struct vgpu_reactor *vgpu_reactor_create(void);

/* Closes every handle, runs the loop until their close callbacks ran, frees it. NULL ok. */
void vgpu_reactor_destroy(struct vgpu_reactor *r);

/* Watches fd (not owned) for VGPU_EV_* events. 0, -EEXIST if already watched, -errno. */
int vgpu_reactor_watch(struct vgpu_reactor *r, int fd, unsigned int events, vgpu_watch_fn fn,
                       void *data);

/* Stops watching fd; safe from inside fd's own callback. No-op if fd is not watched. */
void vgpu_reactor_unwatch(struct vgpu_reactor *r, int fd);

/* The watch interface for protocol code (src/virtio/watch.h), bound to r. */
const struct vgpu_watcher *vgpu_reactor_watcher(struct vgpu_reactor *r);

/* Calls fn on the loop when signum arrives. 0 or -errno. */
int vgpu_reactor_on_signal(struct vgpu_reactor *r, int signum, vgpu_signal_fn fn, void *data);

/*
 * A wake-up other threads can send (uv_async): fn runs on the loop. Sends coalesce, so fn must
 * handle everything that is pending, not one item.
 */
struct vgpu_reactor_async;
struct vgpu_reactor_async *vgpu_reactor_async_create(struct vgpu_reactor *r, void (*fn)(void *),
                                                     void *data);
/* Any thread. */
void vgpu_reactor_async_send(struct vgpu_reactor_async *a);
/* Reactor thread; the handle is freed once the loop has closed it. NULL ok. */
void vgpu_reactor_async_destroy(struct vgpu_reactor_async *a);

/* Runs until vgpu_reactor_stop. Returns 0 or -errno. */
int vgpu_reactor_run(struct vgpu_reactor *r);

/* Makes vgpu_reactor_run return after the current callback. */
void vgpu_reactor_stop(struct vgpu_reactor *r);

/* Number of fds currently watched (for tests and leak checks). */
unsigned int vgpu_reactor_num_watches(const struct vgpu_reactor *r);

#endif
