/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_VU_DEV_H
#define VGPU_VIRTIO_VU_DEV_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio/guest_mem.h"
#include "virtio/vring.h"
#include "virtio/watch.h"

/*
 * One vhost-user session: the front-end's socket, negotiated features, guest memory, the
 * virtqueues with their kick/call/err eventfds, and the device model behind them. Handlers
 * follow docs/interop/vhost-user.rst; a device (gpu_dev) plugs in through vgpu_vu_device.
 *
 * Threading: reactor thread only.
 */

#define VGPU_VU_NUM_QUEUES 2u
#define VGPU_VU_MAX_MEM_SLOTS 32u

struct vgpu_vu_dev;

/* What a device model provides to the session. All callbacks run on the reactor thread. */
struct vgpu_vu_device {
    /* Releases the device; called first by vgpu_vu_dev_destroy, while memory is still mapped. */
    void (*destroy)(void *opaque);
    /* Device-specific feature bits offered in GET_FEATURES. */
    uint64_t (*get_features)(void *opaque);
    /* The acked features (all bits). Returns 0 or -EINVAL to refuse. */
    int (*set_features)(void *opaque, uint64_t features);
    /* Config space access; the range is already checked against config_size. 0 or -errno. */
    uint32_t config_size;
    int (*get_config)(void *opaque, uint8_t *buf, uint32_t offset, uint32_t len);
    int (*set_config)(void *opaque, const uint8_t *buf, uint32_t offset, uint32_t len);
    /* GPU_SET_SOCKET: takes ownership of fd. */
    void (*set_display_socket)(void *opaque, int fd);
    /* Queue q has work (kicked, started or enabled): pop, handle, push, vgpu_vu_dev_notify. */
    void (*queue_kick)(void *opaque, unsigned int q);
    /* Queue q is about to stop (GET_VRING_BASE, reset, disconnect). */
    void (*queue_stop)(void *opaque, unsigned int q);
    /* RESET_DEVICE / RESET_OWNER: back to the initial device state. */
    void (*reset)(void *opaque);
    /* Guest memory is about to be unmapped or replaced: finish every use of it first. */
    void (*mem_barrier)(void *opaque);
    /* The memory table changed (after mem_barrier, whether or not the change succeeded, and
     * after a region was added): re-translate what must keep pointing into guest memory. */
    void (*mem_changed)(void *opaque);
};

/*
 * Creates a session on a connected, non-blocking socket (ownership of sock passes to the
 * session). watcher must outlive the session. Returns NULL on allocation failure (sock is then
 * closed).
 */
struct vgpu_vu_dev *vgpu_vu_dev_create(int sock, const struct vgpu_watcher *watcher);

/* Plugs in the device model. Must be called once, before the first message. */
void vgpu_vu_dev_set_device(struct vgpu_vu_dev *dev, const struct vgpu_vu_device *impl,
                            void *opaque);

/*
 * Tears the session down: device first, then rings (unwatching and closing every eventfd),
 * memory, the backend channel and the socket. The caller must have stopped watching the
 * socket. NULL is a no-op.
 */
void vgpu_vu_dev_destroy(struct vgpu_vu_dev *dev);

int vgpu_vu_dev_socket(const struct vgpu_vu_dev *dev);

/*
 * Reads and handles every complete message waiting on the socket. Returns 0 while the session
 * goes on, -ECONNRESET when the front-end closed it, -EPROTO for a malformed message or a
 * failed reply: the caller then destroys the session.
 */
int vgpu_vu_dev_handle_socket(struct vgpu_vu_dev *dev);

/* For the device model. */
struct vgpu_vring *vgpu_vu_dev_vring(struct vgpu_vu_dev *dev, unsigned int q);
struct vgpu_guest_mem *vgpu_vu_dev_mem(struct vgpu_vu_dev *dev);
/* Whether queue q is started, enabled and not broken. */
bool vgpu_vu_dev_queue_ready(const struct vgpu_vu_dev *dev, unsigned int q);
/* Signals the call eventfd of q if the driver wants an interrupt for what was pushed. */
void vgpu_vu_dev_notify(struct vgpu_vu_dev *dev, unsigned int q);
uint64_t vgpu_vu_dev_features(const struct vgpu_vu_dev *dev);
bool vgpu_vu_dev_has_feature(const struct vgpu_vu_dev *dev, unsigned int bit);
bool vgpu_vu_dev_has_protocol_feature(const struct vgpu_vu_dev *dev, unsigned int bit);
/* The watch interface the session was created with (for the device's own fds). */
const struct vgpu_watcher *vgpu_vu_dev_watcher(const struct vgpu_vu_dev *dev);
/* The backend request channel (SET_BACKEND_REQ_FD), or -1. Owned by the session. */
int vgpu_vu_dev_backend_fd(const struct vgpu_vu_dev *dev);

#endif
