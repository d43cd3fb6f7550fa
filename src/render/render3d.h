/* SPDX-License-Identifier: MIT */
#ifndef VGPU_RENDER_RENDER3D_H
#define VGPU_RENDER_RENDER3D_H

#include <stdbool.h>
#include <stdint.h>

#include "render/cmd.h"
#include "render/virgl.h"

/*
 * The render thread's 3D state with --virgl: virglrenderer resources (2D ones included, as
 * QEMU does: a 2D resource is a render-target texture), contexts, the attached guest backing,
 * and the fence timelines that hold fenced commands until virglrenderer signals them.
 *
 * Fences: a command with VIRTIO_GPU_FLAG_FENCE completes when its fence signals. Without
 * VIRTIO_GPU_FLAG_INFO_RING_IDX it sits on the one global timeline (virglrenderer's ctx0
 * fences, 32-bit ids of our own); with it, on its context's timeline (a context fence with a
 * 64-bit id of our own). virglrenderer's GL contexts have a single ring, so one timeline per
 * context serves every ring_idx of it: completing in submission order per context also
 * completes each ring in order. Ids are ours, never the guest's: a guest that reuses or
 * reorders fence ids cannot make a command complete early. A fenced command that failed gets
 * no fence but still waits for those before it on its timeline, so the guest sees its
 * timelines complete in order.
 *
 * Threading: render thread only, like virglrenderer itself (vgpu_r3d_create initialises it
 * on the calling thread).
 */

#define VGPU_R3D_MAX_CAPSETS 4u

struct vgpu_r3d;

/* Called when a command is complete (now or when its fence signals): it goes back. */
typedef void (*vgpu_r3d_done_fn)(void *data, struct vgpu_rcmd *c);

/*
 * Initialises virglrenderer: on render_node when given (failure is an error), else on the
 * first /dev/dri/renderD* node that works, else surfaceless (no GPU needed). Logs why it
 * failed. Returns NULL on failure.
 */
struct vgpu_r3d *vgpu_r3d_create(const char *render_node, vgpu_r3d_done_fn done, void *data);

/* Destroys every context and resource, then virglrenderer. Commands still waiting for a fence
 * are dropped (the caller drained them). NULL ok. */
void vgpu_r3d_destroy(struct vgpu_r3d *d);

/* The capsets virglrenderer really serves, with their versions and sizes. */
unsigned int vgpu_r3d_capsets(const struct vgpu_r3d *d, struct vgpu_virgl_capset *out,
                              unsigned int max);

/* An fd to poll for readability next to the command wake-up, then call vgpu_r3d_poll. */
int vgpu_r3d_poll_fd(const struct vgpu_r3d *d);
void vgpu_r3d_poll(struct vgpu_r3d *d);

/*
 * Runs one 3D-mode operation (CREATE_2D, UNREF, the backing ops, the context ops, CREATE_3D,
 * TRANSFER_3D, SUBMIT_3D, GET_CAPSET) and returns the VIRTIO_GPU_RESP_* it earned. The
 * command is not completed: pass it to vgpu_r3d_complete afterwards.
 */
uint32_t vgpu_r3d_run(struct vgpu_r3d *d, struct vgpu_rcmd *c);

/* Completes c through the done callback: now, or when its fence signals (see above). */
void vgpu_r3d_complete(struct vgpu_r3d *d, struct vgpu_rcmd *c);

/* Destroys every context and resource of the session (completing what still waits). */
void vgpu_r3d_reset(struct vgpu_r3d *d);

/*
 * For scanouts and the cursor: whether resource id exists, its size (level 0), and the
 * virtio-gpu 2D format its bytes are in (0 when it cannot be shown: not a 2D texture, or not
 * one of the eight 32-bit layouts the presenters convert).
 */
bool vgpu_r3d_resource(const struct vgpu_r3d *d, uint32_t id, uint32_t *width, uint32_t *height,
                       uint32_t *format);

/*
 * Reads the w x h rectangle at (x, y) of level 0, layer 0 back into dst (w * 4 bytes per row,
 * rows top to bottom as the guest sees them), in the resource's own format. 0 or -errno.
 */
int vgpu_r3d_read(struct vgpu_r3d *d, uint32_t id, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
                  uint8_t *dst);

/* Resources held right now (any thread, approximate). */
unsigned int vgpu_r3d_num_resources(const struct vgpu_r3d *d);

#endif
