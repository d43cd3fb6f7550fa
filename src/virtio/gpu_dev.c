/* SPDX-License-Identifier: MIT */
#include "virtio/gpu_dev.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <linux/virtio_gpu.h>

#include "present/vhost_display.h"
#include "render/pixel.h"
#include "render/render.h"
#include "util/idmap.h"
#include "util/log.h"
#include "virtio/edid.h"
#include "virtio/iov.h"

#define BIT(n) (1ull << (n))
#define BPP 4u
/* QEMU's backend refuses more; a 4K framebuffer in 4 KiB pages needs ~8100 entries. */
#define MAX_BACKING_ENTRIES 16384u
#define DRAIN_WARN_MS 2000

/* The reactor's view of one resource: what validation needs, never the pixels. */
struct res_meta {
    uint32_t id;
    uint32_t format;
    uint32_t width, height;
    uint64_t serial; /* tells this resource from a later one with the same id */
    uint64_t bytes;  /* host bytes charged to the guest (pixels + backing tables) */
    struct virtio_gpu_mem_entry *entries; /* guest's backing list, NULL when detached */
    uint32_t nentries;
    struct iovec *iov; /* entries translated; redone when guest memory changes */
    unsigned int niov;
    uint64_t iov_generation;
    uint64_t backing_len;
    bool has_uuid;
    uint8_t uuid[16];
    /* 3D (CREATE_3D); a 2D resource in 3D mode is a 2D texture with depth 1, one layer. */
    bool is_3d;
    uint32_t target, depth, array_size, last_level;
    /* A guest-memory blob (RESOURCE_CREATE_BLOB): entries hold at least blob_size bytes. */
    bool is_blob;
    uint64_t blob_size;
};

/* The reactor's view of one 3D context. */
struct ctx_meta {
    uint32_t id;
    uint64_t serial; /* tells this context from a later one with the same id */
    bool lost;       /* destroyed by the render thread after a bad command stream */
};

struct display_req {
    struct vgpu_gpu_dev *g;
    struct vgpu_rcmd *cmd; /* NULL once answered some other way */
    uint32_t scanout;
};

struct vgpu_gpu_dev {
    struct vgpu_vu_dev *vu;
    struct vgpu_gpu_options opts;
    struct vgpu_render *render;
    struct virtio_gpu_config config;
    uint64_t features;

    struct vgpu_idmap *resources;
    uint64_t hostmem_used;
    uint64_t next_serial;

    /* 3D: what the render thread serves (virgl, capsets) and the guest's contexts. */
    struct vgpu_render_caps caps;
    struct vgpu_idmap *contexts;

    /* Display info as last known: our options, or QEMU's last reply. */
    struct virtio_gpu_resp_display_info display_info;
    bool qemu_display_info; /* display_info came from QEMU rather than our options */

    struct vgpu_vdisplay *display;
    struct display_req *waiting; /* a control command waiting for a QEMU reply */

    struct vgpu_rcmd *free_cmds; /* pool of unused commands */
    unsigned int ncmds;          /* allocated in total */
    unsigned int inflight;       /* submitted and not yet completed */
    bool draining;
    bool destroying;
    bool notify_pending[VGPU_VU_NUM_QUEUES];
};

static void process(struct vgpu_gpu_dev *g);
static void queue_kick(void *opaque, unsigned int q);

/* --- options, pool ------------------------------------------------------------------------ */

void vgpu_gpu_options_init(struct vgpu_gpu_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->outputs = 1;
    for (unsigned int i = 0; i < VGPU_GPU_MAX_OUTPUTS; i++) {
        opts->size[i].width = 1280;
        opts->size[i].height = 800;
    }
    opts->max_hostmem = 256ull << 20;
    opts->max_resources = 4096;
    opts->max_contexts = 64;
    opts->display_timeout_ms = 2000;
}

static struct vgpu_rcmd *cmd_alloc(struct vgpu_gpu_dev *g)
{
    struct vgpu_rcmd *c = g->free_cmds;
    if (c) {
        g->free_cmds = c->next_free;
    } else {
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
        vgpu_chain_init(&c->chain);
        g->ncmds++;
    }
    struct vgpu_chain chain = c->chain; /* keep the chain's storage across uses */
    memset(c, 0, sizeof(*c));
    c->chain = chain;
    c->resp = c->resp_buf;
    return c;
}

static void cmd_free(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    if (c->resp != c->resp_buf)
        free(c->resp);
    if (c->op == VGPU_ROP_TRANSFER_2D)
        free(c->u.transfer.iov);
    if (c->op == VGPU_ROP_ATTACH_BACKING)
        free(c->u.backing.iov); /* NULL when the render thread took it */
    if (c->op == VGPU_ROP_SUBMIT_3D)
        free(c->u.submit.iov);
    if (c->op == VGPU_ROP_CREATE_BLOB)
        free(c->u.blob.iov); /* NULL when the render thread took it */
    if (c->op == VGPU_ROP_SET_SCANOUT_BLOB)
        free(c->u.scanout_blob.iov);
    if (c->op == VGPU_ROP_REATTACH) {
        for (unsigned int i = 0; i < c->u.reattach.n; i++)
            free(c->u.reattach.items[i].iov);
        free(c->u.reattach.items);
    }
    c->op = VGPU_ROP_NONE;
    c->next_free = g->free_cmds;
    g->free_cmds = c;
}

static void pool_destroy(struct vgpu_gpu_dev *g)
{
    while (g->free_cmds) {
        struct vgpu_rcmd *c = g->free_cmds;
        g->free_cmds = c->next_free;
        vgpu_chain_finish(&c->chain);
        free(c);
    }
}

/* --- responses ---------------------------------------------------------------------------- */

/* Prepares a response of len bytes (header included), zeroed. False if out of memory. */
static bool resp_prepare(struct vgpu_rcmd *c, uint32_t type, uint32_t len)
{
    if (len > sizeof(c->resp_buf)) {
        c->resp = calloc(1, len);
        if (!c->resp) {
            c->resp = c->resp_buf;
            len = sizeof(struct virtio_gpu_ctrl_hdr);
            type = VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
        }
    }
    memset(c->resp, 0, len < sizeof(c->resp_buf) ? sizeof(c->resp_buf) : len);
    c->resp_type = type;
    c->resp_len = len;
    return type == VIRTIO_GPU_RESP_OK_NODATA || type >= VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
}

static void resp_error(struct vgpu_rcmd *c, uint32_t type)
{
    if (c->resp != c->resp_buf) {
        free(c->resp);
        c->resp = c->resp_buf;
    }
    c->op = VGPU_ROP_NONE;
    resp_prepare(c, type, sizeof(struct virtio_gpu_ctrl_hdr));
}

static bool resp_is_error(uint32_t type)
{
    return type >= VIRTIO_GPU_RESP_ERR_UNSPEC;
}

/* The one place a response is finished and written: header, fence echo, guest memory. */
static uint32_t resp_write(struct vgpu_rcmd *c)
{
    if (c->queue != VGPU_GPU_QUEUE_CONTROL || c->resp_len == 0)
        return 0;
    uint32_t len = resp_is_error(c->resp_type) ? sizeof(struct virtio_gpu_ctrl_hdr) : c->resp_len;
    struct virtio_gpu_ctrl_hdr *h = (struct virtio_gpu_ctrl_hdr *)c->resp;
    h->type = c->resp_type;
    h->flags = 0;
    if (c->hdr.flags & VIRTIO_GPU_FLAG_FENCE) {
        h->flags |= VIRTIO_GPU_FLAG_FENCE;
        h->fence_id = c->hdr.fence_id;
        h->ctx_id = c->hdr.ctx_id;
        if (c->hdr.flags & VIRTIO_GPU_FLAG_INFO_RING_IDX) {
            h->flags |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
            h->ring_idx = c->hdr.ring_idx;
        }
    }
    if (c->chain.in_bytes < len) {
        vgpu_warn_guest("gpu: command 0x%x: response buffer of %llu bytes, need %u", c->hdr.type,
                        (unsigned long long)c->chain.in_bytes, len);
        return 0;
    }
    const struct iovec *iov = vgpu_chain_iov(&c->chain) + c->chain.out_num;
    return (uint32_t)vgpu_iov_from_buf(iov, c->chain.in_num, 0, c->resp, len);
}

/* --- resources (reactor view) ------------------------------------------------------------- */

static void meta_detach(struct vgpu_gpu_dev *g, struct res_meta *m)
{
    uint64_t table = (uint64_t)m->nentries * sizeof(*m->entries) + m->niov * sizeof(*m->iov);
    free(m->entries);
    free(m->iov);
    m->entries = NULL;
    m->iov = NULL;
    m->nentries = 0;
    m->niov = 0;
    m->backing_len = 0;
    m->bytes -= table;
    g->hostmem_used -= table;
}

static void meta_free(struct vgpu_gpu_dev *g, struct res_meta *m)
{
    meta_detach(g, m);
    g->hostmem_used -= m->bytes;
    free(m);
}

static void meta_free_cb(void *ctx, uint32_t id, void *value)
{
    meta_free(ctx, value);
}

/* Translates the guest's backing list into iovecs (again, if guest memory changed). */
static int meta_translate(struct vgpu_gpu_dev *g, struct res_meta *m)
{
    struct vgpu_guest_mem *mem = vgpu_vu_dev_mem(g->vu);
    uint64_t gen = vgpu_guest_mem_generation(mem);
    if (m->iov && m->iov_generation == gen)
        return 0;
    unsigned int max = m->nentries * 2u + 8u; /* entries may straddle region boundaries */
    struct iovec *iov = malloc(max * sizeof(*iov));
    if (!iov)
        return -ENOMEM;
    unsigned int n = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < m->nentries; i++) {
        int r = vgpu_guest_mem_gpa_iov(mem, m->entries[i].addr, m->entries[i].length, iov, max, &n);
        if (r < 0) {
            free(iov);
            return r == -ENOBUFS ? -ENOMEM : -EFAULT;
        }
        total += m->entries[i].length;
    }
    uint64_t old = m->niov * sizeof(*m->iov), now = n * sizeof(*iov);
    free(m->iov);
    m->iov = iov;
    m->niov = n;
    m->iov_generation = gen;
    m->backing_len = total;
    m->bytes = m->bytes - old + now;
    g->hostmem_used = g->hostmem_used - old + now;
    return 0;
}

/* Whether [x, x+w) x [y, y+h) lies inside a w_max x h_max resource (no overflow: u64). */
static bool rect_inside(const struct virtio_gpu_rect *r, uint32_t w_max, uint32_t h_max)
{
    return (uint64_t)r->x + r->width <= w_max && (uint64_t)r->y + r->height <= h_max;
}

static bool charge(struct vgpu_gpu_dev *g, uint64_t bytes)
{
    if (bytes > g->opts.max_hostmem || g->hostmem_used > g->opts.max_hostmem - bytes)
        return false;
    g->hostmem_used += bytes;
    return true;
}

/*
 * Registers a new resource described by proto (id, sizes, bytes to charge): checks the
 * guest's resource count and host-memory budget. Returns the entry, or NULL (logged) when
 * the guest is over a limit or we are out of memory: the guest gets ERR_OUT_OF_MEMORY.
 */
static struct res_meta *meta_add(struct vgpu_gpu_dev *g, const struct res_meta *proto)
{
    if (vgpu_idmap_count(g->resources) >= g->opts.max_resources) {
        vgpu_warn_guest("gpu: resource %u: the guest already has %u resources", proto->id,
                        g->opts.max_resources);
        return NULL;
    }
    struct res_meta *m = malloc(sizeof(*m));
    if (!m)
        return NULL;
    if (!charge(g, proto->bytes)) {
        vgpu_warn_guest("gpu: resource %u (%ux%u) exceeds the guest's host memory limit", proto->id,
                        proto->width, proto->height);
        free(m);
        return NULL;
    }
    *m = *proto;
    m->serial = ++g->next_serial;
    if (vgpu_idmap_insert(g->resources, m->id, m) < 0) {
        meta_free(g, m);
        return NULL;
    }
    return m;
}

/* --- display ------------------------------------------------------------------------------ */

static uint32_t scanout_limit(const struct vgpu_gpu_dev *g)
{
    /* QEMU owns num_scanouts when it shows the display (its max_outputs, up to 16). */
    return g->display ? VGPU_GPU_MAX_OUTPUTS : g->opts.outputs;
}

static void display_info_from_options(struct vgpu_gpu_dev *g)
{
    memset(&g->display_info, 0, sizeof(g->display_info));
    g->display_info.hdr.type = VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
    for (unsigned int i = 0; i < g->opts.outputs; i++) {
        g->display_info.pmodes[i].r.width = g->opts.size[i].width;
        g->display_info.pmodes[i].r.height = g->opts.size[i].height;
        g->display_info.pmodes[i].enabled = 1;
    }
}

static void fill_display_info(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    if (resp_prepare(c, VIRTIO_GPU_RESP_OK_DISPLAY_INFO, sizeof(g->display_info)))
        memcpy((uint8_t *)c->resp + sizeof(struct virtio_gpu_ctrl_hdr),
               (const uint8_t *)&g->display_info + sizeof(struct virtio_gpu_ctrl_hdr),
               sizeof(g->display_info) - sizeof(struct virtio_gpu_ctrl_hdr));
}

static void fill_edid(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c, uint32_t scanout)
{
    if (!resp_prepare(c, VIRTIO_GPU_RESP_OK_EDID, sizeof(struct virtio_gpu_resp_edid)))
        return;
    struct virtio_gpu_resp_edid *e = (struct virtio_gpu_resp_edid *)c->resp;
    uint32_t w = g->display_info.pmodes[scanout].r.width;
    uint32_t h = g->display_info.pmodes[scanout].r.height;
    if (!w || !h) {
        w = g->opts.size[scanout].width;
        h = g->opts.size[scanout].height;
    }
    e->size = (uint32_t)vgpu_edid_generate(e->edid, sizeof(e->edid), w, h, scanout);
}

static void submit(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c);

static void on_display_info(void *data, int status, const struct virtio_gpu_resp_display_info *info)
{
    struct display_req *req = data;
    struct vgpu_gpu_dev *g = req->g;
    if (status == 0) {
        g->display_info = *info;
        g->qemu_display_info = true;
        g->display_info.hdr.type = VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
    } else {
        vgpu_warn_guest("gpu: no display info from the front-end (%s): answering from our own",
                        strerror(-status));
    }
    if (req->cmd) {
        fill_display_info(g, req->cmd);
        submit(g, req->cmd);
        vgpu_render_kick(g->render);
    }
    if (g->waiting == req)
        g->waiting = NULL;
    free(req);
    if (!g->destroying && !g->waiting)
        queue_kick(g, VGPU_GPU_QUEUE_CONTROL);
}

static void on_edid(void *data, int status, const struct virtio_gpu_resp_edid *edid)
{
    struct display_req *req = data;
    struct vgpu_gpu_dev *g = req->g;
    if (req->cmd) {
        if (status == 0 && edid->size <= sizeof(edid->edid)) {
            if (resp_prepare(req->cmd, VIRTIO_GPU_RESP_OK_EDID, sizeof(*edid)))
                memcpy((uint8_t *)req->cmd->resp + sizeof(struct virtio_gpu_ctrl_hdr),
                       (const uint8_t *)edid + sizeof(struct virtio_gpu_ctrl_hdr),
                       sizeof(*edid) - sizeof(struct virtio_gpu_ctrl_hdr));
        } else {
            vgpu_warn_guest("gpu: no EDID from the front-end (%s): generating one",
                            status ? strerror(-status) : "bad size");
            fill_edid(g, req->cmd, req->scanout);
        }
        submit(g, req->cmd);
        vgpu_render_kick(g->render);
    }
    if (g->waiting == req)
        g->waiting = NULL;
    free(req);
    if (!g->destroying && !g->waiting)
        queue_kick(g, VGPU_GPU_QUEUE_CONTROL);
}

static void on_display_ready(void *data, uint64_t features)
{
    vgpu_info("display socket ready, protocol features 0x%llx", (unsigned long long)features);
}

static void on_frame_done(void *data, struct vgpu_frame *frame, bool sent)
{
    struct vgpu_gpu_dev *g = data;
    vgpu_render_return_frame(g->render, frame);
}

static void display_drop(struct vgpu_gpu_dev *g);

static void on_display_closed(void *data)
{
    struct vgpu_gpu_dev *g = data;
    vgpu_info("display socket closed by the front-end");
    /* Allowed from inside its own callback (vhost_display.h). */
    display_drop(g);
}

static const struct vgpu_vdisplay_ops display_ops = {
    .ready = on_display_ready,
    .frame_done = on_frame_done,
    .closed = on_display_closed,
};

static void display_drop(struct vgpu_gpu_dev *g)
{
    struct vgpu_vdisplay *d = g->display;
    g->display = NULL;
    /* Pending requests are answered (-ECANCELED) and frames returned from in here. */
    vgpu_vdisplay_destroy(d);
}

static void gpu_set_display_socket(void *opaque, int fd)
{
    struct vgpu_gpu_dev *g = opaque;
    /* QEMU sends a new socket at every DRIVER_OK: the old one is dead, replace it cleanly. */
    if (g->display) {
        vgpu_info("display socket replaced");
        display_drop(g);
    }
    g->display =
        vgpu_vdisplay_create(fd, vgpu_vu_dev_watcher(g->vu), VGPU_GPU_MAX_OUTPUTS, &display_ops, g);
    if (!g->display) {
        vgpu_err("cannot use the display socket");
        return;
    }
    vgpu_vdisplay_set_timeout(g->display, g->opts.display_timeout_ms);
    /* The rings are stopped and drained here (QEMU sends this first at DRIVER_OK), so there
     * is room in the render ring. */
    struct vgpu_rcmd *c = cmd_alloc(g);
    if (c && vgpu_render_free_slots(g->render) > 0) {
        c->op = VGPU_ROP_DISPLAY_REPLAY;
        c->queue = VGPU_VU_NUM_QUEUES; /* no ring */
        submit(g, c);
        vgpu_render_kick(g->render);
    } else if (c) {
        cmd_free(g, c);
    }
}

static void deliver_event(struct vgpu_gpu_dev *g, struct vgpu_pevent *ev)
{
    struct vgpu_vdisplay *d = g->display;
    switch (ev->type) {
    case VGPU_PEVENT_SCANOUT:
        if (d)
            vgpu_vdisplay_scanout(d, ev->scanout_id, ev->width, ev->height);
        break;
    case VGPU_PEVENT_FRAME:
        if (d)
            vgpu_vdisplay_update(d, ev->frame);
        else
            vgpu_render_return_frame(g->render, ev->frame);
        break;
    case VGPU_PEVENT_CURSOR_IMAGE:
        if (d)
            vgpu_vdisplay_cursor_update(d, ev->scanout_id, ev->x, ev->y, ev->hot_x, ev->hot_y,
                                        ev->image);
        break;
    case VGPU_PEVENT_CURSOR_MOVE:
        if (d)
            vgpu_vdisplay_cursor_move(d, ev->scanout_id, ev->x, ev->y, ev->visible);
        break;
    }
    free(ev->image);
    free(ev);
}

/* --- command decoding and validation ------------------------------------------------------ */

/* Copies the fixed part of the request; false when the chain holds fewer bytes. */
static bool read_req(struct vgpu_rcmd *c, void *req, size_t size)
{
    if (c->chain.out_bytes < size) {
        vgpu_warn_guest("gpu: command 0x%x: %llu request bytes, needs %zu", c->hdr.type,
                        (unsigned long long)c->chain.out_bytes, size);
        return false;
    }
    vgpu_iov_to_buf(vgpu_chain_iov(&c->chain), c->chain.out_num, 0, req, size);
    return true;
}

/* Handlers return 0, or the VIRTIO_GPU_RESP_ERR_* the response must carry. */
#define READ_REQ(c, req)                                                                           \
    do {                                                                                           \
        if (!read_req((c), &(req), sizeof(req)))                                                   \
            return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;                                          \
    } while (0)

static struct res_meta *lookup(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c, uint32_t id)
{
    struct res_meta *m = id ? vgpu_idmap_get(g->resources, id) : NULL;
    if (!m)
        vgpu_warn_guest("gpu: command 0x%x: no resource %u", c->hdr.type, id);
    return m;
}

/* A new resource id must be neither 0 (means "none") nor in use. */
static bool id_is_free(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c, uint32_t id)
{
    if (id != 0 && !vgpu_idmap_get(g->resources, id))
        return true;
    vgpu_warn_guest("gpu: command 0x%x: resource id %u is %s", c->hdr.type, id,
                    id ? "in use" : "reserved");
    return false;
}

static uint32_t cmd_create_2d(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_resource_create_2d req;
    READ_REQ(c, req);
    if (!id_is_free(g, c, req.resource_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (!vgpu_format_is_valid(req.format) || req.width == 0 || req.height == 0) {
        vgpu_warn_guest("gpu: create_2d %u: format %u size %ux%u refused", req.resource_id,
                        req.format, req.width, req.height);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    /* Both factors are below 2^32 and BPP is 4: the product fits in 66 bits... so check. */
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t)req.width, (uint64_t)req.height, &bytes) ||
        __builtin_mul_overflow(bytes, (uint64_t)BPP, &bytes) || bytes > SIZE_MAX / 2) {
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    struct res_meta proto = {
        .id = req.resource_id,
        .format = req.format,
        .width = req.width,
        .height = req.height,
        .bytes = bytes,
    };
    struct res_meta *m = meta_add(g, &proto);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    c->op = VGPU_ROP_CREATE_2D;
    c->serial = m->serial;
    c->u.create_2d.res_id = m->id;
    c->u.create_2d.format = m->format;
    c->u.create_2d.width = m->width;
    c->u.create_2d.height = m->height;
    return 0;
}

static uint32_t cmd_unref(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_resource_unref req;
    READ_REQ(c, req);
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    vgpu_idmap_remove(g->resources, m->id);
    meta_free(g, m);
    /* The render thread disables scanouts showing it before freeing the pixels. */
    c->op = VGPU_ROP_UNREF;
    c->u.res_id = req.resource_id;
    return 0;
}

/* pipe_texture_target values (virglrenderer's virgl_hw.h). */
enum {
    TARGET_BUFFER = 0,
    TARGET_TEXTURE_2D = 2,
    TARGET_TEXTURE_RECT = 5,
    TARGET_TEXTURE_2D_ARRAY = 7,
    TARGET_MAX = 9, /* one past TEXTURE_CUBE_ARRAY */
};

/* Whether a 3D resource can be read back into a frame: a flat texture in a 32-bit layout. */
static bool res_is_showable(const struct res_meta *m)
{
    bool flat = m->target == TARGET_TEXTURE_2D || m->target == TARGET_TEXTURE_RECT ||
                m->target == TARGET_TEXTURE_2D_ARRAY;
    return flat && vgpu_format_from_virgl(m->format) != 0;
}

static uint32_t cmd_set_scanout(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_set_scanout req;
    READ_REQ(c, req);
    if (req.scanout_id >= scanout_limit(g)) {
        vgpu_warn_guest("gpu: set_scanout: scanout %u does not exist", req.scanout_id);
        return VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
    }
    c->op = VGPU_ROP_SET_SCANOUT;
    c->u.scanout.scanout_id = req.scanout_id;
    c->u.scanout.res_id = req.resource_id;
    if (req.resource_id == 0)
        return 0; /* disable */
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (req.r.width == 0 || req.r.height == 0 || !rect_inside(&req.r, m->width, m->height)) {
        vgpu_warn_guest("gpu: set_scanout: rect %ux%u+%u+%u outside resource %u (%ux%u)",
                        req.r.width, req.r.height, req.r.x, req.r.y, m->id, m->width, m->height);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    if (m->is_3d && !res_is_showable(m)) {
        vgpu_warn_guest("gpu: set_scanout: resource %u (target %u, format %u) cannot be shown",
                        m->id, m->target, m->format);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    c->u.scanout.r = req.r;
    return 0;
}

static uint32_t cmd_flush(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_resource_flush req;
    READ_REQ(c, req);
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    /* A blob has no size of its own: the render thread clips to what its scanouts show. */
    if (!m->is_blob && !rect_inside(&req.r, m->width, m->height)) {
        vgpu_warn_guest("gpu: flush: rect outside resource %u", m->id);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    c->op = VGPU_ROP_FLUSH;
    c->u.flush.res_id = m->id;
    c->u.flush.r = req.r;
    return 0;
}

/* Copies the iovecs covering [off, off+len) of the backing into a new array. */
static struct iovec *slice_iov(const struct res_meta *m, uint64_t off, uint64_t len,
                               unsigned int *out_n)
{
    unsigned int first = 0;
    uint64_t base = 0;
    while (first < m->niov && base + m->iov[first].iov_len <= off) {
        base += m->iov[first].iov_len;
        first++;
    }
    unsigned int last = first;
    uint64_t end = base;
    while (last < m->niov && end < off + len) {
        end += m->iov[last].iov_len;
        last++;
    }
    unsigned int n = last - first;
    struct iovec *iov = malloc((n ? n : 1) * sizeof(*iov));
    if (!iov)
        return NULL;
    memcpy(iov, m->iov + first, n * sizeof(*iov));
    if (n) {
        size_t skip = (size_t)(off - base);
        iov[0].iov_base = (uint8_t *)iov[0].iov_base + skip;
        iov[0].iov_len -= skip;
        size_t over = (size_t)(end - (off + len));
        iov[n - 1].iov_len -= over;
    }
    *out_n = n;
    return iov;
}

static uint32_t cmd_transfer_2d(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_transfer_to_host_2d req;
    READ_REQ(c, req);
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (!rect_inside(&req.r, m->width, m->height)) {
        vgpu_warn_guest("gpu: transfer_to_host_2d: rect %ux%u+%u+%u outside resource %u (%ux%u)",
                        req.r.width, req.r.height, req.r.x, req.r.y, m->id, m->width, m->height);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    if (!m->entries || m->is_blob) {
        vgpu_warn_guest("gpu: transfer_to_host_2d: resource %u has no backing to transfer", m->id);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    if (req.r.width == 0 || req.r.height == 0)
        return 0; /* nothing to copy: OK */
    if (meta_translate(g, m) < 0) {
        vgpu_warn_guest("gpu: transfer_to_host_2d: backing of resource %u is no longer in guest "
                        "memory",
                        m->id);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    /* Rows are resource-width apart in the backing, starting at offset (Linux, QEMU). */
    uint64_t stride = (uint64_t)m->width * BPP;
    uint64_t span = stride * (req.r.height - 1) + (uint64_t)req.r.width * BPP;
    if (req.offset > m->backing_len || span > m->backing_len - req.offset) {
        vgpu_warn_guest("gpu: transfer_to_host_2d: %llu bytes at offset %llu, backing has %llu",
                        (unsigned long long)span, (unsigned long long)req.offset,
                        (unsigned long long)m->backing_len);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    if (g->caps.virgl) {
        /* virglrenderer copies from the backing it holds; rows are a resource width apart. */
        c->op = VGPU_ROP_TRANSFER_3D;
        c->u.transfer_3d.res_id = m->id;
        c->u.transfer_3d.stride = (uint32_t)stride;
        c->u.transfer_3d.box = (struct vgpu_box){
            .x = req.r.x, .y = req.r.y, .w = req.r.width, .h = req.r.height, .d = 1};
        c->u.transfer_3d.offset = req.offset;
        c->u.transfer_3d.to_host = true;
        return 0;
    }
    unsigned int n;
    struct iovec *iov = slice_iov(m, req.offset, span, &n);
    if (!iov)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    c->op = VGPU_ROP_TRANSFER_2D;
    c->u.transfer.res_id = m->id;
    c->u.transfer.r = req.r;
    c->u.transfer.stride = (uint32_t)stride;
    c->u.transfer.iov = iov;
    c->u.transfer.niov = n;
    return 0;
}

static uint32_t cmd_attach_backing(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_resource_attach_backing req;
    READ_REQ(c, req);
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (m->entries || m->is_blob) {
        vgpu_warn_guest("gpu: attach_backing: resource %u already has backing", m->id);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    if (req.nr_entries == 0 || req.nr_entries > MAX_BACKING_ENTRIES) {
        vgpu_warn_guest("gpu: attach_backing: %u entries", req.nr_entries);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    /* The entries must be in the chain: bound the allocation by the bytes really there. */
    uint64_t need = sizeof(req) + (uint64_t)req.nr_entries * sizeof(struct virtio_gpu_mem_entry);
    if (c->chain.out_bytes < need) {
        vgpu_warn_guest("gpu: attach_backing: %u entries but only %llu request bytes",
                        req.nr_entries, (unsigned long long)c->chain.out_bytes);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    size_t table = req.nr_entries * sizeof(struct virtio_gpu_mem_entry);
    if (!charge(g, table))
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    m->bytes += table;
    m->entries = malloc(table);
    if (!m->entries) {
        m->bytes -= table;
        g->hostmem_used -= table;
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    m->nentries = req.nr_entries;
    vgpu_iov_to_buf(vgpu_chain_iov(&c->chain), c->chain.out_num, sizeof(req), m->entries, table);
    int r = meta_translate(g, m);
    if (r < 0) {
        vgpu_warn_guest("gpu: attach_backing: resource %u: %s", m->id,
                        r == -EFAULT ? "an entry is outside guest memory" : "out of memory");
        meta_detach(g, m);
        return r == -EFAULT ? VIRTIO_GPU_RESP_ERR_UNSPEC : VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    if (g->caps.virgl) {
        /* virglrenderer keeps the list: the render thread gets its own copy to own. */
        struct iovec *copy = malloc((m->niov ? m->niov : 1) * sizeof(*copy));
        if (!copy) {
            meta_detach(g, m);
            return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
        }
        memcpy(copy, m->iov, m->niov * sizeof(*copy));
        c->op = VGPU_ROP_ATTACH_BACKING;
        c->u.backing.res_id = m->id;
        c->u.backing.iov = copy;
        c->u.backing.niov = m->niov;
    }
    return 0;
}

static uint32_t cmd_detach_backing(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_resource_detach_backing req;
    READ_REQ(c, req);
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (!m->entries || m->is_blob) {
        vgpu_warn_guest("gpu: detach_backing: resource %u has no detachable backing", m->id);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    /* Transfers already queued carry their own copy of the iovecs. */
    meta_detach(g, m);
    if (g->caps.virgl) {
        c->op = VGPU_ROP_DETACH_BACKING;
        c->u.res_id = m->id;
    }
    return 0;
}

static uint32_t cmd_get_display_info(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_ctrl_hdr req;
    READ_REQ(c, req);
    if (g->display) {
        struct display_req *dr = calloc(1, sizeof(*dr));
        if (dr) {
            dr->g = g;
            dr->cmd = c;
            if (vgpu_vdisplay_get_display_info(g->display, on_display_info, dr) == 0) {
                g->waiting = dr;
                return 0;
            }
            free(dr);
        }
    }
    fill_display_info(g, c);
    return 0;
}

static uint32_t cmd_get_edid(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_cmd_get_edid req;
    READ_REQ(c, req);
    if (!(g->features & BIT(VIRTIO_GPU_F_EDID)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    if (req.scanout >= scanout_limit(g))
        return VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
    /*
     * Ask QEMU only for outputs it has (it never answers for others, which would time out
     * and cost the display socket), and only if it can answer: before negotiation the
     * request waits and falls back to our own EDID if QEMU turns out not to offer EDID.
     */
    bool known = g->qemu_display_info ? g->display_info.pmodes[req.scanout].enabled != 0
                                      : req.scanout < g->opts.outputs;
    if (g->display && known &&
        (!vgpu_vdisplay_is_ready(g->display) ||
         (vgpu_vdisplay_features(g->display) & VGPU_VDISPLAY_F_EDID))) {
        struct display_req *dr = calloc(1, sizeof(*dr));
        if (dr) {
            dr->g = g;
            dr->cmd = c;
            dr->scanout = req.scanout;
            if (vgpu_vdisplay_get_edid(g->display, req.scanout, on_edid, dr) == 0) {
                g->waiting = dr;
                return 0;
            }
            free(dr);
        }
    }
    fill_edid(g, c, req.scanout);
    return 0;
}

static uint32_t cmd_assign_uuid(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_resource_assign_uuid req;
    READ_REQ(c, req);
    if (!(g->features & BIT(VIRTIO_GPU_F_RESOURCE_UUID)))
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (!m->has_uuid) {
        if (getrandom(m->uuid, sizeof(m->uuid), 0) != (ssize_t)sizeof(m->uuid))
            return VIRTIO_GPU_RESP_ERR_UNSPEC;
        m->uuid[6] = (uint8_t)((m->uuid[6] & 0x0f) | 0x40); /* version 4 */
        m->uuid[8] = (uint8_t)((m->uuid[8] & 0x3f) | 0x80); /* RFC 4122 variant */
        m->has_uuid = true;
    }
    if (resp_prepare(c, VIRTIO_GPU_RESP_OK_RESOURCE_UUID,
                     sizeof(struct virtio_gpu_resp_resource_uuid)))
        memcpy(((struct virtio_gpu_resp_resource_uuid *)c->resp)->uuid, m->uuid, 16);
    return 0;
}

static uint32_t cmd_get_capset_info(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_get_capset_info req;
    READ_REQ(c, req);
    /* Index into the capsets really enabled (none without 3D), gathered at start-up. */
    if (req.capset_index >= g->caps.ncapsets) {
        vgpu_warn_guest("gpu: get_capset_info: index %u, device has %u capsets", req.capset_index,
                        g->caps.ncapsets);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    if (resp_prepare(c, VIRTIO_GPU_RESP_OK_CAPSET_INFO,
                     sizeof(struct virtio_gpu_resp_capset_info))) {
        struct virtio_gpu_resp_capset_info *info = c->resp;
        info->capset_id = g->caps.capsets[req.capset_index].id;
        info->capset_max_version = g->caps.capsets[req.capset_index].max_version;
        info->capset_max_size = g->caps.capsets[req.capset_index].max_size;
    }
    return 0;
}

static uint32_t cmd_get_capset(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_get_capset req;
    READ_REQ(c, req);
    unsigned int i = 0;
    while (i < g->caps.ncapsets && g->caps.capsets[i].id != req.capset_id)
        i++;
    if (i == g->caps.ncapsets) {
        vgpu_warn_guest("gpu: get_capset: capset %u is not supported", req.capset_id);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    uint32_t size = g->caps.capsets[i].max_size;
    if (req.capset_version > g->caps.capsets[i].max_version) {
        vgpu_warn_guest("gpu: get_capset: capset %u has no version %u", req.capset_id,
                        req.capset_version);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    /* The whole capset or an error, never a truncated one (QEMU CVE-2016-10028, -2021-3546). */
    uint64_t len = sizeof(struct virtio_gpu_ctrl_hdr) + (uint64_t)size;
    if (c->chain.in_bytes < len) {
        vgpu_warn_guest("gpu: get_capset: capset %u needs %llu response bytes, chain has %llu",
                        req.capset_id, (unsigned long long)len,
                        (unsigned long long)c->chain.in_bytes);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    /* Zeroed, so whatever virglrenderer leaves unwritten reaches the guest as zeros. */
    if (!resp_prepare(c, VIRTIO_GPU_RESP_OK_CAPSET, (uint32_t)len))
        return 0;                /* out of memory: the error response is prepared */
    c->op = VGPU_ROP_GET_CAPSET; /* fill_caps must run on the render thread */
    c->u.capset.id = req.capset_id;
    c->u.capset.version = req.capset_version;
    c->u.capset.size = size;
    return 0;
}

/* --- 3D ----------------------------------------------------------------------------------- */

/* A live context of the guest's (not lost), or NULL with a warning. */
static struct ctx_meta *ctx_lookup(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c, uint32_t id)
{
    struct ctx_meta *x = id ? vgpu_idmap_get(g->contexts, id) : NULL;
    if (!x || x->lost) {
        vgpu_warn_guest("gpu: command 0x%x: no context %u%s", c->hdr.type, id,
                        x ? " (destroyed after a bad command stream)" : "");
        return NULL;
    }
    return x;
}

static uint32_t cmd_ctx_create(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_ctx_create req;
    READ_REQ(c, req);
    uint32_t id = c->hdr.ctx_id;
    if (id == 0 || id > VGPU_GPU_MAX_CTX_ID || vgpu_idmap_get(g->contexts, id)) {
        vgpu_warn_guest("gpu: ctx_create: context id %u is %s", id,
                        id == 0 || id > VGPU_GPU_MAX_CTX_ID ? "out of range" : "in use");
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    }
    if (vgpu_idmap_count(g->contexts) >= g->opts.max_contexts) {
        vgpu_warn_guest("gpu: ctx_create %u: the guest already has %u contexts", id,
                        g->opts.max_contexts);
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    /* With CONTEXT_INIT the low byte picks the capset; it must be one we serve. */
    uint32_t capset = 0;
    if (g->features & BIT(VIRTIO_GPU_F_CONTEXT_INIT))
        capset = req.context_init & VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK;
    bool known = capset == 0;
    for (unsigned int i = 0; i < g->caps.ncapsets; i++)
        known = known || g->caps.capsets[i].id == capset;
    if (!known) {
        vgpu_warn_guest("gpu: ctx_create %u: capset %u is not served", id, capset);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    struct ctx_meta *x = calloc(1, sizeof(*x));
    if (!x)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    x->id = id;
    x->serial = ++g->next_serial;
    if (vgpu_idmap_insert(g->contexts, id, x) < 0) {
        free(x);
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    c->op = VGPU_ROP_CTX_CREATE;
    c->serial = x->serial;
    c->u.ctx_create.ctx_id = id;
    c->u.ctx_create.capset_id = capset;
    c->u.ctx_create.nlen = req.nlen < sizeof(req.debug_name) ? req.nlen : sizeof(req.debug_name);
    memcpy(c->u.ctx_create.name, req.debug_name, sizeof(c->u.ctx_create.name));
    return 0;
}

static uint32_t cmd_ctx_destroy(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_ctrl_hdr req;
    READ_REQ(c, req);
    struct ctx_meta *x = c->hdr.ctx_id ? vgpu_idmap_remove(g->contexts, c->hdr.ctx_id) : NULL;
    if (!x) {
        vgpu_warn_guest("gpu: ctx_destroy: no context %u", c->hdr.ctx_id);
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    }
    bool lost = x->lost;
    free(x);
    if (lost)
        return 0; /* the render thread destroyed it already */
    c->op = VGPU_ROP_CTX_DESTROY;
    c->u.ctx.ctx_id = c->hdr.ctx_id;
    return 0;
}

static uint32_t cmd_ctx_resource(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_ctx_resource req;
    READ_REQ(c, req);
    if (!ctx_lookup(g, c, c->hdr.ctx_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    if (!lookup(g, c, req.resource_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    c->op = c->hdr.type == VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE ? VGPU_ROP_CTX_ATTACH
                                                              : VGPU_ROP_CTX_DETACH;
    c->u.ctx.ctx_id = c->hdr.ctx_id;
    c->u.ctx.res_id = req.resource_id;
    return 0;
}

/*
 * Host bytes a 3D resource may cost: 4 bytes a texel (most formats; it is a charge, not an
 * allocation), every layer and sample, twice for a mip chain; a buffer, its bytes. False on
 * overflow.
 */
static bool estimate_3d(const struct virtio_gpu_resource_create_3d *q, uint64_t *out)
{
    uint64_t b = q->width;
    if (q->target != TARGET_BUFFER &&
        (__builtin_mul_overflow(b, (uint64_t)q->height, &b) ||
         __builtin_mul_overflow(b, (uint64_t)(q->depth ? q->depth : 1), &b) ||
         __builtin_mul_overflow(b, (uint64_t)(q->array_size ? q->array_size : 1), &b) ||
         __builtin_mul_overflow(b, (uint64_t)BPP, &b)))
        return false;
    if (__builtin_mul_overflow(b, (uint64_t)(q->nr_samples > 1 ? q->nr_samples : 1), &b) ||
        __builtin_mul_overflow(b, (uint64_t)(q->last_level ? 2 : 1), &b))
        return false;
    *out = b;
    return true;
}

static uint32_t cmd_create_3d(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_resource_create_3d req;
    READ_REQ(c, req);
    if (!id_is_free(g, c, req.resource_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    /* virglrenderer checks formats, binds and sizes per target; we check what we rely on. */
    if (req.target >= TARGET_MAX || req.width == 0 || req.height == 0 || req.width > INT32_MAX ||
        req.height > INT32_MAX || req.depth > INT32_MAX || req.array_size > INT32_MAX ||
        req.last_level > 31) {
        vgpu_warn_guest("gpu: create_3d %u: target %u size %ux%ux%u refused", req.resource_id,
                        req.target, req.width, req.height, req.depth);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    uint64_t bytes;
    if (!estimate_3d(&req, &bytes))
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    struct res_meta proto = {
        .id = req.resource_id,
        .format = req.format,
        .width = req.width,
        .height = req.height,
        .bytes = bytes,
        .is_3d = true,
        .target = req.target,
        .depth = req.depth,
        .array_size = req.array_size,
        .last_level = req.last_level,
    };
    struct res_meta *m = meta_add(g, &proto);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    c->op = VGPU_ROP_CREATE_3D;
    c->serial = m->serial;
    c->u.create_3d.res_id = m->id;
    c->u.create_3d.target = req.target;
    c->u.create_3d.format = req.format;
    c->u.create_3d.bind = req.bind;
    c->u.create_3d.width = req.width;
    c->u.create_3d.height = req.height;
    c->u.create_3d.depth = req.depth;
    c->u.create_3d.array_size = req.array_size;
    c->u.create_3d.last_level = req.last_level;
    c->u.create_3d.nr_samples = req.nr_samples;
    c->u.create_3d.flags = req.flags;
    return 0;
}

static uint32_t cmd_transfer_3d(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_transfer_host_3d req;
    READ_REQ(c, req);
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (c->hdr.ctx_id && !ctx_lookup(g, c, c->hdr.ctx_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    /*
     * The box lies inside level 0: virglrenderer checks the level's own size and the bytes
     * the backing must hold; these bounds keep its int arithmetic away from overflow.
     */
    uint64_t layers = 1;
    if (m->is_3d)
        layers = m->depth > m->array_size ? m->depth : m->array_size;
    uint32_t last_level = m->is_3d ? m->last_level : 0;
    const struct virtio_gpu_box *b = &req.box;
    if ((uint64_t)b->x + b->w > m->width || (uint64_t)b->y + b->h > m->height ||
        (uint64_t)b->z + b->d > (layers ? layers : 1) || req.level > last_level) {
        vgpu_warn_guest("gpu: transfer_3d: box %ux%ux%u+%u+%u+%u level %u outside resource %u",
                        b->w, b->h, b->d, b->x, b->y, b->z, req.level, m->id);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    if (!m->entries || m->is_blob) {
        vgpu_warn_guest("gpu: transfer_3d: resource %u has no backing to transfer", m->id);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    if (req.offset > m->backing_len || req.stride > INT32_MAX || req.layer_stride > INT32_MAX) {
        vgpu_warn_guest("gpu: transfer_3d: offset %llu, backing has %llu",
                        (unsigned long long)req.offset, (unsigned long long)m->backing_len);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    c->op = VGPU_ROP_TRANSFER_3D;
    c->u.transfer_3d.res_id = m->id;
    c->u.transfer_3d.ctx_id = c->hdr.ctx_id;
    c->u.transfer_3d.level = req.level;
    c->u.transfer_3d.stride = req.stride;
    c->u.transfer_3d.layer_stride = req.layer_stride;
    c->u.transfer_3d.box = (struct vgpu_box){b->x, b->y, b->z, b->w, b->h, b->d};
    c->u.transfer_3d.offset = req.offset;
    c->u.transfer_3d.to_host = c->hdr.type == VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D;
    return 0;
}

/* The iovecs covering [off, off + len) of a list, copied into a new array. */
static struct iovec *iov_slice(const struct iovec *src, unsigned int n, uint64_t off, uint64_t len,
                               unsigned int *out_n)
{
    unsigned int first = 0;
    uint64_t base = 0;
    while (first < n && base + src[first].iov_len <= off) {
        base += src[first].iov_len;
        first++;
    }
    unsigned int cnt = 0;
    uint64_t end = base;
    while (first + cnt < n && end < off + len) {
        end += src[first + cnt].iov_len;
        cnt++;
    }
    struct iovec *iov = malloc((cnt ? cnt : 1) * sizeof(*iov));
    if (!iov)
        return NULL;
    memcpy(iov, src + first, cnt * sizeof(*iov));
    if (cnt) {
        size_t skip = (size_t)(off - base);
        iov[0].iov_base = (uint8_t *)iov[0].iov_base + skip;
        iov[0].iov_len -= skip;
        iov[cnt - 1].iov_len -= (size_t)(end - (off + len));
    }
    *out_n = cnt;
    return iov;
}

static uint32_t cmd_submit_3d(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_cmd_submit req;
    READ_REQ(c, req);
    struct ctx_meta *x = ctx_lookup(g, c, c->hdr.ctx_id);
    if (!x)
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    /* Bounded by the bytes really in the chain, before anything is allocated. */
    uint64_t avail = c->chain.out_bytes - sizeof(req);
    if (req.size % 4 != 0 || req.size > VGPU_SUBMIT_MAX || req.size > avail) {
        vgpu_warn_guest("gpu: submit_3d: %u bytes (chain holds %llu; at most %u, multiple of 4)",
                        req.size, (unsigned long long)avail, VGPU_SUBMIT_MAX);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    unsigned int n = 0;
    struct iovec *iov =
        iov_slice(vgpu_chain_iov(&c->chain), c->chain.out_num, sizeof(req), req.size, &n);
    if (!iov)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    c->op = VGPU_ROP_SUBMIT_3D;
    c->serial = x->serial;
    c->u.submit.ctx_id = x->id;
    c->u.submit.size = req.size;
    c->u.submit.iov = iov;
    c->u.submit.niov = n;
    return 0;
}

/*
 * RESOURCE_CREATE_BLOB, guest memory only: the pixels stay in the guest's pages (Linux puts
 * dumb buffers there once RESOURCE_BLOB is offered). Host3d blobs would need MAP_BLOB, which
 * needs a shared-memory region the vhost-user-gpu protocol cannot give the guest.
 */
static uint32_t cmd_create_blob(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_resource_create_blob req;
    READ_REQ(c, req);
    if (!id_is_free(g, c, req.resource_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (req.blob_mem != VIRTIO_GPU_BLOB_MEM_GUEST) {
        vgpu_warn_guest("gpu: create_blob %u: blob_mem %u is not supported", req.resource_id,
                        req.blob_mem);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    if (c->hdr.ctx_id && !ctx_lookup(g, c, c->hdr.ctx_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    if (req.size == 0 || req.nr_entries == 0) {
        vgpu_warn_guest("gpu: create_blob %u: %llu bytes in %u entries", req.resource_id,
                        (unsigned long long)req.size, req.nr_entries);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    if (req.nr_entries > MAX_BACKING_ENTRIES) {
        vgpu_warn_guest("gpu: create_blob %u: %u entries", req.resource_id, req.nr_entries);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    /* The entries must be in the chain: bound the allocation by the bytes really there. */
    uint64_t need = sizeof(req) + (uint64_t)req.nr_entries * sizeof(struct virtio_gpu_mem_entry);
    if (c->chain.out_bytes < need) {
        vgpu_warn_guest("gpu: create_blob %u: %u entries but only %llu request bytes",
                        req.resource_id, req.nr_entries, (unsigned long long)c->chain.out_bytes);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    size_t table = req.nr_entries * sizeof(struct virtio_gpu_mem_entry);
    struct res_meta proto = {
        .id = req.resource_id,
        .bytes = table, /* the backing tables; the pixels are the guest's */
        .is_blob = true,
        .blob_size = req.size,
    };
    struct res_meta *m = meta_add(g, &proto);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    uint32_t err = 0;
    m->entries = malloc(table);
    if (!m->entries) {
        err = VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    m->nentries = req.nr_entries;
    vgpu_iov_to_buf(vgpu_chain_iov(&c->chain), c->chain.out_num, sizeof(req), m->entries, table);
    int r = meta_translate(g, m);
    if (r < 0) {
        vgpu_warn_guest("gpu: create_blob %u: %s", m->id,
                        r == -EFAULT ? "an entry is outside guest memory" : "out of memory");
        err = r == -EFAULT ? VIRTIO_GPU_RESP_ERR_UNSPEC : VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    if (m->backing_len < req.size) {
        vgpu_warn_guest("gpu: create_blob %u: %llu bytes but entries hold %llu", m->id,
                        (unsigned long long)req.size, (unsigned long long)m->backing_len);
        err = VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
        goto fail;
    }
    /* virglrenderer keeps the list: the render thread gets its own copy, exactly size bytes. */
    unsigned int n = 0;
    struct iovec *iov = iov_slice(m->iov, m->niov, 0, req.size, &n);
    if (!iov) {
        err = VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    c->op = VGPU_ROP_CREATE_BLOB;
    c->serial = m->serial;
    c->u.blob.res_id = m->id;
    c->u.blob.ctx_id = c->hdr.ctx_id;
    c->u.blob.blob_mem = req.blob_mem;
    c->u.blob.blob_flags = req.blob_flags;
    c->u.blob.blob_id = req.blob_id;
    c->u.blob.size = req.size;
    c->u.blob.iov = iov;
    c->u.blob.niov = n;
    return 0;
fail:
    vgpu_idmap_remove(g->resources, m->id);
    meta_free(g, m);
    return err;
}

/* SET_SCANOUT_BLOB: a scanout shows a guest blob as a framebuffer, read from guest memory. */
static uint32_t cmd_set_scanout_blob(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    struct virtio_gpu_set_scanout_blob req;
    READ_REQ(c, req);
    if (req.scanout_id >= scanout_limit(g)) {
        vgpu_warn_guest("gpu: set_scanout_blob: scanout %u does not exist", req.scanout_id);
        return VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
    }
    if (req.resource_id == 0) {
        c->op = VGPU_ROP_SET_SCANOUT; /* disable */
        c->u.scanout.scanout_id = req.scanout_id;
        c->u.scanout.res_id = 0;
        return 0;
    }
    struct res_meta *m = lookup(g, c, req.resource_id);
    if (!m)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (!m->is_blob || !vgpu_format_is_valid(req.format) || req.width == 0 || req.height == 0 ||
        req.r.width == 0 || req.r.height == 0 || !rect_inside(&req.r, req.width, req.height)) {
        vgpu_warn_guest("gpu: set_scanout_blob: resource %u (%s), format %u, %ux%u, rect "
                        "%ux%u+%u+%u refused",
                        m->id, m->is_blob ? "blob" : "not a blob", req.format, req.width,
                        req.height, req.r.width, req.r.height, req.r.x, req.r.y);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    /* The last pixel of the framebuffer lies inside the blob (64-bit, overflow-checked). */
    uint64_t row = (uint64_t)req.width * BPP, end;
    if (req.strides[0] < row ||
        __builtin_mul_overflow((uint64_t)req.strides[0], (uint64_t)(req.height - 1), &end) ||
        __builtin_add_overflow(end, (uint64_t)req.offsets[0], &end) ||
        __builtin_add_overflow(end, row, &end) || end > m->blob_size) {
        vgpu_warn_guest("gpu: set_scanout_blob: offset %u stride %u for %ux%u outside blob %u "
                        "(%llu bytes)",
                        req.offsets[0], req.strides[0], req.width, req.height, m->id,
                        (unsigned long long)m->blob_size);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    if (meta_translate(g, m) < 0) {
        vgpu_warn_guest("gpu: set_scanout_blob: blob %u is no longer in guest memory", m->id);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    unsigned int n = 0;
    struct iovec *iov = iov_slice(m->iov, m->niov, 0, m->blob_size, &n);
    if (!iov)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    c->op = VGPU_ROP_SET_SCANOUT_BLOB;
    c->u.scanout_blob.scanout_id = req.scanout_id;
    c->u.scanout_blob.res_id = m->id;
    c->u.scanout_blob.r = req.r;
    c->u.scanout_blob.format = req.format;
    c->u.scanout_blob.width = req.width;
    c->u.scanout_blob.height = req.height;
    c->u.scanout_blob.stride = req.strides[0];
    c->u.scanout_blob.offset = req.offsets[0];
    c->u.scanout_blob.iov = iov;
    c->u.scanout_blob.niov = n;
    return 0;
}

/* The 3D commands (3D mode only). */
static uint32_t decode_3d(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    switch (c->hdr.type) {
    case VIRTIO_GPU_CMD_CTX_CREATE:
        return cmd_ctx_create(g, c);
    case VIRTIO_GPU_CMD_CTX_DESTROY:
        return cmd_ctx_destroy(g, c);
    case VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE:
    case VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE:
        return cmd_ctx_resource(g, c);
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_3D:
        return cmd_create_3d(g, c);
    case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D:
    case VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D:
        return cmd_transfer_3d(g, c);
    case VIRTIO_GPU_CMD_SUBMIT_3D:
        return cmd_submit_3d(g, c);
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB:
        return cmd_create_blob(g, c);
    case VIRTIO_GPU_CMD_SET_SCANOUT_BLOB:
        return cmd_set_scanout_blob(g, c);
    default:
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
}

/*
 * INFO_RING_IDX puts a fenced command on its context's ring: valid only with CONTEXT_INIT (the
 * flag is dropped otherwise, as if the guest had not set it), a ring below 64 and a live
 * context. 0 or the error.
 */
static uint32_t check_ring(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    if (!(c->hdr.flags & VIRTIO_GPU_FLAG_INFO_RING_IDX))
        return 0;
    if (!(g->features & BIT(VIRTIO_GPU_F_CONTEXT_INIT)) ||
        !(c->hdr.flags & VIRTIO_GPU_FLAG_FENCE)) {
        c->hdr.flags &= ~(uint32_t)VIRTIO_GPU_FLAG_INFO_RING_IDX;
        return 0;
    }
    if (c->hdr.ring_idx >= 64) {
        vgpu_warn_guest("gpu: command 0x%x: ring %u out of range", c->hdr.type, c->hdr.ring_idx);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    /* CTX_CREATE's context does not exist yet: the ring is checked when the command ends. */
    if (c->hdr.type != VIRTIO_GPU_CMD_CTX_CREATE && !ctx_lookup(g, c, c->hdr.ctx_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    return 0;
}

/* Decodes one control command into c: a render op, or a ready response (op NONE). */
static void decode_control(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    resp_prepare(c, VIRTIO_GPU_RESP_OK_NODATA, sizeof(struct virtio_gpu_ctrl_hdr));
    if (!read_req(c, &c->hdr, sizeof(c->hdr))) {
        memset(&c->hdr, 0, sizeof(c->hdr));
        resp_error(c, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
        return;
    }
    vgpu_dbg("gpu: control 0x%x flags 0x%x fence %llu", c->hdr.type, c->hdr.flags,
             (unsigned long long)c->hdr.fence_id);
    uint32_t err = g->caps.virgl ? check_ring(g, c) : 0;
    if (err) {
        resp_error(c, err);
        return;
    }
    switch (c->hdr.type) {
    case VIRTIO_GPU_CMD_GET_DISPLAY_INFO:
        err = cmd_get_display_info(g, c);
        break;
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_2D:
        err = cmd_create_2d(g, c);
        break;
    case VIRTIO_GPU_CMD_RESOURCE_UNREF:
        err = cmd_unref(g, c);
        break;
    case VIRTIO_GPU_CMD_SET_SCANOUT:
        err = cmd_set_scanout(g, c);
        break;
    case VIRTIO_GPU_CMD_RESOURCE_FLUSH:
        err = cmd_flush(g, c);
        break;
    case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D:
        err = cmd_transfer_2d(g, c);
        break;
    case VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING:
        err = cmd_attach_backing(g, c);
        break;
    case VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING:
        err = cmd_detach_backing(g, c);
        break;
    case VIRTIO_GPU_CMD_GET_CAPSET_INFO:
        err = cmd_get_capset_info(g, c);
        break;
    case VIRTIO_GPU_CMD_GET_CAPSET:
        err = cmd_get_capset(g, c);
        break;
    case VIRTIO_GPU_CMD_GET_EDID:
        err = cmd_get_edid(g, c);
        break;
    case VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID:
        err = cmd_assign_uuid(g, c);
        break;
    case VIRTIO_GPU_CMD_CTX_CREATE:
    case VIRTIO_GPU_CMD_CTX_DESTROY:
    case VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE:
    case VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE:
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_3D:
    case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D:
    case VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D:
    case VIRTIO_GPU_CMD_SUBMIT_3D:
    case VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB:
    case VIRTIO_GPU_CMD_SET_SCANOUT_BLOB:
        err = g->caps.virgl ? decode_3d(g, c) : VIRTIO_GPU_RESP_ERR_UNSPEC;
        break;
    default:
        /* 3D and blob commands need features this device does not offer. */
        vgpu_warn_guest("gpu: unsupported control command 0x%x", c->hdr.type);
        err = VIRTIO_GPU_RESP_ERR_UNSPEC;
        break;
    }
    /* The one spot where a refused command gets its error response. */
    if (err)
        resp_error(c, err);
}

/* Cursor commands have no response; bad ones are logged and ignored. */
static void decode_cursor(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    c->resp_len = 0;
    struct virtio_gpu_update_cursor req;
    if (!read_req(c, &req, sizeof(req)))
        return;
    c->hdr = req.hdr;
    if (req.hdr.type != VIRTIO_GPU_CMD_UPDATE_CURSOR &&
        req.hdr.type != VIRTIO_GPU_CMD_MOVE_CURSOR) {
        vgpu_warn_guest("gpu: command 0x%x on the cursor queue", req.hdr.type);
        return;
    }
    if (req.pos.scanout_id >= scanout_limit(g)) {
        vgpu_warn_guest("gpu: cursor on scanout %u, which does not exist", req.pos.scanout_id);
        return;
    }
    if (req.hdr.type == VIRTIO_GPU_CMD_UPDATE_CURSOR && req.resource_id) {
        struct res_meta *m = vgpu_idmap_get(g->resources, req.resource_id);
        if (!m) {
            vgpu_warn_guest("gpu: update_cursor: no resource %u", req.resource_id);
            return;
        }
        if (m->width != VGPU_CURSOR_SIZE || m->height != VGPU_CURSOR_SIZE) {
            vgpu_warn_guest("gpu: update_cursor: resource %u is %ux%u, not 64x64", m->id, m->width,
                            m->height);
            return;
        }
    }
    c->op = req.hdr.type == VIRTIO_GPU_CMD_UPDATE_CURSOR ? VGPU_ROP_CURSOR_UPDATE
                                                         : VGPU_ROP_CURSOR_MOVE;
    c->u.cursor.scanout_id = req.pos.scanout_id;
    c->u.cursor.x = req.pos.x;
    c->u.cursor.y = req.pos.y;
    c->u.cursor.res_id = req.resource_id;
    c->u.cursor.hot_x = req.hot_x;
    c->u.cursor.hot_y = req.hot_y;
}

/* --- queues and completions --------------------------------------------------------------- */

static void submit(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    /* queue_kick only pops while there is room, so this cannot fail. */
    if (!vgpu_render_submit(g->render, c)) {
        vgpu_err("gpu: render ring unexpectedly full");
        abort();
    }
    g->inflight++;
}

static void complete(struct vgpu_gpu_dev *g, struct vgpu_rcmd *c)
{
    g->inflight--;
    if ((c->op == VGPU_ROP_CREATE_2D || c->op == VGPU_ROP_CREATE_3D ||
         c->op == VGPU_ROP_CREATE_BLOB) &&
        resp_is_error(c->resp_type)) {
        /* The render thread refused it: forget the resource if it is still ours. */
        uint32_t id = c->op == VGPU_ROP_CREATE_2D   ? c->u.create_2d.res_id
                      : c->op == VGPU_ROP_CREATE_3D ? c->u.create_3d.res_id
                                                    : c->u.blob.res_id;
        struct res_meta *m = vgpu_idmap_get(g->resources, id);
        if (m && m->serial == c->serial) {
            vgpu_idmap_remove(g->resources, m->id);
            meta_free(g, m);
        }
    }
    if (c->op == VGPU_ROP_CTX_CREATE && resp_is_error(c->resp_type)) {
        struct ctx_meta *x = vgpu_idmap_get(g->contexts, c->u.ctx_create.ctx_id);
        if (x && x->serial == c->serial) {
            vgpu_idmap_remove(g->contexts, x->id);
            free(x);
        }
    }
    if (c->op == VGPU_ROP_SUBMIT_3D && c->ctx_lost) {
        /* Later commands for it get INVALID_CONTEXT_ID; the guest's CTX_DESTROY frees it. */
        struct ctx_meta *x = vgpu_idmap_get(g->contexts, c->u.submit.ctx_id);
        if (x && x->serial == c->serial)
            x->lost = true;
    }
    struct vgpu_vring *vr = vgpu_vu_dev_vring(g->vu, c->queue); /* NULL: no ring (reset) */
    if (vr && vgpu_vring_is_started(vr)) {
        vgpu_vring_push(vr, c->chain.head, resp_write(c));
        g->notify_pending[c->queue] = true;
    }
    cmd_free(g, c);
}

static void flush_notifications(struct vgpu_gpu_dev *g)
{
    for (unsigned int q = 0; q < VGPU_VU_NUM_QUEUES; q++) {
        if (g->notify_pending[q]) {
            g->notify_pending[q] = false;
            vgpu_vu_dev_notify(g->vu, q);
        }
    }
}

/* Handles every completion and event queued by the render thread. */
static void process(struct vgpu_gpu_dev *g)
{
    struct vgpu_rmsg *m;
    while ((m = vgpu_render_next(g->render))) {
        if (m->kind == VGPU_RMSG_CMD)
            complete(g, vgpu_rmsg_cmd(m));
        else
            deliver_event(g, vgpu_rmsg_event(m));
    }
    flush_notifications(g);
}

void vgpu_gpu_dev_process_completions(struct vgpu_gpu_dev *g)
{
    process(g);
    /* Room freed in the ring: pick up commands we left in the guest's queues. */
    if (!g->draining && !g->destroying) {
        queue_kick(g, VGPU_GPU_QUEUE_CONTROL);
        queue_kick(g, VGPU_GPU_QUEUE_CURSOR);
    }
}

/* Waits until the render thread has finished everything submitted (bounded by its work). */
static void drain(struct vgpu_gpu_dev *g)
{
    bool was = g->draining;
    g->draining = true;
    int waited = 0;
    while (g->inflight > 0) {
        if (vgpu_render_wait(g->render, 100) < 0 && (waited += 100) % DRAIN_WARN_MS == 0)
            vgpu_warn_guest("gpu: still waiting for %u commands on the render thread", g->inflight);
        process(g);
    }
    g->draining = was;
}

static void queue_kick(void *opaque, unsigned int q)
{
    struct vgpu_gpu_dev *g = opaque;
    if (g->draining || g->destroying || !vgpu_vu_dev_queue_ready(g->vu, q))
        return;
    /* The control queue waits while a front-end reply is pending: answers stay in order. */
    if (q == VGPU_GPU_QUEUE_CONTROL && g->waiting)
        return;
    struct vgpu_vring *vr = vgpu_vu_dev_vring(g->vu, q);
    bool submitted = false;

    /*
     * Back-pressure: pop only while the render ring has room (the guest's ring is the buffer),
     * keeping one slot for a command that waits for the front-end's reply.
     */
    while (vgpu_render_free_slots(g->render) > 1) {
        struct vgpu_rcmd *c = cmd_alloc(g);
        if (!c)
            break;
        int r = vgpu_vring_pop(vr, &c->chain);
        if (r == -EAGAIN || r == -EPROTO) {
            cmd_free(g, c);
            break;
        }
        c->queue = q;
        if (r == -EINVAL) {
            /* A refused chain goes back unanswered, so the driver can reclaim it. */
            vgpu_vring_push(vr, c->chain.head, 0);
            g->notify_pending[q] = true;
            cmd_free(g, c);
            continue;
        }
        if (q == VGPU_GPU_QUEUE_CONTROL)
            decode_control(g, c);
        else
            decode_cursor(g, c);
        if (g->waiting && g->waiting->cmd == c)
            break; /* answered when the front-end replies */
        submit(g, c);
        submitted = true;
    }
    if (submitted)
        vgpu_render_kick(g->render);
    flush_notifications(g);
}

/* --- the device interface ----------------------------------------------------------------- */

static uint64_t gpu_get_features(void *opaque)
{
    struct vgpu_gpu_dev *g = opaque;
    uint64_t f = BIT(VIRTIO_GPU_F_EDID) | BIT(VIRTIO_GPU_F_RESOURCE_UUID);
    /*
     * Only what works end to end. CONTEXT_INIT: contexts of a chosen capset and per-context
     * fence rings. RESOURCE_BLOB: guest-memory blobs and SET_SCANOUT_BLOB (Linux then puts
     * dumb buffers in guest blobs); host3d blobs and MAP_BLOB are refused (no shared-memory
     * region in the vhost-user-gpu protocol).
     */
    if (g->caps.virgl)
        f |= BIT(VIRTIO_GPU_F_VIRGL) | BIT(VIRTIO_GPU_F_CONTEXT_INIT) |
             BIT(VIRTIO_GPU_F_RESOURCE_BLOB);
    return f;
}

static int gpu_set_features(void *opaque, uint64_t features)
{
    struct vgpu_gpu_dev *g = opaque;
    g->features = features;
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

/* Answers the command waiting for the front-end from what we know, before its ring stops. */
static void answer_waiting(struct vgpu_gpu_dev *g)
{
    struct display_req *dr = g->waiting;
    if (!dr || !dr->cmd)
        return;
    struct vgpu_rcmd *c = dr->cmd;
    dr->cmd = NULL;
    g->waiting = NULL;
    if (c->hdr.type == VIRTIO_GPU_CMD_GET_EDID)
        fill_edid(g, c, dr->scanout);
    else
        fill_display_info(g, c);
    submit(g, c);
    vgpu_render_kick(g->render);
}

static void gpu_queue_stop(void *opaque, unsigned int q)
{
    struct vgpu_gpu_dev *g = opaque;
    /* Everything popped from the ring is answered before it stops (GET_VRING_BASE). */
    if (q == VGPU_GPU_QUEUE_CONTROL)
        answer_waiting(g);
    drain(g);
}

static void free_cb(void *ctx, uint32_t id, void *value)
{
    free(value);
}

static void session_reset(struct vgpu_gpu_dev *g)
{
    answer_waiting(g);
    drain(g);
    vgpu_idmap_foreach(g->resources, meta_free_cb, g);
    vgpu_idmap_destroy(g->resources);
    g->resources = vgpu_idmap_create(g->opts.max_resources);
    vgpu_idmap_foreach(g->contexts, free_cb, NULL);
    vgpu_idmap_destroy(g->contexts);
    g->contexts = vgpu_idmap_create(g->opts.max_contexts ? g->opts.max_contexts : 1);
    struct vgpu_rcmd *c = cmd_alloc(g);
    if (c) {
        c->op = VGPU_ROP_SESSION_RESET;
        c->queue = VGPU_VU_NUM_QUEUES; /* no ring */
        submit(g, c);
        vgpu_render_kick(g->render);
        drain(g);
    }
}

static void gpu_reset(void *opaque)
{
    struct vgpu_gpu_dev *g = opaque;
    session_reset(g);
    g->config.events_read = 0;
    g->config.events_clear = 0;
}

static void gpu_mem_barrier(void *opaque)
{
    struct vgpu_gpu_dev *g = opaque;
    /*
     * Everything popped points into guest memory: commands in flight, and a command parked
     * for QEMU's reply (not in flight yet). Answer the parked one from our own state and let
     * everything finish before the memory changes.
     */
    answer_waiting(g);
    drain(g);
    /*
     * Blob scanouts read guest memory whenever a frame comes home, not only in commands: the
     * render thread drops them (an empty REATTACH) before the memory goes away.
     */
    if (g->caps.virgl && !g->destroying) {
        struct vgpu_rcmd *c = cmd_alloc(g);
        if (!c) {
            vgpu_err("gpu: out of memory dropping blob scanouts before a memory change");
            return;
        }
        c->op = VGPU_ROP_REATTACH;
        c->queue = VGPU_VU_NUM_QUEUES; /* no ring */
        submit(g, c);
        vgpu_render_kick(g->render);
        drain(g);
    }
}

struct reattach_ctx {
    struct vgpu_gpu_dev *g;
    struct vgpu_reattach *items;
    unsigned int n;
};

static void reattach_cb(void *ctx, uint32_t id, void *value)
{
    struct reattach_ctx *rc = ctx;
    struct res_meta *m = value;
    if (!m->entries)
        return;
    struct vgpu_reattach *it = &rc->items[rc->n++];
    it->res_id = m->id;
    if (meta_translate(rc->g, m) < 0) {
        vgpu_warn_guest("gpu: backing of resource %u is no longer in guest memory", m->id);
        return; /* detached on the render thread; transfers fail until the next change */
    }
    it->iov = malloc((m->niov ? m->niov : 1) * sizeof(*it->iov));
    if (it->iov) {
        memcpy(it->iov, m->iov, m->niov * sizeof(*it->iov));
        it->niov = m->niov;
    }
}

/*
 * virglrenderer keeps pointers into guest memory (the attached backing): after the mapping
 * changed, every resource gets its backing translated again, in one command so that it runs
 * before anything popped later.
 */
static void gpu_mem_changed(void *opaque)
{
    struct vgpu_gpu_dev *g = opaque;
    unsigned int n = vgpu_idmap_count(g->resources);
    if (!g->caps.virgl || n == 0 || g->destroying)
        return;
    drain(g); /* a free slot in the ring, and nothing in flight uses the old backing */
    struct reattach_ctx rc = {.g = g, .items = calloc(n, sizeof(*rc.items))};
    struct vgpu_rcmd *c = rc.items ? cmd_alloc(g) : NULL;
    if (!c) {
        free(rc.items);
        vgpu_err("gpu: out of memory re-attaching backing after a memory change");
        return;
    }
    vgpu_idmap_foreach(g->resources, reattach_cb, &rc);
    c->op = VGPU_ROP_REATTACH;
    c->queue = VGPU_VU_NUM_QUEUES; /* no ring */
    c->u.reattach.items = rc.items;
    c->u.reattach.n = rc.n;
    submit(g, c);
    vgpu_render_kick(g->render);
}

static void gpu_destroy(void *opaque)
{
    struct vgpu_gpu_dev *g = opaque;
    session_reset(g);
    g->destroying = true;
    if (g->display)
        display_drop(g);
    process(g); /* frames the display gave back, events still queued */
    vgpu_idmap_destroy(g->resources);
    vgpu_idmap_foreach(g->contexts, free_cb, NULL);
    vgpu_idmap_destroy(g->contexts);
    pool_destroy(g);
    free(g);
}

static const struct vgpu_vu_device gpu_device = {
    .destroy = gpu_destroy,
    .get_features = gpu_get_features,
    .set_features = gpu_set_features,
    .config_size = sizeof(struct virtio_gpu_config),
    .get_config = gpu_get_config,
    .set_config = gpu_set_config,
    .set_display_socket = gpu_set_display_socket,
    .queue_kick = queue_kick,
    .queue_stop = gpu_queue_stop,
    .reset = gpu_reset,
    .mem_barrier = gpu_mem_barrier,
    .mem_changed = gpu_mem_changed,
};

struct vgpu_gpu_dev *vgpu_gpu_dev_attach(struct vgpu_vu_dev *vu,
                                         const struct vgpu_gpu_options *opts,
                                         struct vgpu_render *render)
{
    struct vgpu_gpu_dev *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->resources = vgpu_idmap_create(opts->max_resources);
    g->contexts = vgpu_idmap_create(opts->max_contexts ? opts->max_contexts : 1);
    if (!g->resources || !g->contexts) {
        vgpu_idmap_destroy(g->resources);
        vgpu_idmap_destroy(g->contexts);
        free(g);
        return NULL;
    }
    g->vu = vu;
    g->opts = *opts;
    g->render = render;
    vgpu_render_get_caps(render, &g->caps);
    g->config.num_scanouts = opts->outputs;
    g->config.num_capsets = g->caps.ncapsets;
    display_info_from_options(g);
    vgpu_vu_dev_set_device(vu, &gpu_device, g);
    return g;
}
