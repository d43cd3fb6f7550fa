/* SPDX-License-Identifier: MIT */
#ifndef VGPU_REACTOR_SERVER_H
#define VGPU_REACTOR_SERVER_H

#include <stdbool.h>

#include "reactor/reactor.h"
#include "virtio/gpu_dev.h"

/*
 * The vhost-user endpoint: a listening socket (from --socket-path or an inherited --fd) that
 * serves one front-end at a time and waits for the next after a disconnect, or a single
 * inherited connected socket (--fd), after whose end the reactor stops.
 *
 * Threading: reactor thread.
 */

struct vgpu_server_options {
    const char *socket_path; /* listen here, or NULL */
    int fd;                  /* inherited socket (listening or connected), or -1 */
    bool virgl;              /* 3D through virglrenderer; it must start before we serve */
    const char *render_node; /* with virgl: this DRM render node, or NULL to look for one */
    struct vgpu_gpu_options gpu;
};

struct vgpu_server;

/*
 * Starts the render thread (with virgl: virglrenderer, failing here if it cannot start), then
 * sets up the endpoint and starts watching it. With socket_path, a stale socket file is
 * replaced; a path a live process serves (-EADDRINUSE) or that is not a socket (-EEXIST) is
 * refused. Returns NULL and sets *err (a negative errno) on failure, after logging why.
 */
struct vgpu_server *vgpu_server_create(struct vgpu_reactor *r,
                                       const struct vgpu_server_options *opts, int *err);

/* Ends the session, closes the listener and removes the socket file we created. NULL ok. */
void vgpu_server_destroy(struct vgpu_server *s);

#endif
