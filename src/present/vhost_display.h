/* SPDX-License-Identifier: MIT */
#ifndef VGPU_PRESENT_VHOST_DISPLAY_H
#define VGPU_PRESENT_VHOST_DISPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/virtio_gpu.h>

#include "present/frame.h"
#include "virtio/watch.h"

/*
 * The back-end side of QEMU's vhost-user-gpu display socket: the fd that arrives with
 * VHOST_USER_GPU_SET_SOCKET (reference/vhost-user-gpu-protocol.md section 2). We send
 * requests (SCANOUT, UPDATE, CURSOR_*, GET_DISPLAY_INFO, GET_EDID); QEMU only replies.
 *
 * What this object guarantees, unlike QEMU's own back-end:
 *   - It never blocks. The socket is non-blocking and every byte moves from a watcher
 *     callback; a QEMU that stops reading costs at most one frame in flight plus one pending
 *     frame per scanout (newest wins), never a stall of the caller.
 *   - A reply that does not come within the timeout (default 2000 ms) fails its request with
 *     -ETIMEDOUT and closes the socket, so a late reply can never be matched to a later request.
 *   - No SIGPIPE (MSG_NOSIGNAL), no UPDATE before a SCANOUT (QEMU 7.2 crashes), no message
 *     interleaved into the middle of another.
 *   - Idle means idle: with nothing queued and no reply awaited it holds one read watch and
 *     no timer.
 *
 * Threading: every function and every callback runs on the thread that runs the watcher's
 * event loop (the reactor thread). Callbacks are called from watcher callbacks, except
 * frame_done for a frame dropped by vgpu_vdisplay_update/vgpu_vdisplay_scanout, which is
 * called from inside that call. vgpu_vdisplay_destroy may be called from inside any callback
 * of this object (the memory is freed when the callback returns).
 */

/* Display protocol feature bits (VHOST_USER_GPU_PROTOCOL_F_*). */
#define VGPU_VDISPLAY_F_EDID (1ull << 0)
#define VGPU_VDISPLAY_F_DMABUF2 (1ull << 1)

/* Scanout ids are below this (virtio-gpu's own limit). */
#define VGPU_VDISPLAY_MAX_SCANOUTS 16u
/* Largest SCANOUT width or height we send; bigger ones disable the scanout instead. */
#define VGPU_VDISPLAY_MAX_DIM 16384u

struct vgpu_vdisplay;

struct vgpu_vdisplay_ops {
    /*
     * Protocol features agreed: QEMU's GET_PROTOCOL_FEATURES reply masked to {EDID, DMABUF2},
     * which is what we send back with SET_PROTOCOL_FEATURES. Called once.
     */
    void (*ready)(void *data, uint64_t features);
    /*
     * A frame given with vgpu_vdisplay_update is back: sent in full (true) or dropped
     * (false). The caller owns it again. Called exactly once per frame given.
     */
    void (*frame_done)(void *data, struct vgpu_frame *frame, bool sent);
    /*
     * The socket failed, QEMU closed it, sent something we did not ask for, or did not reply
     * in time. By now every pending request callback has been called and every frame
     * returned; later calls are no-ops (requests fail with -ECONNRESET, frames come back with
     * sent = false). Called at most once, never after vgpu_vdisplay_destroy. The owner
     * destroys the object, from inside this callback or later.
     */
    void (*closed)(void *data);
};

/*
 * Takes fd (a connected AF_UNIX stream socket; closed on failure too), makes it non-blocking,
 * starts watching it through watcher (not owned; must outlive the object) and sends
 * GET_PROTOCOL_FEATURES at once. num_scanouts: 1..VGPU_VDISPLAY_MAX_SCANOUTS, QEMU's
 * max_outputs. ops (not copied, must outlive the object) needs all three callbacks; data is
 * passed to them. Returns NULL on failure (bad arguments, out of memory or fds, send error).
 */
struct vgpu_vdisplay *vgpu_vdisplay_create(int fd, const struct vgpu_watcher *watcher,
                                           unsigned int num_scanouts,
                                           const struct vgpu_vdisplay_ops *ops, void *data);

/*
 * NULL is a no-op. Unwatches and closes every fd; calls every pending request callback with
 * -ECANCELED and returns every frame it holds with frame_done(false), before returning. The
 * closed callback is not called. Safe from inside this object's callbacks; call it once.
 */
void vgpu_vdisplay_destroy(struct vgpu_vdisplay *d);

/* The features passed to ready (VGPU_VDISPLAY_F_*), 0 until then. */
uint64_t vgpu_vdisplay_features(const struct vgpu_vdisplay *d);

/* True from the ready callback on, until the socket is closed. */
bool vgpu_vdisplay_is_ready(const struct vgpu_vdisplay *d);

/*
 * Request callbacks. status 0: the reply is valid and points to a copy that lives only for
 * the duration of the call (hdr.type checked; the other hdr fields are QEMU's: build your
 * own response header). Otherwise the pointer is NULL and status is:
 *   -ETIMEDOUT   no reply within the timeout (the socket is then closed)
 *   -ECONNRESET  the socket closed or broke before the reply
 *   -ECANCELED   vgpu_vdisplay_destroy
 *   -EPROTO      the reply was malformed (the socket is then closed)
 *   -ENOTSUP     (EDID only) asked before negotiation, and QEMU turned out not to offer EDID
 */
typedef void (*vgpu_vdisplay_info_fn)(void *data, int status,
                                      const struct virtio_gpu_resp_display_info *info);
typedef void (*vgpu_vdisplay_edid_fn)(void *data, int status,
                                      const struct virtio_gpu_resp_edid *edid);

/*
 * Asks QEMU for GET_DISPLAY_INFO. Returns 0 when fn will be called exactly once, later (never
 * from inside this call); or, with fn never called: -EINVAL (fn NULL), -ECONNRESET (socket
 * closed), -ENOMEM, or -errno from timerfd_create. Requests may be made before ready: they go
 * out after SET_PROTOCOL_FEATURES. One request is on the wire at a time; while one waits,
 * further calls share the waiting request and its reply (fns called in call order).
 */
int vgpu_vdisplay_get_display_info(struct vgpu_vdisplay *d, vgpu_vdisplay_info_fn fn, void *data);

/*
 * Asks QEMU for GET_EDID of scanout; as vgpu_vdisplay_get_display_info, plus -EINVAL if
 * scanout >= num_scanouts and -ENOTSUP if negotiation is over and EDID was not agreed. Asked
 * before ready, it waits for negotiation and fails with -ENOTSUP (via fn) if EDID is not
 * agreed. Waiting requests are shared per scanout.
 */
int vgpu_vdisplay_get_edid(struct vgpu_vdisplay *d, uint32_t scanout, vgpu_vdisplay_edid_fn fn,
                           void *data);

/*
 * Queues SCANOUT (7): scanout gets a width x height surface; width or height 0 disables it.
 * Never dropped, but replaces a SCANOUT for the same scanout that has not started to go out,
 * and drops (frame_done false, from inside this call) a pending UPDATE for it, whose size is
 * stale. Sizes above VGPU_VDISPLAY_MAX_DIM disable the scanout. Invalid scanout: logged,
 * ignored.
 */
void vgpu_vdisplay_scanout(struct vgpu_vdisplay *d, uint32_t scanout, uint32_t width,
                           uint32_t height);

/*
 * Queues UPDATE (8) with frame's pixels (not copied): the frame is ours until frame_done.
 * At most one UPDATE per scanout waits to go out: a newer one replaces it, and the older
 * frame comes back with frame_done(false) from inside this call. Dropped at once (frame_done
 * false, from inside this call, logged) when: the socket is closed; frame->scanout >=
 * num_scanouts; the last SCANOUT given for that scanout did not enable it (QEMU 7.2 crashes
 * on an UPDATE without a surface); the rectangle is empty, does not fit in that SCANOUT's
 * size, or width * height * 4 overflows or exceeds frame->capacity.
 */
void vgpu_vdisplay_update(struct vgpu_vdisplay *d, struct vgpu_frame *frame);

/*
 * Queues CURSOR_UPDATE (6): the 64x64 native-endian ARGB image (VGPU_CURSOR_SIZE^2 words,
 * copied) with hotspot, shown at x, y. One image per scanout waits at most; newer wins.
 */
void vgpu_vdisplay_cursor_update(struct vgpu_vdisplay *d, uint32_t scanout, uint32_t x, uint32_t y,
                                 uint32_t hot_x, uint32_t hot_y, const uint32_t *image);

/* Queues CURSOR_POS (4), or CURSOR_POS_HIDE (5) when !visible. One waits per scanout; newer
 * wins. */
void vgpu_vdisplay_cursor_move(struct vgpu_vdisplay *d, uint32_t scanout, uint32_t x, uint32_t y,
                               bool visible);

struct vgpu_vdisplay_stats {
    uint64_t updates_sent;       /* UPDATE messages written in full */
    uint64_t updates_dropped;    /* frames returned with sent = false */
    uint64_t cursor_dropped;     /* cursor images/positions replaced before going out */
    uint64_t bytes_sent;         /* every byte written to the socket */
    uint64_t requests_timed_out; /* requests whose reply did not come in time */
};

void vgpu_vdisplay_get_stats(const struct vgpu_vdisplay *d, struct vgpu_vdisplay_stats *out);

/*
 * How long a request may wait for its reply, in ms (default 2000, minimum 1), counted from
 * when it reaches the head of the request queue. Applies to the waiting request too.
 */
void vgpu_vdisplay_set_timeout(struct vgpu_vdisplay *d, unsigned int ms);

#endif
