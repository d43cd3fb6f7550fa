/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_GPU_DEV_H
#define VGPU_VIRTIO_GPU_DEV_H

#include <stdint.h>

#include "virtio/vu_dev.h"

/*
 * The virtio-gpu device model of one session (virtio 1.2 section 5.7), reactor side: pops the
 * control and cursor queues, decodes and validates every command against its own view of the
 * resources (ids, sizes, backing), answers what needs no rendering, hands the rest to the
 * render thread in order, and writes the responses when they come back. Also owns the QEMU
 * display socket (GPU_SET_SOCKET) and feeds it the render thread's presentation events.
 *
 * Threading: reactor thread.
 */

#define VGPU_GPU_MAX_OUTPUTS 16u
#define VGPU_GPU_QUEUE_CONTROL 0u
#define VGPU_GPU_QUEUE_CURSOR 1u
/* 3D context ids the guest may use: 1..VGPU_GPU_MAX_CTX_ID (Linux allocates them from 1 up). */
#define VGPU_GPU_MAX_CTX_ID 4096u

struct vgpu_render;

struct vgpu_gpu_options {
    unsigned int outputs; /* 1..VGPU_GPU_MAX_OUTPUTS */
    struct {
        uint32_t width;
        uint32_t height;
    } size[VGPU_GPU_MAX_OUTPUTS];
    uint64_t max_hostmem;            /* bytes of host memory one guest may make us hold */
    unsigned int max_resources;      /* resources one guest may have at once */
    unsigned int max_contexts;       /* 3D contexts one guest may have at once */
    unsigned int display_timeout_ms; /* wait for a QEMU display reply at most this long */
};

/* Defaults: one 1280x800 output, 256 MiB host memory, 4096 resources, 64 contexts. */
void vgpu_gpu_options_init(struct vgpu_gpu_options *opts);

struct vgpu_gpu_dev;

/*
 * Creates the device for session dev and plugs it in (vgpu_vu_dev_set_device); it is destroyed
 * by vgpu_vu_dev_destroy. render is the process's render thread (not owned), which serves one
 * session at a time; when it runs virglrenderer the device offers 3D (VIRGL, CONTEXT_INIT and
 * its capsets). Returns NULL on allocation failure.
 */
struct vgpu_gpu_dev *vgpu_gpu_dev_attach(struct vgpu_vu_dev *dev,
                                         const struct vgpu_gpu_options *opts,
                                         struct vgpu_render *render);

/* The render thread has queued completions or events: handle them all. */
void vgpu_gpu_dev_process_completions(struct vgpu_gpu_dev *g);

#endif
