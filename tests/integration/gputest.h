/* SPDX-License-Identifier: MIT */
#ifndef VGPU_TESTS_GPUTEST_H
#define VGPU_TESTS_GPUTEST_H

/*
 * The guest's and QEMU's sides of the 2D GPU, for the integration tests (cmocka):
 *   - typed virtio-gpu commands that check the shape of every response (used length for its
 *     type, fence echo) and return its type, so a test asserts the exact code;
 *   - guest backing laid out in scattered pieces, written through its own scatter list;
 *   - the pixel words a display must receive for each virtio-gpu format, computed here from
 *     the format names, independently of the daemon's converter;
 *   - QEMU's end of the display socket: a reader that checks every message it reads against
 *     the protocol (flags, sizes, no UPDATE without an enabling SCANOUT, rectangles inside the
 *     surface, no fds), whatever the test then looks at.
 * All of it fails the running test on a violation; nothing returns an error to check.
 */

#include <stdbool.h>
#include <stdint.h>

#include "itest.h"

#define GT_MAX_SCANOUTS 16u
#define GT_CURSOR_SIZE 64u
#define GT_CURSOR_UPDATE_SIZE (20u + GT_CURSOR_SIZE * GT_CURSOR_SIZE * 4u)

/* The eight 2D formats of virtio-gpu. */
#define GT_NUM_FORMATS 8u
extern const uint32_t gt_formats[GT_NUM_FORMATS];

#define GT_RECT(x_, y_, w_, h_)                                                                    \
    ((struct virtio_gpu_rect){.x = (x_), .y = (y_), .width = (w_), .height = (h_)})

/* Fails the test unless the response type expr is want; prints both by name. */
#define GT_EXPECT(expr, want)                                                                      \
    do {                                                                                           \
        uint32_t gt_expect_r_ = (expr);                                                            \
        uint32_t gt_expect_w_ = (want);                                                            \
        if (gt_expect_r_ != gt_expect_w_)                                                          \
            gt_fail_type(__FILE__, __LINE__, #expr, gt_expect_r_, gt_expect_w_);                   \
    } while (0)

void gt_fail_type(const char *file, int line, const char *expr, uint32_t got, uint32_t want);
/* "OK_NODATA", "ERR_INVALID_PARAMETER", ... or "?" */
const char *gt_resp_name(uint32_t type);

/* ---- control queue ---- */

/*
 * Posts req with a writable buffer of resp_len bytes, waits (5 s, scaled), checks the shape
 * of the response (used length is the size of its type, 24 for OK_NODATA and errors; FENCE,
 * fence_id and ctx_id echoed when the request had FENCE, flags 0 otherwise) and copies the
 * resp_len bytes of the buffer to resp (may be NULL). Returns the response type.
 */
uint32_t gt_cmd(struct vgpu_fe *fe, const void *req, uint32_t req_len, void *resp,
                uint32_t resp_len);
/* Same with a header-only response. */
uint32_t gt_cmd0(struct vgpu_fe *fe, const void *req, uint32_t req_len);

/* A control command posted but not yet waited for (gt_post / gt_wait). */
struct gt_req {
    int head;
    uint64_t resp_gpa;
    uint32_t resp_len;
    struct virtio_gpu_ctrl_hdr hdr; /* the request's header */
};

/*
 * Posts req (one readable buffer) and a poisoned resp_len-byte writable buffer, both from the
 * guest allocator (rewind with vgpu_fe_alloc_mark/release once waited for). flags as
 * vgpu_fe_vq_post (NO_KICK, INDIRECT).
 */
void gt_post(struct vgpu_fe *fe, const void *req, uint32_t req_len, uint32_t resp_len,
             unsigned int flags, struct gt_req *r);
/*
 * Waits up to timeout_ms for the next used entry of the control queue, which must be r's,
 * checks the response as gt_cmd does and copies it to resp (may be NULL). Returns its type.
 */
uint32_t gt_wait(struct vgpu_fe *fe, struct gt_req *r, int timeout_ms, void *resp);
/* Checks the shape of a response as gt_cmd does (req_hdr: the request's header). */
uint32_t gt_check_resp(const struct virtio_gpu_ctrl_hdr *req_hdr, const void *resp,
                       uint32_t used_len, uint32_t resp_len);

/* Typed commands: fill the request, run it with gt_cmd, return the response type. */
uint32_t gt_create_2d(struct vgpu_fe *fe, uint32_t id, uint32_t format, uint32_t width,
                      uint32_t height);
uint32_t gt_unref(struct vgpu_fe *fe, uint32_t id);
uint32_t gt_detach(struct vgpu_fe *fe, uint32_t id);
uint32_t gt_transfer(struct vgpu_fe *fe, uint32_t id, struct virtio_gpu_rect r, uint64_t offset);
uint32_t gt_set_scanout(struct vgpu_fe *fe, uint32_t scanout, uint32_t id,
                        struct virtio_gpu_rect r);
uint32_t gt_flush(struct vgpu_fe *fe, uint32_t id, struct virtio_gpu_rect r);
/* The header and its nr_entries entries in two readable buffers, as Linux sends it. */
uint32_t gt_attach(struct vgpu_fe *fe, uint32_t id, const struct virtio_gpu_mem_entry *e,
                   uint32_t n);
uint32_t gt_display_info(struct vgpu_fe *fe, struct virtio_gpu_resp_display_info *out);
uint32_t gt_get_edid(struct vgpu_fe *fe, uint32_t scanout, struct virtio_gpu_resp_edid *out);
/* UPDATE_CURSOR or MOVE_CURSOR on the cursor queue; checks used length 0. */
void gt_cursor(struct vgpu_fe *fe, uint32_t type, uint32_t scanout, uint32_t x, uint32_t y,
               uint32_t res, uint32_t hot_x, uint32_t hot_y);

/* ---- guest backing ---- */

struct gt_backing {
    unsigned int n;
    struct virtio_gpu_mem_entry e[16];
    uint64_t size; /* sum of the entries' lengths */
};

void gt_backing_add(struct gt_backing *b, uint64_t gpa, uint32_t len);
/* One contiguous entry of size bytes from the guest allocator. */
void gt_backing_contig(struct vgpu_fe *fe, struct gt_backing *b, uint32_t size);
/* Copies len bytes to/from byte offset off of the backing, through its scatter list. */
void gt_backing_write(struct vgpu_fe *fe, const struct gt_backing *b, uint64_t off, const void *src,
                      size_t len);
void gt_backing_read(struct vgpu_fe *fe, const struct gt_backing *b, uint64_t off, void *dst,
                     size_t len);
uint32_t gt_attach_backing(struct vgpu_fe *fe, uint32_t id, const struct gt_backing *b);
/*
 * Reserves guest memory [boundary - before, boundary + after) around the start of the second
 * region (two_regions sessions), so that a buffer can straddle the two regions. Everything the
 * allocator had not handed out below boundary - before is wasted. Returns boundary.
 */
uint64_t gt_alloc_across(struct vgpu_fe *fe, uint32_t before, uint32_t after);

/* ---- pixels ---- */

/* The native 0xAARRGGBB word a display must get for the 4 memory bytes px of format fmt. */
uint32_t gt_argb(uint32_t fmt, const uint8_t px[4]);
/* The bits of such a word that carry meaning: 0x00ffffff for the X formats. */
uint32_t gt_argb_mask(uint32_t fmt);
const char *gt_format_name(uint32_t fmt);

/* ---- QEMU's end of the display socket ---- */

struct gt_display {
    struct vgpu_fe *fe;
    struct vgpu_fe_hdr hdr; /* the last message read */
    uint8_t *buf;           /* its payload */
    size_t cap;
    /* The surfaces as the SCANOUT messages read so far define them. */
    bool enabled[GT_MAX_SCANOUTS];
    uint32_t width[GT_MAX_SCANOUTS], height[GT_MAX_SCANOUTS];
    unsigned int count[VGPU_FE_DISPLAY_MAX];
};

/* Reads the session's display socket (serve_display must be off). */
void gt_display_init(struct gt_display *d, struct vgpu_fe *fe);
void gt_display_finish(struct gt_display *d);
/* The session has a new display socket: no surface exists on it yet. */
void gt_display_reset(struct gt_display *d);
/*
 * Reads one message within timeout_ms and checks it (see above). Returns its request number,
 * or -ETIMEDOUT, or -ECONNRESET when the back-end closed the socket.
 */
int gt_display_recv(struct gt_display *d, int timeout_ms);
/* Reads one message (5 s, scaled) and fails unless it is req. */
void gt_display_expect(struct gt_display *d, uint32_t req);
/* Fails if a message arrives within timeout_ms. */
void gt_display_expect_silence(struct gt_display *d, int timeout_ms);
/* Fails unless the back-end closes the socket within timeout_ms (messages before are read). */
void gt_display_expect_closed(struct gt_display *d, int timeout_ms);
/*
 * QEMU's side of the negotiation: expects GET_PROTOCOL_FEATURES, replies features, expects
 * SET_PROTOCOL_FEATURES with features & (EDID | DMABUF2).
 */
void gt_display_handshake(struct gt_display *d, uint64_t features);
/* u32 at byte offset off of the last payload. */
uint32_t gt_display_u32(const struct gt_display *d, size_t off);

/*
 * Whether RSS bounds hold in this lane: not under ThreadSanitizer, which keeps shadow memory
 * and history for every address ever touched (VGPU_SANITIZE, set by CTest). Prints a note when
 * they do not.
 */
bool gt_rss_bounds_apply(void);

/* Little helpers. */
uint32_t gt_load_u32(const void *p, size_t off);
void gt_store_u32(void *p, size_t off, uint32_t v);

#endif
