/* SPDX-License-Identifier: MIT */
#include "render/render3d.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "render/pixel.h"
#include "util/idmap.h"
#include "util/log.h"
#include "virtio/gpu_dev.h"
#include "virtio/iov.h"

/* Same caps as the reactor's (it refuses first); these only bound our own tables. */
#define MAX_RESOURCES 65536u
#define MAX_CONTEXTS 4096u
/* The submit buffer is kept between commands up to this size, freed above it. */
#define SCRATCH_KEEP (1u << 20)

/* pipe_texture_target values (virglrenderer's virgl_hw.h). */
enum {
    TARGET_TEXTURE_2D = 2,
    TARGET_TEXTURE_RECT = 5,
    TARGET_TEXTURE_2D_ARRAY = 7,
};
#define BIND_RENDER_TARGET (1u << 1)

struct res {
    uint32_t id;
    uint32_t target, format; /* virgl (= pipe) format; CREATE_2D formats are the same values */
    uint32_t width, height;
    struct iovec *iov; /* attached guest backing, owned (virglrenderer points into it) */
    unsigned int niov;
};

/* Commands waiting for their fence, oldest first. */
struct timeline {
    struct vgpu_rcmd *head, *tail;
};

struct ctx {
    uint32_t id;
    struct timeline tl;
    uint64_t next_fence;
};

struct vgpu_r3d {
    vgpu_r3d_done_fn done;
    void *data;
    struct vgpu_idmap *res;
    struct vgpu_idmap *ctxs;
    struct timeline global;
    uint32_t next_global; /* next global fence id; wraps, never 0 */
    struct vgpu_virgl_capset capsets[VGPU_R3D_MAX_CAPSETS];
    unsigned int ncapsets;
    uint8_t *scratch; /* SUBMIT_3D streams are copied here out of guest memory */
    size_t scratch_cap;
    atomic_uint nres;
};

static bool resp_is_error(uint32_t type)
{
    return type >= VIRTIO_GPU_RESP_ERR_UNSPEC;
}

/* --- fences ------------------------------------------------------------------------------- */

static void tl_append(struct timeline *tl, struct vgpu_rcmd *c)
{
    c->fence_next = NULL;
    if (tl->tail)
        tl->tail->fence_next = c;
    else
        tl->head = c;
    tl->tail = c;
}

/* Completes, oldest first, every command up to the first one whose fence has not signalled. */
static void tl_retire(struct vgpu_r3d *d, struct timeline *tl, bool global, uint64_t signalled)
{
    while (tl->head) {
        struct vgpu_rcmd *c = tl->head;
        if (c->fence_seq != 0) {
            /* Global ids are 32 bits and wrap: compare as serial numbers. */
            bool done = global ? (int32_t)((uint32_t)c->fence_seq - (uint32_t)signalled) <= 0
                               : c->fence_seq <= signalled;
            if (!done)
                break;
        }
        tl->head = c->fence_next;
        if (!tl->head)
            tl->tail = NULL;
        c->fence_next = NULL;
        d->done(d->data, c);
    }
}

/* Completes everything on tl now (its context is going away). */
static void tl_flush(struct vgpu_r3d *d, struct timeline *tl)
{
    tl_retire(d, tl, false, UINT64_MAX);
}

static void on_fence(void *data, uint32_t fence_id)
{
    struct vgpu_r3d *d = data;
    tl_retire(d, &d->global, true, fence_id);
}

static void on_context_fence(void *data, uint32_t ctx_id, uint64_t fence_id)
{
    struct vgpu_r3d *d = data;
    struct ctx *x = vgpu_idmap_get(d->ctxs, ctx_id);
    if (x)
        tl_retire(d, &x->tl, false, fence_id);
}

static const struct vgpu_virgl_ops virgl_ops = {
    .fence = on_fence,
    .context_fence = on_context_fence,
};

void vgpu_r3d_complete(struct vgpu_r3d *d, struct vgpu_rcmd *c)
{
    if (c->queue != VGPU_GPU_QUEUE_CONTROL || c->resp_len == 0 ||
        !(c->hdr.flags & VIRTIO_GPU_FLAG_FENCE)) {
        d->done(d->data, c);
        return;
    }
    struct timeline *tl = &d->global;
    struct ctx *x = NULL;
    if (c->hdr.flags & VIRTIO_GPU_FLAG_INFO_RING_IDX) {
        x = vgpu_idmap_get(d->ctxs, c->hdr.ctx_id);
        if (!x) {
            /* The reactor checked the context; it died since (a bad stream): answer now. */
            d->done(d->data, c);
            return;
        }
        tl = &x->tl;
    }
    c->fence_seq = 0;
    if (!resp_is_error(c->resp_type)) {
        int r;
        if (x) {
            uint64_t id = ++x->next_fence;
            r = vgpu_virgl_context_create_fence(x->id, id);
            if (r == 0)
                c->fence_seq = id;
        } else {
            uint32_t id = d->next_global++;
            if (d->next_global == 0)
                d->next_global = 1;
            r = vgpu_virgl_create_fence(id);
            if (r == 0)
                c->fence_seq = id;
        }
        if (r < 0)
            vgpu_warn_guest("virgl: cannot create a fence (%s): answering in order without",
                            strerror(-r));
    }
    if (c->fence_seq == 0 && !tl->head) {
        d->done(d->data, c);
        return;
    }
    tl_append(tl, c);
}

/* --- resources ---------------------------------------------------------------------------- */

static void res_detach(struct res *s)
{
    if (!s->iov)
        return;
    vgpu_virgl_resource_detach_iov(s->id);
    free(s->iov);
    s->iov = NULL;
    s->niov = 0;
}

static void res_destroy(struct vgpu_r3d *d, struct res *s)
{
    res_detach(s);
    vgpu_virgl_resource_unref(s->id);
    free(s);
    atomic_fetch_sub_explicit(&d->nres, 1, memory_order_relaxed);
}

static uint32_t res_create(struct vgpu_r3d *d, const struct vgpu_virgl_resource *a)
{
    if (vgpu_idmap_get(d->res, a->id))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    struct res *s = calloc(1, sizeof(*s));
    if (!s)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    int r = vgpu_virgl_resource_create(a);
    if (r < 0) {
        vgpu_warn_guest("virgl: resource %u (target %u format %u %ux%ux%u) refused: %s", a->id,
                        a->target, a->format, a->width, a->height, a->depth, strerror(-r));
        free(s);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    *s = (struct res){
        .id = a->id,
        .target = a->target,
        .format = a->format,
        .width = a->width,
        .height = a->height,
    };
    if (vgpu_idmap_insert(d->res, s->id, s) < 0) {
        vgpu_virgl_resource_unref(s->id);
        free(s);
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    atomic_fetch_add_explicit(&d->nres, 1, memory_order_relaxed);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_create_2d(struct vgpu_r3d *d, const struct vgpu_rcmd *c)
{
    /* As QEMU: a 2D texture the guest can render to, rows top to bottom. */
    const struct vgpu_virgl_resource a = {
        .id = c->u.create_2d.res_id,
        .target = TARGET_TEXTURE_2D,
        .format = c->u.create_2d.format,
        .bind = BIND_RENDER_TARGET,
        .width = c->u.create_2d.width,
        .height = c->u.create_2d.height,
        .depth = 1,
        .array_size = 1,
        .flags = VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP,
    };
    return res_create(d, &a);
}

static uint32_t op_create_3d(struct vgpu_r3d *d, const struct vgpu_rcmd *c)
{
    const struct vgpu_virgl_resource a = {
        .id = c->u.create_3d.res_id,
        .target = c->u.create_3d.target,
        .format = c->u.create_3d.format,
        .bind = c->u.create_3d.bind,
        .width = c->u.create_3d.width,
        .height = c->u.create_3d.height,
        .depth = c->u.create_3d.depth,
        .array_size = c->u.create_3d.array_size,
        .last_level = c->u.create_3d.last_level,
        .nr_samples = c->u.create_3d.nr_samples,
        .flags = c->u.create_3d.flags,
    };
    return res_create(d, &a);
}

/* A guest-memory blob: virglrenderer keeps the iovecs, which become ours as attached backing. */
static uint32_t op_create_blob(struct vgpu_r3d *d, struct vgpu_rcmd *c)
{
    if (vgpu_idmap_get(d->res, c->u.blob.res_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    struct res *s = calloc(1, sizeof(*s));
    if (!s)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    int r = vgpu_virgl_resource_create_blob(c->u.blob.res_id, c->u.blob.ctx_id, c->u.blob.blob_mem,
                                            c->u.blob.blob_flags, c->u.blob.blob_id, c->u.blob.size,
                                            c->u.blob.iov, c->u.blob.niov);
    if (r < 0) {
        vgpu_warn_guest("virgl: blob %u (%llu bytes) refused: %s", c->u.blob.res_id,
                        (unsigned long long)c->u.blob.size, strerror(-r));
        free(s);
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    *s = (struct res){.id = c->u.blob.res_id}; /* target 0: PIPE_BUFFER, never shown */
    s->iov = c->u.blob.iov;
    s->niov = c->u.blob.niov;
    if (vgpu_idmap_insert(d->res, s->id, s) < 0) {
        vgpu_virgl_resource_detach_iov(s->id);
        vgpu_virgl_resource_unref(s->id);
        free(s);
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    c->u.blob.iov = NULL; /* ours now */
    atomic_fetch_add_explicit(&d->nres, 1, memory_order_relaxed);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_unref(struct vgpu_r3d *d, uint32_t id)
{
    struct res *s = vgpu_idmap_remove(d->res, id);
    if (!s)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    /* virglrenderer detaches it from every context that holds it. */
    res_destroy(d, s);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_attach(struct vgpu_r3d *d, struct vgpu_rcmd *c)
{
    struct res *s = vgpu_idmap_get(d->res, c->u.backing.res_id);
    if (!s)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    res_detach(s);
    int r = vgpu_virgl_resource_attach_iov(s->id, c->u.backing.iov, c->u.backing.niov);
    if (r < 0)
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    s->iov = c->u.backing.iov;
    s->niov = c->u.backing.niov;
    c->u.backing.iov = NULL; /* ours now */
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_detach(struct vgpu_r3d *d, uint32_t id)
{
    struct res *s = vgpu_idmap_get(d->res, id);
    if (!s)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    res_detach(s);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

/* Guest memory moved: every listed resource gets its re-translated backing. */
static uint32_t op_reattach(struct vgpu_r3d *d, struct vgpu_rcmd *c)
{
    for (unsigned int i = 0; i < c->u.reattach.n; i++) {
        struct vgpu_reattach *it = &c->u.reattach.items[i];
        struct res *s = vgpu_idmap_get(d->res, it->res_id);
        if (!s)
            continue;
        res_detach(s);
        if (!it->iov)
            continue;
        if (vgpu_virgl_resource_attach_iov(s->id, it->iov, it->niov) < 0) {
            vgpu_warn("virgl: resource %u: cannot re-attach its backing", s->id);
            continue;
        }
        s->iov = it->iov;
        s->niov = it->niov;
        it->iov = NULL;
    }
    return VIRTIO_GPU_RESP_OK_NODATA;
}

/* --- contexts ----------------------------------------------------------------------------- */

static void ctx_destroy(struct vgpu_r3d *d, struct ctx *x)
{
    /* Its fences will never be reported once it is gone (measured): answer what waits. */
    tl_flush(d, &x->tl);
    vgpu_virgl_context_destroy(x->id);
    free(x);
}

static uint32_t op_ctx_create(struct vgpu_r3d *d, const struct vgpu_rcmd *c)
{
    uint32_t id = c->u.ctx_create.ctx_id;
    if (vgpu_idmap_get(d->ctxs, id))
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    struct ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    x->id = id;
    int r = vgpu_virgl_context_create(id, c->u.ctx_create.capset_id, c->u.ctx_create.nlen,
                                      c->u.ctx_create.name);
    if (r < 0) {
        vgpu_warn_guest("virgl: context %u (capset %u) refused: %s", id, c->u.ctx_create.capset_id,
                        strerror(-r));
        free(x);
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    }
    if (vgpu_idmap_insert(d->ctxs, id, x) < 0) {
        vgpu_virgl_context_destroy(id);
        free(x);
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    }
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_ctx_destroy(struct vgpu_r3d *d, uint32_t id)
{
    struct ctx *x = vgpu_idmap_remove(d->ctxs, id);
    if (!x)
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    ctx_destroy(d, x);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_ctx_res(struct vgpu_r3d *d, const struct vgpu_rcmd *c)
{
    if (!vgpu_idmap_get(d->ctxs, c->u.ctx.ctx_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    if (!vgpu_idmap_get(d->res, c->u.ctx.res_id))
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    if (c->op == VGPU_ROP_CTX_ATTACH)
        vgpu_virgl_context_attach(c->u.ctx.ctx_id, c->u.ctx.res_id);
    else
        vgpu_virgl_context_detach(c->u.ctx.ctx_id, c->u.ctx.res_id);
    return VIRTIO_GPU_RESP_OK_NODATA;
}

/* --- transfers, submissions, capsets ------------------------------------------------------ */

static uint32_t op_transfer(struct vgpu_r3d *d, const struct vgpu_rcmd *c)
{
    struct res *s = vgpu_idmap_get(d->res, c->u.transfer_3d.res_id);
    if (!s)
        return VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
    uint32_t ctx = c->u.transfer_3d.ctx_id;
    if (ctx && !vgpu_idmap_get(d->ctxs, ctx))
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    if (!s->iov)
        return VIRTIO_GPU_RESP_ERR_UNSPEC;
    /* virglrenderer checks the box against the level and the bytes against the backing. */
    int r = vgpu_virgl_transfer(c->u.transfer_3d.to_host, s->id, ctx, c->u.transfer_3d.level,
                                c->u.transfer_3d.stride, c->u.transfer_3d.layer_stride,
                                &c->u.transfer_3d.box, c->u.transfer_3d.offset, NULL, 0);
    if (r < 0) {
        vgpu_warn_guest("virgl: transfer %s resource %u refused: %s",
                        c->u.transfer_3d.to_host ? "to" : "from", s->id, strerror(-r));
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint8_t *scratch(struct vgpu_r3d *d, size_t size)
{
    if (d->scratch_cap < size) {
        free(d->scratch);
        d->scratch = malloc(size);
        d->scratch_cap = d->scratch ? size : 0;
    }
    return d->scratch;
}

static uint32_t op_submit(struct vgpu_r3d *d, struct vgpu_rcmd *c)
{
    uint32_t id = c->u.submit.ctx_id;
    struct ctx *x = vgpu_idmap_get(d->ctxs, id);
    if (!x)
        return VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID;
    uint32_t size = c->u.submit.size;
    if (size == 0)
        return VIRTIO_GPU_RESP_OK_NODATA;
    uint8_t *buf = scratch(d, size);
    if (!buf)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    /* One copy out of guest memory: the guest cannot change the stream while vrend parses. */
    if (vgpu_iov_to_buf(c->u.submit.iov, c->u.submit.niov, 0, buf, size) != size)
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    int r = vgpu_virgl_submit(id, buf, size / 4);
    if (d->scratch_cap > SCRATCH_KEEP) {
        free(d->scratch);
        d->scratch = NULL;
        d->scratch_cap = 0;
    }
    if (r < 0) {
        /* A context that sent a bad stream is gone: the guest learns it from the error. */
        vgpu_warn_guest("virgl: context %u sent a bad command stream (%s): destroying it", id,
                        strerror(-r));
        vgpu_idmap_remove(d->ctxs, id);
        ctx_destroy(d, x);
        c->ctx_lost = true;
        return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
    }
    return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t op_get_capset(struct vgpu_r3d *d, struct vgpu_rcmd *c)
{
    for (unsigned int i = 0; i < d->ncapsets; i++) {
        const struct vgpu_virgl_capset *cs = &d->capsets[i];
        if (cs->id != c->u.capset.id)
            continue;
        /* The reactor sized the zeroed response for exactly this capset. */
        if (c->u.capset.size != cs->max_size || c->u.capset.version > cs->max_version ||
            c->resp_len < sizeof(struct virtio_gpu_ctrl_hdr) + (uint64_t)cs->max_size)
            return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
        vgpu_virgl_fill_caps(cs->id, c->u.capset.version,
                             (uint8_t *)c->resp + sizeof(struct virtio_gpu_ctrl_hdr));
        return VIRTIO_GPU_RESP_OK_CAPSET;
    }
    return VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
}

uint32_t vgpu_r3d_run(struct vgpu_r3d *d, struct vgpu_rcmd *c)
{
    vgpu_virgl_force_ctx0();
    switch (c->op) {
    case VGPU_ROP_CREATE_2D:
        return op_create_2d(d, c);
    case VGPU_ROP_UNREF:
        return op_unref(d, c->u.res_id);
    case VGPU_ROP_ATTACH_BACKING:
        return op_attach(d, c);
    case VGPU_ROP_DETACH_BACKING:
        return op_detach(d, c->u.res_id);
    case VGPU_ROP_REATTACH:
        return op_reattach(d, c);
    case VGPU_ROP_CTX_CREATE:
        return op_ctx_create(d, c);
    case VGPU_ROP_CTX_DESTROY:
        return op_ctx_destroy(d, c->u.ctx.ctx_id);
    case VGPU_ROP_CTX_ATTACH:
    case VGPU_ROP_CTX_DETACH:
        return op_ctx_res(d, c);
    case VGPU_ROP_CREATE_3D:
        return op_create_3d(d, c);
    case VGPU_ROP_TRANSFER_3D:
        return op_transfer(d, c);
    case VGPU_ROP_SUBMIT_3D:
        return op_submit(d, c);
    case VGPU_ROP_GET_CAPSET:
        return op_get_capset(d, c);
    case VGPU_ROP_CREATE_BLOB:
        return op_create_blob(d, c);
    case VGPU_ROP_NONE:
    case VGPU_ROP_TRANSFER_2D:
    case VGPU_ROP_SET_SCANOUT:
    case VGPU_ROP_SET_SCANOUT_BLOB:
    case VGPU_ROP_FLUSH:
    case VGPU_ROP_CURSOR_UPDATE:
    case VGPU_ROP_CURSOR_MOVE:
    case VGPU_ROP_SESSION_RESET:
    case VGPU_ROP_DISPLAY_REPLAY:
        break;
    }
    /* Not a 3D operation: a bug in the caller, answered rather than trusted. */
    vgpu_err("virgl: operation %d is not a 3D one", (int)c->op);
    return VIRTIO_GPU_RESP_ERR_UNSPEC;
}

/* --- scanout readback --------------------------------------------------------------------- */

bool vgpu_r3d_resource(const struct vgpu_r3d *d, uint32_t id, uint32_t *width, uint32_t *height,
                       uint32_t *format)
{
    const struct res *s = vgpu_idmap_get(d->res, id);
    if (!s)
        return false;
    if (width)
        *width = s->width;
    if (height)
        *height = s->height;
    if (format) {
        bool flat = s->target == TARGET_TEXTURE_2D || s->target == TARGET_TEXTURE_RECT ||
                    s->target == TARGET_TEXTURE_2D_ARRAY;
        *format = flat ? vgpu_format_from_virgl(s->format) : 0;
    }
    return true;
}

int vgpu_r3d_read(struct vgpu_r3d *d, uint32_t id, uint32_t x, uint32_t y, uint32_t w, uint32_t h,
                  uint8_t *dst)
{
    const struct res *s = vgpu_idmap_get(d->res, id);
    if (!s || (uint64_t)x + w > s->width || (uint64_t)y + h > s->height)
        return -EINVAL;
    /*
     * Rows come back in the guest's order whatever Y_0_TOP says: virglrenderer flips Y_0_TOP
     * textures itself in both transfer directions, and renders into the others so that their
     * memory order is the guest's (measured: a CLEAR_TEXTURE of rows 0-7 of a non-Y_0_TOP
     * texture reads back in rows 0-7). The flag only matters to whoever samples the GL
     * texture directly, as a dmabuf importer would.
     */
    struct vgpu_box box = {.x = x, .y = y, .z = 0, .w = w, .h = h, .d = 1};
    struct iovec iov = {.iov_base = dst, .iov_len = (size_t)w * h * 4};
    vgpu_virgl_force_ctx0();
    return vgpu_virgl_transfer(false, id, 0, 0, w * 4, 0, &box, 0, &iov, 1);
}

unsigned int vgpu_r3d_num_resources(const struct vgpu_r3d *d)
{
    return atomic_load_explicit(&d->nres, memory_order_relaxed);
}

/* --- lifetime ----------------------------------------------------------------------------- */

static void collect_id(void *ctx, uint32_t id, void *value)
{
    uint32_t **p = ctx;
    *(*p)++ = id;
}

/* Ids of a map, so that entries can be removed while walking them. */
static uint32_t *ids_of(const struct vgpu_idmap *m, unsigned int *n)
{
    *n = vgpu_idmap_count(m);
    uint32_t *ids = malloc((*n ? *n : 1) * sizeof(*ids));
    if (!ids)
        return NULL;
    uint32_t *p = ids;
    vgpu_idmap_foreach(m, collect_id, &p);
    return ids;
}

void vgpu_r3d_reset(struct vgpu_r3d *d)
{
    /*
     * One by one, not virgl_renderer_reset(): after that call 0.10.4's sync thread no longer
     * signals the poll fd (measured), so every later fence would wait forever.
     */
    unsigned int n;
    uint32_t *ids = ids_of(d->ctxs, &n);
    for (unsigned int i = 0; ids && i < n; i++)
        op_ctx_destroy(d, ids[i]);
    free(ids);
    ids = ids_of(d->res, &n);
    for (unsigned int i = 0; ids && i < n; i++)
        op_unref(d, ids[i]);
    free(ids);
    tl_flush(d, &d->global);
}

/* The first /dev/dri/renderD* node we can open, or NULL. */
static char *find_render_node(void)
{
    DIR *dir = opendir("/dev/dri");
    if (!dir)
        return NULL;
    char *best = NULL;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (strncmp(e->d_name, "renderD", 7) != 0)
            continue;
        char path[PATH_MAX];
        (void)snprintf(path, sizeof(path), "/dev/dri/%s", e->d_name);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            continue;
        close(fd);
        if (!best || strcmp(path, best) < 0) {
            free(best);
            best = strdup(path);
        }
    }
    closedir(dir);
    return best;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct vgpu_r3d *vgpu_r3d_create(const char *render_node, vgpu_r3d_done_fn done, void *data)
{
    struct vgpu_r3d *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->done = done;
    d->data = data;
    d->next_global = 1;
    d->res = vgpu_idmap_create(MAX_RESOURCES);
    d->ctxs = vgpu_idmap_create(MAX_CONTEXTS);
    if (!d->res || !d->ctxs)
        goto err;

    double t0 = now_ms();
    const char *how;
    int r;
    if (render_node) {
        r = vgpu_virgl_init(render_node, &virgl_ops, d);
        if (r < 0) {
            vgpu_err("virgl: cannot initialise on render node %s", render_node);
            goto err;
        }
        how = render_node;
    } else {
        /* As QEMU: the first render node found; unlike QEMU, none is fine too. */
        char *node = find_render_node();
        r = node ? vgpu_virgl_init(node, &virgl_ops, d) : -ENODEV;
        how = "a render node";
        if (node && r < 0)
            vgpu_warn("virgl: render node %s does not work; trying without a GPU", node);
        free(node);
        if (r < 0) {
            r = vgpu_virgl_init(NULL, &virgl_ops, d);
            how = "EGL surfaceless (no GPU)";
        }
        if (r < 0) {
            vgpu_err("virgl: cannot initialise (EGL surfaceless platform, no render node); "
                     "run with --log-level debug for virglrenderer's reasons");
            goto err;
        }
    }
    if (vgpu_virgl_poll_fd() < 0) {
        vgpu_err("virgl: no fence fd from virglrenderer");
        vgpu_virgl_finish();
        goto err;
    }
    d->ncapsets = vgpu_virgl_capsets(d->capsets, VGPU_R3D_MAX_CAPSETS);
    if (d->ncapsets == 0) {
        vgpu_err("virgl: virglrenderer offers no capset");
        vgpu_virgl_finish();
        goto err;
    }
    vgpu_info("virgl: ready on %s in %.0f ms; %u capsets", how, now_ms() - t0, d->ncapsets);
    for (unsigned int i = 0; i < d->ncapsets; i++)
        vgpu_dbg("virgl: capset %u version %u, %u bytes", d->capsets[i].id,
                 d->capsets[i].max_version, d->capsets[i].max_size);
    return d;

err:
    vgpu_idmap_destroy(d->res);
    vgpu_idmap_destroy(d->ctxs);
    free(d);
    return NULL;
}

void vgpu_r3d_destroy(struct vgpu_r3d *d)
{
    if (!d)
        return;
    /* Nothing may be completed any more: forget what still waits (the reactor drained). */
    d->done = NULL;
    unsigned int n;
    uint32_t *ids = ids_of(d->ctxs, &n);
    for (unsigned int i = 0; ids && i < n; i++) {
        struct ctx *x = vgpu_idmap_remove(d->ctxs, ids[i]);
        vgpu_virgl_context_destroy(x->id);
        free(x);
    }
    free(ids);
    ids = ids_of(d->res, &n);
    for (unsigned int i = 0; ids && i < n; i++)
        res_destroy(d, vgpu_idmap_remove(d->res, ids[i]));
    free(ids);
    vgpu_virgl_finish();
    vgpu_idmap_destroy(d->res);
    vgpu_idmap_destroy(d->ctxs);
    free(d->scratch);
    free(d);
}

unsigned int vgpu_r3d_capsets(const struct vgpu_r3d *d, struct vgpu_virgl_capset *out,
                              unsigned int max)
{
    unsigned int n = d->ncapsets < max ? d->ncapsets : max;
    memcpy(out, d->capsets, n * sizeof(*out));
    return n;
}

int vgpu_r3d_poll_fd(const struct vgpu_r3d *d)
{
    return vgpu_virgl_poll_fd();
}

void vgpu_r3d_poll(struct vgpu_r3d *d)
{
    vgpu_virgl_poll();
}
