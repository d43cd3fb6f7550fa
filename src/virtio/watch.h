/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_WATCH_H
#define VGPU_VIRTIO_WATCH_H

/*
 * How protocol code asks the event loop to watch file descriptors, without knowing the loop
 * (libvhost-user's set_watch/remove_watch, implemented by src/reactor/ with uv_poll).
 */

enum {
    VGPU_EV_READ = 1,  /* equals UV_READABLE (checked in reactor.c) */
    VGPU_EV_WRITE = 2, /* equals UV_WRITABLE */
};

typedef void (*vgpu_watch_fn)(void *data, int fd, unsigned int events);

struct vgpu_watcher {
    /* Starts watching fd (not owned). Returns 0, -EEXIST if fd is watched, or -errno. */
    int (*watch)(void *ctx, int fd, unsigned int events, vgpu_watch_fn fn, void *data);
    /* Stops watching fd. Safe from within fd's own callback. Call before closing fd. */
    void (*unwatch)(void *ctx, int fd);
    void *ctx;
};

#endif
