/* SPDX-License-Identifier: MIT */
#include "virtio/gpu_dev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/virtio_gpu.h>

#include "util/log.h"
#include "virtio/iov.h"

struct vgpu_gpu_dev {
    struct vgpu_vu_dev *vu;
    struct vgpu_gpu_options opts;
    struct virtio_gpu_config config;
    int display_fd;
    struct vgpu_chain chain; /* reused for every pop */
};

void vgpu_gpu_options_init(struct vgpu_gpu_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->outputs = 1;
    for (unsigned int i = 0; i < VGPU_GPU_MAX_OUTPUTS; i++) {
        opts->size[i].width = 1280;
        opts->size[i].height = 800;
    }
}

static void gpu_destroy(void *opaque)
{
    struct vgpu_gpu_dev *g = opaque;
    if (g->display_fd >= 0)
        close(g->display_fd);
    vgpu_chain_finish(&g->chain);
    free(g);
}

static uint64_t gpu_get_features(void *opaque)
{
    /* Device-specific bits (EDID, VIRGL, ...) arrive with the commands that back them. */
    return 0;
}

static int gpu_set_features(void *opaque, uint64_t features)
{
    return 0;
}

static int gpu_get_config(void *opaque, uint8_t *buf, uint32_t offset, uint32_t len)
{
    struct vgpu_gpu_dev *g = opaque;
    memcpy(buf, (const uint8_t *)&g->config + offset, len);
    return 0;
}

static int gpu_set_config(void *opaque, const uint8_t *buf, uint32_t offset, uint32_t len)
{
    struct vgpu_gpu_dev *g = opaque;
    const uint32_t clear_off = offsetof(struct virtio_gpu_config, events_clear);
    /* Only events_clear is writable: write-1-to-clear bits of events_read. */
    if (offset <= clear_off && offset + len >= clear_off + sizeof(uint32_t)) {
        uint32_t clear;
        memcpy(&clear, buf + (clear_off - offset), sizeof(clear));
        g->config.events_read &= ~clear;
    }
    return 0;
}

static void gpu_set_display_socket(void *opaque, int fd)
{
    struct vgpu_gpu_dev *g = opaque;
    /* QEMU sends a new socket at every DRIVER_OK: the old one is dead, replace it. */
    if (g->display_fd >= 0) {
        vgpu_info("display socket replaced");
        close(g->display_fd);
    }
    g->display_fd = fd;
}

/* Writes resp into the chain's device-writable part; returns the bytes written. */
static uint32_t write_response(struct vgpu_chain *c, const void *resp, size_t len)
{
    const struct iovec *iov = vgpu_chain_iov(c) + c->out_num;
    return (uint32_t)vgpu_iov_from_buf(iov, c->in_num, 0, resp, len);
}

static uint32_t handle_control(struct vgpu_gpu_dev *g, struct vgpu_chain *c)
{
    struct virtio_gpu_ctrl_hdr req = {0};
    size_t got = vgpu_iov_to_buf(vgpu_chain_iov(c), c->out_num, 0, &req, sizeof(req));
    struct virtio_gpu_ctrl_hdr resp = {0};

    if (got < sizeof(req)) {
        vgpu_warn("control: request of %zu bytes is shorter than its header", got);
        memset(&req, 0, sizeof(req));
    }
    vgpu_dbg("control: command 0x%x flags 0x%x fence %llu", req.type, req.flags,
             (unsigned long long)req.fence_id);

    /* No command is implemented yet: the spec's error answer, with the fence echoed. */
    resp.type = VIRTIO_GPU_RESP_ERR_UNSPEC;
    if (req.flags & VIRTIO_GPU_FLAG_FENCE) {
        resp.flags = VIRTIO_GPU_FLAG_FENCE;
        resp.fence_id = req.fence_id;
        resp.ctx_id = req.ctx_id;
    }
    if (c->in_bytes < sizeof(resp)) {
        vgpu_warn("control: command 0x%x: response buffer of %llu bytes is too small", req.type,
                  (unsigned long long)c->in_bytes);
        return 0;
    }
    return write_response(c, &resp, sizeof(resp));
}

static uint32_t handle_cursor(struct vgpu_gpu_dev *g, struct vgpu_chain *c)
{
    struct virtio_gpu_update_cursor cmd;
    size_t got = vgpu_iov_to_buf(vgpu_chain_iov(c), c->out_num, 0, &cmd, sizeof(cmd));
    if (got < sizeof(cmd))
        vgpu_warn("cursor: request of %zu bytes, expected %zu", got, sizeof(cmd));
    else
        vgpu_dbg("cursor: command 0x%x", cmd.hdr.type);
    /* Cursor commands have no response. */
    return 0;
}

static void gpu_queue_kick(void *opaque, unsigned int q)
{
    struct vgpu_gpu_dev *g = opaque;
    struct vgpu_vring *vr = vgpu_vu_dev_vring(g->vu, q);
    bool pushed = false;

    for (;;) {
        int r = vgpu_vring_pop(vr, &g->chain);
        if (r == -EAGAIN || r == -EPROTO)
            break;
        uint32_t len = 0;
        if (r == 0)
            len = q == VGPU_GPU_QUEUE_CONTROL ? handle_control(g, &g->chain)
                                              : handle_cursor(g, &g->chain);
        /* A refused chain (-EINVAL) goes back unanswered so the driver can reclaim it. */
        vgpu_vring_push(vr, g->chain.head, len);
        pushed = true;
    }
    /* One interrupt per batch, not per command. */
    if (pushed)
        vgpu_vu_dev_notify(g->vu, q);
}

static void gpu_queue_stop(void *opaque, unsigned int q)
{
    /* Commands complete synchronously: nothing is in flight. */
}

static void gpu_reset(void *opaque)
{
    struct vgpu_gpu_dev *g = opaque;
    g->config.events_read = 0;
    g->config.events_clear = 0;
}

static const struct vgpu_vu_device gpu_device = {
    .destroy = gpu_destroy,
    .get_features = gpu_get_features,
    .set_features = gpu_set_features,
    .config_size = sizeof(struct virtio_gpu_config),
    .get_config = gpu_get_config,
    .set_config = gpu_set_config,
    .set_display_socket = gpu_set_display_socket,
    .queue_kick = gpu_queue_kick,
    .queue_stop = gpu_queue_stop,
    .reset = gpu_reset,
};

struct vgpu_gpu_dev *vgpu_gpu_dev_attach(struct vgpu_vu_dev *vu,
                                         const struct vgpu_gpu_options *opts)
{
    struct vgpu_gpu_dev *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->vu = vu;
    g->opts = *opts;
    g->display_fd = -1;
    g->config.num_scanouts = opts->outputs;
    g->config.num_capsets = 0;
    vgpu_chain_init(&g->chain);
    vgpu_vu_dev_set_device(vu, &gpu_device, g);
    return g;
}
