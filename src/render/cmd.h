/* SPDX-License-Identifier: MIT */
#ifndef VGPU_RENDER_CMD_H
#define VGPU_RENDER_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_gpu.h>

#include "present/frame.h"
#include "virtio/vring.h"

/*
 * What crosses between the reactor and the render thread (DESIGN.md): a whole command one way,
 * the same object back as its completion, plus presentation events from the render thread.
 * Every argument here was validated by the reactor against its own view of the resources;
 * the render thread still never trusts an index it did not check itself.
 *
 * Ownership: the reactor allocates a vgpu_rcmd and fills the "request" part; a successful push
 * onto the command ring gives it to the render thread, which fills the "result" part and
 * returns it on the completion ring. Nothing in it is shared while the other side owns it.
 */

/* Everything on the completion ring starts with this, so the reactor can tell them apart. */
enum vgpu_rmsg_kind {
    VGPU_RMSG_CMD,   /* a struct vgpu_rcmd coming back completed */
    VGPU_RMSG_EVENT, /* a struct vgpu_pevent for the presenter */
};

struct vgpu_rmsg {
    enum vgpu_rmsg_kind kind;
};

/* Largest SUBMIT_3D command stream (QEMU's backend caps it at 4 MiB; Mesa flushes at 256 KiB). */
#define VGPU_SUBMIT_MAX (16u << 20)

enum vgpu_rop {
    VGPU_ROP_NONE = 0,       /* nothing to render: completes in order with resp as prepared */
    VGPU_ROP_CREATE_2D,      /* u.create_2d */
    VGPU_ROP_UNREF,          /* u.res_id: also disables scanouts and the cursor using it */
    VGPU_ROP_TRANSFER_2D,    /* u.transfer: copy guest backing into the resource */
    VGPU_ROP_SET_SCANOUT,    /* u.scanout */
    VGPU_ROP_FLUSH,          /* u.flush */
    VGPU_ROP_CURSOR_UPDATE,  /* u.cursor: new image (res_id 0 hides) and position */
    VGPU_ROP_CURSOR_MOVE,    /* u.cursor: position only */
    VGPU_ROP_SESSION_RESET,  /* drop every resource, scanout and cursor of the session */
    VGPU_ROP_DISPLAY_REPLAY, /* a new display: announce every enabled scanout, resend it whole */
    /* 3D (virglrenderer) only: */
    VGPU_ROP_ATTACH_BACKING,   /* u.backing: the render thread takes iov when it succeeds */
    VGPU_ROP_DETACH_BACKING,   /* u.res_id */
    VGPU_ROP_REATTACH,         /* u.reattach: guest memory changed, new iovecs for resources;
                                  drops blob scanouts (sent empty before a change too) */
    VGPU_ROP_CTX_CREATE,       /* u.ctx_create */
    VGPU_ROP_CTX_DESTROY,      /* u.ctx.ctx_id */
    VGPU_ROP_CTX_ATTACH,       /* u.ctx: resource into a context */
    VGPU_ROP_CTX_DETACH,       /* u.ctx */
    VGPU_ROP_CREATE_3D,        /* u.create_3d */
    VGPU_ROP_TRANSFER_3D,      /* u.transfer_3d: to or from the host, through the attached iov */
    VGPU_ROP_SUBMIT_3D,        /* u.submit: command stream in guest memory */
    VGPU_ROP_GET_CAPSET,       /* u.capset: fill resp after its 24-byte header */
    VGPU_ROP_CREATE_BLOB,      /* u.blob: guest-memory blob; the render thread takes iov */
    VGPU_ROP_SET_SCANOUT_BLOB, /* u.scanout_blob: show guest memory; the render thread takes iov */
};

/* A 3D box (struct virgl_box / pipe_box layout). */
struct vgpu_box {
    uint32_t x, y, z, w, h, d;
};

/* One resource's new backing after a guest memory change (VGPU_ROP_REATTACH). */
struct vgpu_reattach {
    uint32_t res_id;
    struct iovec *iov; /* NULL: the backing is no longer in guest memory, just detach */
    unsigned int niov;
};

struct vgpu_rcmd {
    struct vgpu_rmsg msg; /* first: kind VGPU_RMSG_CMD */
    /* --- request, filled by the reactor --- */
    enum vgpu_rop op;
    unsigned int queue;             /* virtqueue the command came from */
    struct vgpu_chain chain;        /* reactor only: where the response goes */
    struct virtio_gpu_ctrl_hdr hdr; /* the request header (type, fence, ctx) */
    union {
        uint32_t res_id;
        struct {
            uint32_t res_id, format, width, height;
        } create_2d;
        struct {
            uint32_t res_id;
            struct virtio_gpu_rect r; /* inside the resource */
            uint32_t stride;          /* bytes per row in the backing (resource width * 4) */
            struct iovec *iov;        /* backing bytes from the first pixel of the rect on */
            unsigned int niov;
        } transfer;
        struct {
            uint32_t scanout_id, res_id; /* res_id 0 disables */
            struct virtio_gpu_rect r;    /* inside the resource */
        } scanout;
        struct {
            uint32_t res_id;
            struct virtio_gpu_rect r;
        } flush;
        struct {
            uint32_t scanout_id, x, y;
            uint32_t res_id, hot_x, hot_y; /* UPDATE only; res_id 0 hides */
        } cursor;
        struct {
            uint32_t res_id;
            struct iovec *iov; /* the whole backing, in order; NULL once taken */
            unsigned int niov;
        } backing;
        struct {
            struct vgpu_reattach *items; /* the render thread takes the iovs it attaches */
            unsigned int n;
        } reattach;
        struct {
            uint32_t ctx_id;
            uint32_t capset_id; /* 0: the default (VIRGL2) */
            uint32_t nlen;      /* bytes of name used, <= 64 */
            char name[64];
        } ctx_create;
        struct {
            uint32_t ctx_id, res_id;
        } ctx;
        struct {
            uint32_t res_id, target, format, bind, width, height, depth, array_size, last_level,
                nr_samples, flags;
        } create_3d;
        struct {
            uint32_t res_id, ctx_id, level, stride, layer_stride;
            struct vgpu_box box;
            uint64_t offset;
            bool to_host;
        } transfer_3d;
        struct {
            uint32_t ctx_id;
            uint32_t size;     /* bytes, a multiple of 4, at most VGPU_SUBMIT_MAX */
            struct iovec *iov; /* exactly size bytes of the chain, after the request */
            unsigned int niov;
        } submit;
        struct {
            uint32_t id, version, size; /* size: bytes after the response header */
        } capset;
        struct {
            uint32_t res_id, ctx_id, blob_mem, blob_flags;
            uint64_t blob_id, size;
            struct iovec *iov; /* exactly size bytes of guest memory; NULL once taken */
            unsigned int niov;
        } blob;
        struct {
            uint32_t scanout_id, res_id;
            struct virtio_gpu_rect r; /* inside width x height */
            uint32_t format, width, height, stride;
            uint64_t offset;   /* of pixel (0, 0); offset + stride * (height - 1) + width * 4
                                  <= the bytes in iov (checked by the reactor) */
            struct iovec *iov; /* the blob's guest memory; NULL once taken */
            unsigned int niov;
        } scanout_blob;
    } u;
    uint64_t serial; /* reactor's identity of the resource a CREATE made */

    /* --- response: prepared by the reactor or written by the render thread --- */
    bool ctx_lost;      /* the render thread destroyed u.submit.ctx_id after a bad stream */
    uint32_t resp_type; /* VIRTIO_GPU_RESP_* */
    uint32_t resp_len;  /* bytes of resp to write (header included); 0 = no response */
    void *resp;         /* resp_buf or heap */
    _Alignas(8) uint8_t resp_buf[64];

    struct vgpu_rcmd *next_free; /* reactor only: its pool of unused commands */

    /* Render thread only, while the command waits for its fence (render/render3d.c). */
    struct vgpu_rcmd *fence_next;
    uint64_t fence_seq; /* our fence id, 0: none (completes after those before it) */
};

/* Events the render thread produces for presenters running on the reactor. */
enum vgpu_pevent_type {
    VGPU_PEVENT_SCANOUT,      /* scanout_id, width/height (0: disabled) */
    VGPU_PEVENT_FRAME,        /* frame: give it back with vgpu_render_return_frame */
    VGPU_PEVENT_CURSOR_IMAGE, /* scanout_id, x, y, hot_x, hot_y, image */
    VGPU_PEVENT_CURSOR_MOVE,  /* scanout_id, x, y, visible */
};

/* Allocated by the render thread, freed by the reactor with free() (and free(image)). */
struct vgpu_pevent {
    struct vgpu_rmsg msg; /* first: kind VGPU_RMSG_EVENT */
    enum vgpu_pevent_type type;
    uint32_t scanout_id;
    uint32_t width, height;
    uint32_t x, y, hot_x, hot_y;
    bool visible;
    struct vgpu_frame *frame;
    uint32_t *image; /* CURSOR_IMAGE: VGPU_CURSOR_SIZE^2 words, heap */
};

/* Downcasts from the completion ring (the rmsg is the first member of both). */
static inline struct vgpu_rcmd *vgpu_rmsg_cmd(struct vgpu_rmsg *m)
{
    return m->kind == VGPU_RMSG_CMD ? (struct vgpu_rcmd *)(void *)m : NULL;
}

static inline struct vgpu_pevent *vgpu_rmsg_event(struct vgpu_rmsg *m)
{
    return m->kind == VGPU_RMSG_EVENT ? (struct vgpu_pevent *)(void *)m : NULL;
}

#endif
