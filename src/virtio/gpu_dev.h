/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_GPU_DEV_H
#define VGPU_VIRTIO_GPU_DEV_H

#include <stdint.h>

#include "virtio/vu_dev.h"

/*
 * The virtio-gpu device model of one session (virtio 1.2 section 5.7): two queues (control,
 * cursor), the config space, and the display socket from GPU_SET_SOCKET.
 *
 * Threading: reactor thread.
 */

#define VGPU_GPU_MAX_OUTPUTS 16u
#define VGPU_GPU_QUEUE_CONTROL 0u
#define VGPU_GPU_QUEUE_CURSOR 1u

struct vgpu_gpu_options {
    unsigned int outputs; /* 1..VGPU_GPU_MAX_OUTPUTS */
    struct {
        uint32_t width;
        uint32_t height;
    } size[VGPU_GPU_MAX_OUTPUTS];
};

/* Default options: one 1280x800 output (QEMU's default size). */
void vgpu_gpu_options_init(struct vgpu_gpu_options *opts);

struct vgpu_gpu_dev;

/*
 * Creates the device for session dev and plugs it in (vgpu_vu_dev_set_device); it is destroyed
 * by vgpu_vu_dev_destroy. Returns NULL on allocation failure.
 */
struct vgpu_gpu_dev *vgpu_gpu_dev_attach(struct vgpu_vu_dev *dev,
                                         const struct vgpu_gpu_options *opts);

#endif
