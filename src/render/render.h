/* SPDX-License-Identifier: MIT */
#ifndef VGPU_RENDER_RENDER_H
#define VGPU_RENDER_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "render/cmd.h"

/*
 * The render thread: owns resource pixels (and, with 3D, GL and virglrenderer), runs 2D
 * copies, and turns flushes into frames for the presenters. Commands arrive on a lock-free
 * single-producer/single-consumer ring from the reactor; completions and presentation events
 * leave on a second one. The only other links are an eventfd that wakes the render thread and
 * the notify callback that wakes the reactor (a uv_async_send).
 *
 * Functions marked "reactor" must only be called from the one reactor thread.
 */

struct vgpu_render_options {
    /* Called on the render thread after it queued completions or events; must be
     * thread-safe and cheap (it is uv_async_send in the daemon). */
    void (*notify)(void *data);
    void *notify_data;
    unsigned int ring_size; /* commands in flight at most (power of two); 0: 256 */
    /* 3D through virglrenderer, initialised on the render thread before create returns. */
    bool virgl;
    const char *render_node; /* with virgl: this DRM render node, or NULL to look for one */
};

/* What the render thread can do, as found at start-up. */
#define VGPU_RENDER_MAX_CAPSETS 4u
struct vgpu_render_caps {
    bool virgl; /* 3D commands are served */
    unsigned int ncapsets;
    struct {
        uint32_t id, max_version, max_size;
    } capsets[VGPU_RENDER_MAX_CAPSETS]; /* those virglrenderer really serves, by id */
};

struct vgpu_render;

/*
 * Starts the render thread. With opts->virgl it first initialises virglrenderer there and
 * waits for the outcome. Returns NULL on failure (logged).
 */
struct vgpu_render *vgpu_render_create(const struct vgpu_render_options *opts);

/* What it can do (fixed after create). Any thread. */
void vgpu_render_get_caps(const struct vgpu_render *r, struct vgpu_render_caps *caps);

/* Stops and joins the thread, then frees every resource and frame. NULL ok. Reactor. */
void vgpu_render_destroy(struct vgpu_render *r);

/* Reactor: how many more commands fit in the ring now. */
unsigned int vgpu_render_free_slots(struct vgpu_render *r);

/* Reactor: hands cmd to the render thread. False (cmd still ours) when the ring is full. */
bool vgpu_render_submit(struct vgpu_render *r, struct vgpu_rcmd *cmd);

/* Reactor: wakes the render thread after a batch of submissions. */
void vgpu_render_kick(struct vgpu_render *r);

/* Reactor: next completed command or event, or NULL. The caller owns it. */
struct vgpu_rmsg *vgpu_render_next(struct vgpu_render *r);

/*
 * Reactor: blocks up to timeout_ms until the render thread has queued something new (or
 * already has). Used only for the bounded drains at ring stop, memory change and session end.
 * Returns 0, or -ETIMEDOUT.
 */
int vgpu_render_wait(struct vgpu_render *r, int timeout_ms);

/* Reactor: gives a frame from a VGPU_PEVENT_FRAME back; the next damage can then go out. */
void vgpu_render_return_frame(struct vgpu_render *r, struct vgpu_frame *frame);

/* Test hook: resources the render thread holds right now (approximate, any thread). */
unsigned int vgpu_render_num_resources(struct vgpu_render *r);

#endif
