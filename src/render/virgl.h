/* SPDX-License-Identifier: MIT */
#ifndef VGPU_RENDER_VIRGL_H
#define VGPU_RENDER_VIRGL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "render/cmd.h"

/*
 * A thin wrapper around virglrenderer (0.10.4 on Debian 12), the only file that includes its
 * header. It exists for three reasons:
 *   - virglrenderer returns EINVAL, -EINVAL and -1 for errors depending on the call; every
 *     function here returns 0 or a negative errno;
 *   - the unstable API (per-context fences, callbacks version 3) stays behind one door;
 *   - the library keeps process-global state and silently does nothing (zeros read, writes
 *     lost) or crashes when called from a thread other than the one that initialised it, so
 *     there is exactly one owner: the render thread.
 *
 * Threading: every function must be called on the thread that called vgpu_virgl_init (the
 * render thread), and only between vgpu_virgl_init and vgpu_virgl_finish. The callbacks run
 * on that thread too, from inside vgpu_virgl_poll.
 */

struct vgpu_virgl_ops {
    /* A global-timeline fence created with vgpu_virgl_create_fence has signalled; every
     * earlier one has too. */
    void (*fence)(void *data, uint32_t fence_id);
    /* A context fence (vgpu_virgl_context_create_fence) has signalled. */
    void (*context_fence)(void *data, uint32_t ctx_id, uint64_t fence_id);
};

/* One capability set virglrenderer serves (VIRTIO_GPU_CAPSET_*). */
struct vgpu_virgl_capset {
    uint32_t id, max_version, max_size;
};

/*
 * Initialises virglrenderer with its own EGL: on the DRM render node render_node through GBM,
 * or, when render_node is NULL, on Mesa's surfaceless platform (works without any /dev/dri),
 * always with a sync thread whose eventfd vgpu_virgl_poll_fd returns. ops and data are kept.
 * Returns 0, -EALREADY if already initialised, or -EIO when virglrenderer refused (it logs
 * why through vgpu_log at debug level only: run with --log-level debug to see it).
 */
int vgpu_virgl_init(const char *render_node, const struct vgpu_virgl_ops *ops, void *data);

/* Destroys everything virglrenderer holds and tears it down. No-op if not initialised. */
void vgpu_virgl_finish(void);

/* The sync thread's eventfd: readable when fences may have signalled; then call
 * vgpu_virgl_poll. -1 if there is none. */
int vgpu_virgl_poll_fd(void);
/* Reports signalled fences through the ops, on this thread. */
void vgpu_virgl_poll(void);

/*
 * Fills out[0..max) with the capsets that are really enabled (a version and a size above 0),
 * in id order, and returns how many there are.
 */
unsigned int vgpu_virgl_capsets(struct vgpu_virgl_capset *out, unsigned int max);
/* Writes capset id's data for version at buf, which holds its max_size bytes. */
void vgpu_virgl_fill_caps(uint32_t id, uint32_t version, void *buf);

struct vgpu_virgl_resource {
    uint32_t id, target, format, bind, width, height, depth, array_size, last_level, nr_samples,
        flags;
};

int vgpu_virgl_resource_create(const struct vgpu_virgl_resource *args);
void vgpu_virgl_resource_unref(uint32_t id);
/* A blob (VIRTIO_GPU_BLOB_MEM_*); iov, as for attach_iov, stays valid until detached or unref'd. */
int vgpu_virgl_resource_create_blob(uint32_t id, uint32_t ctx_id, uint32_t blob_mem,
                                    uint32_t blob_flags, uint64_t blob_id, uint64_t size,
                                    struct iovec *iov, unsigned int niov);
/* iov must stay valid until it is detached or the resource unref'd: virglrenderer keeps it. */
int vgpu_virgl_resource_attach_iov(uint32_t id, struct iovec *iov, unsigned int niov);
void vgpu_virgl_resource_detach_iov(uint32_t id);
/* The resource's flags as virglrenderer keeps them (bit 0: Y_0_TOP); -EINVAL if unknown. */
int vgpu_virgl_resource_flags(uint32_t id, uint32_t *flags);

/* Transfers box of level between the resource and iov (NULL: its attached backing). */
int vgpu_virgl_transfer(bool to_host, uint32_t res_id, uint32_t ctx_id, uint32_t level,
                        uint32_t stride, uint32_t layer_stride, const struct vgpu_box *box,
                        uint64_t offset, struct iovec *iov, unsigned int niov);

/* capset_id 0 means virglrenderer's default (VIRGL2). */
int vgpu_virgl_context_create(uint32_t ctx_id, uint32_t capset_id, uint32_t nlen, const char *name);
void vgpu_virgl_context_destroy(uint32_t ctx_id);
void vgpu_virgl_context_attach(uint32_t ctx_id, uint32_t res_id);
void vgpu_virgl_context_detach(uint32_t ctx_id, uint32_t res_id);
/* buf holds ndw 32-bit words, 4-byte aligned. */
int vgpu_virgl_submit(uint32_t ctx_id, void *buf, uint32_t ndw);

/*
 * Makes virglrenderer's own context (ctx0) current, flushing the one that last rendered, as
 * QEMU does before every command: ctx0 operations (resource creation, transfers and reads
 * without a context) then see what the guest's contexts drew.
 */
void vgpu_virgl_force_ctx0(void);

/* Global timeline: fences signal in creation order. */
int vgpu_virgl_create_fence(uint32_t fence_id);
/* On the context's own timeline (ring 0: virglrenderer's GL contexts have no other). */
int vgpu_virgl_context_create_fence(uint32_t ctx_id, uint64_t fence_id);

#endif
