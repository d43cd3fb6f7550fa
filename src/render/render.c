/* SPDX-License-Identifier: MIT */
#include "render/render.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "render/pixel.h"
#include "render/render3d.h"
#include "util/idmap.h"
#include "util/log.h"
#include "util/spsc.h"
#include "virtio/gpu_dev.h"
#include "virtio/iov.h"

#define BPP 4u
/* Completions plus events: a command makes at most one completion and ~18 events. */
#define EVENTS_PER_CMD 24u
#define MAX_RESOURCES 65536u

struct resource {
    uint32_t id;
    uint32_t format;
    uint32_t width, height;
    size_t stride;
    uint8_t *pixels; /* height * stride bytes, zeroed at creation */
};

struct scanout {
    uint32_t res_id; /* 0: disabled */
    struct virtio_gpu_rect r;
    /* Damage not yet sent, in scanout coordinates; empty when width == 0. */
    struct virtio_gpu_rect damage;
    struct vgpu_frame *frame; /* lazily allocated; owned here unless frame_out */
    bool frame_out;           /* the reactor holds the frame */
    /* A guest blob shown straight from guest memory (SET_SCANOUT_BLOB): owned, NULL if not. */
    struct iovec *blob_iov;
    unsigned int blob_niov;
    uint32_t blob_format, blob_stride;
    uint64_t blob_offset;
};

struct vgpu_render {
    struct vgpu_render_options opts;
    pthread_t thread;
    bool thread_started;
    int wake_fd; /* reactor -> render: commands or returned frames */
    int done_fd; /* render -> reactor: something new (only read by vgpu_render_wait) */
    atomic_bool stop;

    struct vgpu_spsc *cmds;    /* reactor -> render */
    struct vgpu_spsc * compl ; /* render -> reactor */

    /* Frames given back by the reactor, one slot per scanout (exchange to NULL to take). */
    _Atomic(struct vgpu_frame *) returned[VGPU_GPU_MAX_OUTPUTS];

    /* Start-up: the thread reports whether 3D came up (render_main posts, create waits). */
    sem_t started;
    bool started_ok;
    struct vgpu_render_caps caps; /* written before the post, read-only afterwards */

    /* Render-thread state. */
    struct vgpu_r3d *r3d; /* with --virgl: virglrenderer owns every resource */
    struct vgpu_idmap *resources;
    struct scanout scanouts[VGPU_GPU_MAX_OUTPUTS];
    atomic_uint nresources;
    bool produced; /* something was queued for the reactor in this pass */
};

/* --- completion side ---------------------------------------------------------------------- */

static void emit(struct vgpu_render *r, struct vgpu_rmsg *m)
{
    /*
     * The completion ring is sized so that this never fills while the reactor follows the
     * protocol (it bounds commands in flight); if it does, wait for the reactor to drain it
     * rather than lose a completion.
     */
    while (!vgpu_spsc_push(r->compl, m)) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000};
        if (r->opts.notify)
            r->opts.notify(r->opts.notify_data);
        nanosleep(&ts, NULL);
    }
    r->produced = true;
}

static struct vgpu_pevent *new_event(enum vgpu_pevent_type type, uint32_t scanout_id)
{
    struct vgpu_pevent *ev = calloc(1, sizeof(*ev));
    if (!ev)
        return NULL;
    ev->msg.kind = VGPU_RMSG_EVENT;
    ev->type = type;
    ev->scanout_id = scanout_id;
    return ev;
}

static void emit_scanout(struct vgpu_render *r, uint32_t s, uint32_t w, uint32_t h)
{
    struct vgpu_pevent *ev = new_event(VGPU_PEVENT_SCANOUT, s);
    if (!ev) {
        vgpu_err("render: out of memory for a scanout event");
        return;
    }
    ev->width = w;
    ev->height = h;
    emit(r, &ev->msg);
}

/* --- frames ------------------------------------------------------------------------------- */

static bool rect_empty(const struct virtio_gpu_rect *a)
{
    return a->width == 0 || a->height == 0;
}

/* Bounding box of a and b into a (both in the same small coordinate space, no overflow:
 * every rect here lies inside a resource of at most 2^32-1 pixels per side, checked in u64). */
static void rect_union(struct virtio_gpu_rect *a, const struct virtio_gpu_rect *b)
{
    if (rect_empty(b))
        return;
    if (rect_empty(a)) {
        *a = *b;
        return;
    }
    uint64_t x0 = a->x < b->x ? a->x : b->x;
    uint64_t y0 = a->y < b->y ? a->y : b->y;
    uint64_t ax1 = (uint64_t)a->x + a->width, bx1 = (uint64_t)b->x + b->width;
    uint64_t ay1 = (uint64_t)a->y + a->height, by1 = (uint64_t)b->y + b->height;
    uint64_t x1 = ax1 > bx1 ? ax1 : bx1;
    uint64_t y1 = ay1 > by1 ? ay1 : by1;
    a->x = (uint32_t)x0;
    a->y = (uint32_t)y0;
    a->width = (uint32_t)(x1 - x0);
    a->height = (uint32_t)(y1 - y0);
}

/* Intersection of a and b, or an empty rect. */
static struct virtio_gpu_rect rect_intersect(const struct virtio_gpu_rect *a,
                                             const struct virtio_gpu_rect *b)
{
    struct virtio_gpu_rect out = {0};
    uint64_t x0 = a->x > b->x ? a->x : b->x;
    uint64_t y0 = a->y > b->y ? a->y : b->y;
    uint64_t ax1 = (uint64_t)a->x + a->width, bx1 = (uint64_t)b->x + b->width;
    uint64_t ay1 = (uint64_t)a->y + a->height, by1 = (uint64_t)b->y + b->height;
    uint64_t x1 = ax1 < bx1 ? ax1 : bx1;
    uint64_t y1 = ay1 < by1 ? ay1 : by1;
    if (x1 <= x0 || y1 <= y0)
        return out;
    out.x = (uint32_t)x0;
    out.y = (uint32_t)y0;
    out.width = (uint32_t)(x1 - x0);
    out.height = (uint32_t)(y1 - y0);
    return out;
}

static void free_frame(struct vgpu_frame *f)
{
    if (!f)
        return;
    free(f->pixels);
    free(f);
}

/* Whether resource id exists, and its size. */
static bool res_size(struct vgpu_render *r, uint32_t id, uint32_t *w, uint32_t *h)
{
    if (r->r3d)
        return vgpu_r3d_resource(r->r3d, id, w, h, NULL);
    struct resource *res = vgpu_idmap_get(r->resources, id);
    if (!res)
        return false;
    *w = res->width;
    *h = res->height;
    return true;
}

/*
 * Copies the w x h rectangle at (x, y) of resource id into dst as ARGB words (w * 4 bytes per
 * row): from our own pixels in 2D, read back from virglrenderer in 3D. The rectangle lies
 * inside the resource (checked when the scanout was set or by the caller).
 */
static bool read_argb(struct vgpu_render *r, uint32_t id, uint32_t x, uint32_t y, uint32_t w,
                      uint32_t h, uint8_t *dst)
{
    size_t row_bytes = (size_t)w * BPP;
    if (r->r3d) {
        uint32_t fmt = 0;
        if (!vgpu_r3d_resource(r->r3d, id, NULL, NULL, &fmt) || fmt == 0 ||
            vgpu_r3d_read(r->r3d, id, x, y, w, h, dst) < 0)
            return false;
        for (uint32_t row = 0; row < h; row++)
            vgpu_pixel_row_to_argb(fmt, dst + row * row_bytes, dst + row * row_bytes, w);
        return true;
    }
    struct resource *res = vgpu_idmap_get(r->resources, id);
    if (!res)
        return false;
    for (uint32_t row = 0; row < h; row++) {
        const uint8_t *src = res->pixels + ((size_t)y + row) * res->stride + (size_t)x * BPP;
        vgpu_pixel_row_to_argb(res->format, src, dst + row * row_bytes, w);
    }
    return true;
}

/* Copies w x h pixels at (x, y) of a blob scanout's framebuffer into dst as ARGB words. */
static void read_blob(const struct scanout *so, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
                      uint8_t *dst)
{
    size_t row_bytes = (size_t)w * BPP;
    for (uint32_t row = 0; row < h; row++) {
        /* Inside the blob: the reactor checked offset + stride * (height - 1) + width * 4. */
        uint64_t off = so->blob_offset + ((uint64_t)y + row) * so->blob_stride + (uint64_t)x * BPP;
        uint8_t *d = dst + row * row_bytes;
        vgpu_iov_to_buf(so->blob_iov, so->blob_niov, (size_t)off, d, row_bytes);
        vgpu_pixel_row_to_argb(so->blob_format, d, d, w);
    }
}

/* Sends the scanout's accumulated damage if its frame is at home. */
static void try_emit_frame(struct vgpu_render *r, uint32_t s)
{
    struct scanout *so = &r->scanouts[s];
    if (so->frame_out || so->res_id == 0 || rect_empty(&so->damage))
        return;
    uint32_t res_w, res_h;
    if (!res_size(r, so->res_id, &res_w, &res_h)) {
        so->damage = (struct virtio_gpu_rect){0};
        return;
    }
    const struct virtio_gpu_rect d = so->damage;
    size_t need = (size_t)d.width * d.height * BPP;
    if (!so->frame) {
        so->frame = calloc(1, sizeof(*so->frame));
        if (!so->frame)
            return;
    }
    struct vgpu_frame *f = so->frame;
    if (f->capacity < need) {
        uint8_t *p = realloc(f->pixels, need);
        if (!p) {
            vgpu_err("render: out of memory for a %ux%u frame", d.width, d.height);
            return;
        }
        f->pixels = p;
        f->capacity = need;
    }
    /* Damage is in scanout coordinates; the scanout shows the resource from (r.x, r.y). */
    if (so->blob_iov) {
        read_blob(so, so->r.x + d.x, so->r.y + d.y, d.width, d.height, f->pixels);
    } else if (!read_argb(r, so->res_id, so->r.x + d.x, so->r.y + d.y, d.width, d.height,
                          f->pixels)) {
        vgpu_warn_guest("render: cannot read back resource %u for scanout %u", so->res_id, s);
        so->damage = (struct virtio_gpu_rect){0};
        return;
    }
    f->scanout = s;
    f->x = d.x;
    f->y = d.y;
    f->width = d.width;
    f->height = d.height;

    struct vgpu_pevent *ev = new_event(VGPU_PEVENT_FRAME, s);
    if (!ev)
        return;
    ev->frame = f;
    so->frame_out = true;
    so->damage = (struct virtio_gpu_rect){0};
    emit(r, &ev->msg);
}

static void take_returned_frames(struct vgpu_render *r)
{
    for (uint32_t s = 0; s < VGPU_GPU_MAX_OUTPUTS; s++) {
        /* acq_rel: the reactor's last reads of the pixels happen before we reuse them. */
        struct vgpu_frame *f =
            atomic_exchange_explicit(&r->returned[s], NULL, memory_order_acq_rel);
        if (!f)
            continue;
        struct scanout *so = &r->scanouts[s];
        if (f != so->frame) {
            vgpu_err("render: frame returned for scanout %u is not its frame", s);
            continue;
        }
        so->frame_out = false;
        try_emit_frame(r, s);
    }
}

/* --- commands ----------------------------------------------------------------------------- */

/* Forgets the guest blob a scanout showed, if any. */
static void drop_blob(struct scanout *so)
{
    free(so->blob_iov);
    so->blob_iov = NULL;
    so->blob_niov = 0;
}

static void disable_scanout(struct vgpu_render *r, uint32_t s, bool notify)
{
    struct scanout *so = &r->scanouts[s];
    drop_blob(so);
    if (so->res_id == 0)
        return;
    so->res_id = 0;
    so->r = (struct virtio_gpu_rect){0};
    so->damage = (struct virtio_gpu_rect){0};
    if (notify)
        emit_scanout(r, s, 0, 0);
}

static void free_resource(struct resource *res)
{
    free(res->pixels);
    free(res);
}

static uint32_t op_create_2d(struct vgpu_render *r, const struct vgpu_rcmd *c)
{
    struct resource *res = calloc(1, sizeof(*res));
    if (!res)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    res->id = c->u.create_2d.res_id;
    res->format = c->u.create_2d.format;
    res->width = c->u.create_2d.width;
    res->height = c->u.create_2d.height;
    res->stride = (size_t)res->width * BPP;
    /* calloc: new resources are zeroed (no host memory reaches the guest). */
    res->pixels = calloc(res->height, res->stride);
    if (!res->pixels || vgpu_idmap_insert(r->resources, res->id, res) < 0) {
        free_resource(res);
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    atomic_fetch_add_explicit(&r->nresources, 1, memory_order_relaxed);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_unref(struct vgpu_render *r, struct vgpu_rcmd *c)
{
    uint32_t id = c->u.res_id;
    if (r->r3d) {
        uint32_t t = vgpu_r3d_run(r->r3d, c);
        if (t == VIRTIO_GPU_RESP_OK_NODATA)
            for (uint32_t s = 0; s < VGPU_GPU_MAX_OUTPUTS; s++)
                if (r->scanouts[s].res_id == id)
                    disable_scanout(r, s, true);
        return t;
    }
    struct resource *res = vgpu_idmap_remove(r->resources, id);
    if (!res)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    for (uint32_t s = 0; s < VGPU_GPU_MAX_OUTPUTS; s++)
        if (r->scanouts[s].res_id == id)
            disable_scanout(r, s, true);
    free_resource(res);
    atomic_fetch_sub_explicit(&r->nresources, 1, memory_order_relaxed);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

/* Copies the rectangle's rows out of the guest backing (a list starting at its first pixel). */
static uint32_t op_transfer_2d(struct vgpu_render *r, const struct vgpu_rcmd *c)
{
    struct resource *res = vgpu_idmap_get(r->resources, c->u.transfer.res_id);
    if (!res)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    const struct virtio_gpu_rect *rc = &c->u.transfer.r;
    if ((uint64_t)rc->x + rc->width > res->width || (uint64_t)rc->y + rc->height > res->height)
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    size_t row_bytes = (size_t)rc->width * BPP;
    size_t stride = c->u.transfer.stride;
    const struct iovec *iov = c->u.transfer.iov;
    unsigned int niov = c->u.transfer.niov;
    uint8_t *dst = res->pixels + (size_t)rc->y * res->stride + (size_t)rc->x * BPP;

    if (rc->x == 0 && rc->width == res->width && stride == res->stride) {
        /* Whole rows: one copy. */
        vgpu_iov_to_buf(iov, niov, 0, dst, row_bytes * rc->height);
        return VIRTIO_GPU_RESP_OK_NODATA;
    }
    /* Row by row, walking the list forward once instead of from its start for every row. */
    unsigned int i = 0;
    size_t base = 0; /* byte offset of iov[i] in the list */
    for (uint32_t row = 0; row < rc->height; row++) {
        size_t off = (size_t)row * stride;
        while (i < niov && base + iov[i].iov_len <= off) {
            base += iov[i].iov_len;
            i++;
        }
        vgpu_iov_to_buf(iov + i, niov - i, off - base, dst + (size_t)row * res->stride, row_bytes);
    }
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_set_scanout(struct vgpu_render *r, const struct vgpu_rcmd *c)
{
    uint32_t s = c->u.scanout.scanout_id;
    if (s >= VGPU_GPU_MAX_OUTPUTS)
        return VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
    struct scanout *so = &r->scanouts[s];
    if (c->u.scanout.res_id == 0) {
        drop_blob(so);
        so->res_id = 0;
        so->damage = (struct virtio_gpu_rect){0};
        emit_scanout(r, s, 0, 0);
        return VIRTIO_GPU_RESP_OK_NODATA;
    }
    uint32_t res_w, res_h;
    const struct virtio_gpu_rect *rc = &c->u.scanout.r;
    if (!res_size(r, c->u.scanout.res_id, &res_w, &res_h))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if ((uint64_t)rc->x + rc->width > res_w || (uint64_t)rc->y + rc->height > res_h)
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    drop_blob(so);
    so->res_id = c->u.scanout.res_id;
    so->r = *rc;
    so->damage = (struct virtio_gpu_rect){0};
    emit_scanout(r, s, rc->width, rc->height);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

/* Shows guest memory: the scanout takes the command's iovecs (validated by the reactor). */
static uint32_t op_set_scanout_blob(struct vgpu_render *r, struct vgpu_rcmd *c)
{
    uint32_t s = c->u.scanout_blob.scanout_id;
    if (s >= VGPU_GPU_MAX_OUTPUTS)
        return VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID;
    if (!r->r3d || !res_size(r, c->u.scanout_blob.res_id, &(uint32_t){0}, &(uint32_t){0}))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    struct scanout *so = &r->scanouts[s];
    const struct virtio_gpu_rect *rc = &c->u.scanout_blob.r;
    drop_blob(so);
    so->blob_iov = c->u.scanout_blob.iov;
    so->blob_niov = c->u.scanout_blob.niov;
    c->u.scanout_blob.iov = NULL; /* ours now */
    so->blob_format = c->u.scanout_blob.format;
    so->blob_stride = c->u.scanout_blob.stride;
    so->blob_offset = c->u.scanout_blob.offset;
    so->res_id = c->u.scanout_blob.res_id;
    so->r = *rc;
    so->damage = (struct virtio_gpu_rect){0};
    emit_scanout(r, s, rc->width, rc->height);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_flush(struct vgpu_render *r, const struct vgpu_rcmd *c)
{
    uint32_t id = c->u.flush.res_id;
    uint32_t res_w, res_h;
    if (!res_size(r, id, &res_w, &res_h))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    for (uint32_t s = 0; s < VGPU_GPU_MAX_OUTPUTS; s++) {
        struct scanout *so = &r->scanouts[s];
        if (so->res_id != id)
            continue;
        struct virtio_gpu_rect d = rect_intersect(&c->u.flush.r, &so->r);
        if (rect_empty(&d))
            continue;
        d.x -= so->r.x;
        d.y -= so->r.y;
        rect_union(&so->damage, &d);
        try_emit_frame(r, s);
    }
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static void op_cursor(struct vgpu_render *r, const struct vgpu_rcmd *c)
{
    const uint32_t s = c->u.cursor.scanout_id;
    if (c->op == VGPU_ROP_CURSOR_UPDATE && c->u.cursor.res_id) {
        uint32_t id = c->u.cursor.res_id, w, h;
        if (!res_size(r, id, &w, &h) || w != VGPU_CURSOR_SIZE || h != VGPU_CURSOR_SIZE)
            return; /* the reactor checked; the resource may be gone since */
        struct vgpu_pevent *ev = new_event(VGPU_PEVENT_CURSOR_IMAGE, s);
        uint32_t *img = malloc(VGPU_CURSOR_SIZE * VGPU_CURSOR_SIZE * sizeof(uint32_t));
        if (!ev || !img ||
            !read_argb(r, id, 0, 0, VGPU_CURSOR_SIZE, VGPU_CURSOR_SIZE, (uint8_t *)img)) {
            free(ev);
            free(img);
            return;
        }
        ev->image = img;
        ev->x = c->u.cursor.x;
        ev->y = c->u.cursor.y;
        ev->hot_x = c->u.cursor.hot_x;
        ev->hot_y = c->u.cursor.hot_y;
        ev->visible = true;
        emit(r, &ev->msg);
        return;
    }
    struct vgpu_pevent *ev = new_event(VGPU_PEVENT_CURSOR_MOVE, s);
    if (!ev)
        return;
    ev->x = c->u.cursor.x;
    ev->y = c->u.cursor.y;
    ev->visible = c->u.cursor.res_id != 0;
    emit(r, &ev->msg);
}

static void free_resource_cb(void *ctx, uint32_t id, void *value)
{
    free_resource(value);
}

static void op_session_reset(struct vgpu_render *r)
{
    if (r->r3d)
        vgpu_r3d_reset(r->r3d);
    vgpu_idmap_foreach(r->resources, free_resource_cb, NULL);
    vgpu_idmap_destroy(r->resources);
    r->resources = vgpu_idmap_create(MAX_RESOURCES);
    atomic_store_explicit(&r->nresources, 0, memory_order_relaxed);
    for (uint32_t s = 0; s < VGPU_GPU_MAX_OUTPUTS; s++)
        disable_scanout(r, s, false);
}

/* Completion callback of the 3D state: now or when the command's fence signals. */
static void cmd_done(void *data, struct vgpu_rcmd *c)
{
    emit(data, &c->msg);
}

/*
 * A new display socket knows nothing of what the guest shows (a paused and resumed VM keeps
 * its scanouts and has no reason to set them again): announce each enabled scanout and send
 * all of it as damage.
 */
static void op_display_replay(struct vgpu_render *r)
{
    for (uint32_t s = 0; s < VGPU_GPU_MAX_OUTPUTS; s++) {
        struct scanout *so = &r->scanouts[s];
        if (so->res_id == 0)
            continue;
        emit_scanout(r, s, so->r.width, so->r.height);
        so->damage = (struct virtio_gpu_rect){0, 0, so->r.width, so->r.height};
        try_emit_frame(r, s);
    }
}

static void run_cmd(struct vgpu_render *r, struct vgpu_rcmd *c)
{
    switch (c->op) {
    case VGPU_ROP_NONE:
        break;
    case VGPU_ROP_CREATE_2D:
        c->resp_type = r->r3d ? vgpu_r3d_run(r->r3d, c) : op_create_2d(r, c);
        break;
    case VGPU_ROP_UNREF:
        c->resp_type = op_unref(r, c);
        break;
    case VGPU_ROP_TRANSFER_2D:
        c->resp_type = op_transfer_2d(r, c);
        break;
    case VGPU_ROP_SET_SCANOUT:
        c->resp_type = op_set_scanout(r, c);
        break;
    case VGPU_ROP_SET_SCANOUT_BLOB:
        c->resp_type = op_set_scanout_blob(r, c);
        break;
    case VGPU_ROP_FLUSH:
        c->resp_type = op_flush(r, c);
        break;
    case VGPU_ROP_CURSOR_UPDATE:
    case VGPU_ROP_CURSOR_MOVE:
        op_cursor(r, c);
        break;
    case VGPU_ROP_SESSION_RESET:
        op_session_reset(r);
        break;
    case VGPU_ROP_DISPLAY_REPLAY:
        op_display_replay(r);
        break;
    case VGPU_ROP_ATTACH_BACKING:
    case VGPU_ROP_DETACH_BACKING:
    case VGPU_ROP_REATTACH:
    case VGPU_ROP_CTX_CREATE:
    case VGPU_ROP_CTX_DESTROY:
    case VGPU_ROP_CTX_ATTACH:
    case VGPU_ROP_CTX_DETACH:
    case VGPU_ROP_CREATE_3D:
    case VGPU_ROP_TRANSFER_3D:
    case VGPU_ROP_SUBMIT_3D:
    case VGPU_ROP_GET_CAPSET:
    case VGPU_ROP_CREATE_BLOB:
        /* The reactor sends these only in 3D mode; answer rather than trust it. */
        c->resp_type = r->r3d ? vgpu_r3d_run(r->r3d, c) : VIRTIO_GPU_RESP_ERR_UNSPEC;
        /* Blob scanouts point into the old guest memory: the guest sets them again. */
        if (c->op == VGPU_ROP_REATTACH)
            for (uint32_t s = 0; s < VGPU_GPU_MAX_OUTPUTS; s++)
                if (r->scanouts[s].blob_iov)
                    disable_scanout(r, s, true);
        break;
    }
    if (r->r3d)
        vgpu_r3d_complete(r->r3d, c); /* fenced commands wait for their fence */
    else
        emit(r, &c->msg);
}

/* --- the thread --------------------------------------------------------------------------- */

/* With --virgl: brings virglrenderer up on this thread, which must then make every call. */
static bool start_3d(struct vgpu_render *r)
{
    r->r3d = vgpu_r3d_create(r->opts.render_node, cmd_done, r);
    if (!r->r3d)
        return false;
    struct vgpu_virgl_capset cs[VGPU_RENDER_MAX_CAPSETS];
    unsigned int n = vgpu_r3d_capsets(r->r3d, cs, VGPU_RENDER_MAX_CAPSETS);
    r->caps.virgl = true;
    r->caps.ncapsets = n;
    for (unsigned int i = 0; i < n; i++) {
        r->caps.capsets[i].id = cs[i].id;
        r->caps.capsets[i].max_version = cs[i].max_version;
        r->caps.capsets[i].max_size = cs[i].max_size;
    }
    return true;
}

static void *render_main(void *arg)
{
    struct vgpu_render *r = arg;

    r->started_ok = !r->opts.virgl || start_3d(r);
    /* The post orders the caps (and started_ok) before create's reads of them. */
    sem_post(&r->started);
    if (!r->started_ok)
        return NULL;

    /* Commands and returned frames; with 3D also virglrenderer's fence eventfd. */
    struct pollfd pfd[2] = {
        {.fd = r->wake_fd, .events = POLLIN},
        {.fd = r->r3d ? vgpu_r3d_poll_fd(r->r3d) : -1, .events = POLLIN},
    };
    while (!atomic_load_explicit(&r->stop, memory_order_acquire)) {
        r->produced = false;
        take_returned_frames(r);
        struct vgpu_rcmd *c;
        while ((c = vgpu_spsc_pop(r->cmds)))
            run_cmd(r, c);
        if (r->r3d && (pfd[1].revents & POLLIN))
            vgpu_r3d_poll(r->r3d); /* completes the commands whose fences signalled */
        if (r->produced) {
            eventfd_write(r->done_fd, 1);
            if (r->opts.notify)
                r->opts.notify(r->opts.notify_data);
        }
        /*
         * Sleep until the reactor kicks or a fence signals. The kick is an eventfd counter,
         * so a kick that arrives between the last pop and this poll is not lost; virglrenderer
         * reads its own eventfd in vgpu_r3d_poll. No timeout: idle means idle.
         */
        pfd[1].revents = 0;
        if (poll(pfd, r->r3d ? 2 : 1, -1) < 0 && errno != EINTR)
            vgpu_err("render: poll failed: %s", strerror(errno));
        eventfd_t v;
        if (pfd[0].revents & POLLIN)
            (void)eventfd_read(r->wake_fd, &v);
    }
    /* virglrenderer is confined to this thread: it goes down here, not in destroy. */
    vgpu_r3d_destroy(r->r3d);
    r->r3d = NULL;
    return NULL;
}

struct vgpu_render *vgpu_render_create(const struct vgpu_render_options *opts)
{
    struct vgpu_render *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->opts = *opts;
    unsigned int n = opts->ring_size ? opts->ring_size : 256;
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->cmds = vgpu_spsc_create(n);
    r->compl = vgpu_spsc_create(n * EVENTS_PER_CMD < 65536 ? 8192 : 65536);
    r->resources = vgpu_idmap_create(MAX_RESOURCES);
    if (r->wake_fd < 0 || r->done_fd < 0 || !r->cmds || !r->compl || !r->resources)
        goto err;
    if (sem_init(&r->started, 0, 0) < 0)
        goto err;
    int e = pthread_create(&r->thread, NULL, render_main, r);
    if (e) {
        vgpu_err("cannot start the render thread: %s", strerror(e));
        sem_destroy(&r->started);
        goto err;
    }
    r->thread_started = true;
    while (sem_wait(&r->started) < 0 && errno == EINTR)
        ;
    sem_destroy(&r->started);
    if (!r->started_ok)
        goto err; /* logged by the thread, which has returned */
    return r;
err:
    vgpu_render_destroy(r);
    return NULL;
}

void vgpu_render_destroy(struct vgpu_render *r)
{
    if (!r)
        return;
    if (r->thread_started) {
        atomic_store_explicit(&r->stop, true, memory_order_release);
        eventfd_write(r->wake_fd, 1);
        pthread_join(r->thread, NULL);
    }
    /* Anything still queued either way belongs to nobody else now. */
    struct vgpu_rmsg *m;
    while (r->compl &&(m = vgpu_spsc_pop(r->compl ))) {
        if (m->kind == VGPU_RMSG_EVENT) {
            struct vgpu_pevent *ev = vgpu_rmsg_event(m);
            free(ev->image);
            free(ev);
        }
        /* Commands belong to the reactor's pool, which frees them. */
    }
    if (r->resources) {
        vgpu_idmap_foreach(r->resources, free_resource_cb, NULL);
        vgpu_idmap_destroy(r->resources);
    }
    for (uint32_t s = 0; s < VGPU_GPU_MAX_OUTPUTS; s++) {
        free_frame(r->scanouts[s].frame);
        drop_blob(&r->scanouts[s]);
    }
    vgpu_spsc_destroy(r->cmds);
    vgpu_spsc_destroy(r->compl );
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    if (r->done_fd >= 0)
        close(r->done_fd);
    free(r);
}

unsigned int vgpu_render_free_slots(struct vgpu_render *r)
{
    return vgpu_spsc_free_slots(r->cmds);
}

bool vgpu_render_submit(struct vgpu_render *r, struct vgpu_rcmd *cmd)
{
    cmd->msg.kind = VGPU_RMSG_CMD;
    return vgpu_spsc_push(r->cmds, cmd);
}

void vgpu_render_kick(struct vgpu_render *r)
{
    eventfd_write(r->wake_fd, 1);
}

struct vgpu_rmsg *vgpu_render_next(struct vgpu_render *r)
{
    return vgpu_spsc_pop(r->compl );
}

int vgpu_render_wait(struct vgpu_render *r, int timeout_ms)
{
    if (!vgpu_spsc_is_empty(r->compl ))
        return 0;
    struct pollfd pfd = {.fd = r->done_fd, .events = POLLIN};
    int n = poll(&pfd, 1, timeout_ms);
    if (n > 0) {
        eventfd_t v;
        (void)eventfd_read(r->done_fd, &v);
        return 0;
    }
    return vgpu_spsc_is_empty(r->compl ) ? -ETIMEDOUT : 0;
}

void vgpu_render_return_frame(struct vgpu_render *r, struct vgpu_frame *frame)
{
    if (!frame || frame->scanout >= VGPU_GPU_MAX_OUTPUTS)
        return;
    /* release: our reads of the pixels are done before the render thread may write them. */
    atomic_store_explicit(&r->returned[frame->scanout], frame, memory_order_release);
    eventfd_write(r->wake_fd, 1);
}

unsigned int vgpu_render_num_resources(struct vgpu_render *r)
{
    unsigned int n = atomic_load_explicit(&r->nresources, memory_order_relaxed);
    /* r3d is set before create returns and cleared only by the thread's exit. */
    return r->r3d ? n + vgpu_r3d_num_resources(r->r3d) : n;
}

void vgpu_render_get_caps(const struct vgpu_render *r, struct vgpu_render_caps *caps)
{
    *caps = r->caps;
}
