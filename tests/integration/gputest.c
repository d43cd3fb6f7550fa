/* SPDX-License-Identifier: MIT */
#include "gputest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CMD_TIMEOUT_MS 5000
#define DISPLAY_BUF_SIZE (8u << 20) /* a 1280x800 UPDATE is 4,096,020 bytes */
#define POISON 0xa5

const uint32_t gt_formats[GT_NUM_FORMATS] = {
    VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
    VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM,
    VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM,
    VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM, VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM,
};

uint32_t gt_load_u32(const void *p, size_t off)
{
    uint32_t v;

    memcpy(&v, (const uint8_t *)p + off, sizeof(v));
    return v;
}

void gt_store_u32(void *p, size_t off, uint32_t v)
{
    memcpy((uint8_t *)p + off, &v, sizeof(v));
}

bool gt_rss_bounds_apply(void)
{
    const char *san = getenv("VGPU_SANITIZE");

    if (san != NULL && strstr(san, "thread") != NULL) {
        print_message("RSS bound not checked under ThreadSanitizer\n");
        return false;
    }
    return true;
}

const char *gt_resp_name(uint32_t type)
{
    switch (type) {
    case VIRTIO_GPU_RESP_OK_NODATA:
        return "OK_NODATA";
    case VIRTIO_GPU_RESP_OK_DISPLAY_INFO:
        return "OK_DISPLAY_INFO";
    case VIRTIO_GPU_RESP_OK_CAPSET_INFO:
        return "OK_CAPSET_INFO";
    case VIRTIO_GPU_RESP_OK_CAPSET:
        return "OK_CAPSET";
    case VIRTIO_GPU_RESP_OK_EDID:
        return "OK_EDID";
    case VIRTIO_GPU_RESP_OK_RESOURCE_UUID:
        return "OK_RESOURCE_UUID";
    case VIRTIO_GPU_RESP_OK_MAP_INFO:
        return "OK_MAP_INFO";
    case VIRTIO_GPU_RESP_ERR_UNSPEC:
        return "ERR_UNSPEC";
    case VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY:
        return "ERR_OUT_OF_MEMORY";
    case VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID:
        return "ERR_INVALID_SCANOUT_ID";
    case VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID:
        return "ERR_INVALID_RESOURCE_ID";
    case VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID:
        return "ERR_INVALID_CONTEXT_ID";
    case VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER:
        return "ERR_INVALID_PARAMETER";
    default:
        return "?";
    }
}

void gt_fail_type(const char *file, int line, const char *expr, uint32_t got, uint32_t want)
{
    print_error("%s:%d: %s = 0x%x (%s), expected 0x%x (%s)\n", file, line, expr, got,
                gt_resp_name(got), want, gt_resp_name(want));
    _fail(file, line);
}

/* ---- control queue ---- */

/* The size of a response of this type, or 0 for types a 2D device never sends. */
static uint32_t resp_size(uint32_t type)
{
    if (type >= VIRTIO_GPU_RESP_ERR_UNSPEC && type <= VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER)
        return sizeof(struct virtio_gpu_ctrl_hdr);
    switch (type) {
    case VIRTIO_GPU_RESP_OK_NODATA:
        return sizeof(struct virtio_gpu_ctrl_hdr);
    case VIRTIO_GPU_RESP_OK_DISPLAY_INFO:
        return sizeof(struct virtio_gpu_resp_display_info);
    case VIRTIO_GPU_RESP_OK_CAPSET_INFO:
        return sizeof(struct virtio_gpu_resp_capset_info);
    case VIRTIO_GPU_RESP_OK_EDID:
        return sizeof(struct virtio_gpu_resp_edid);
    case VIRTIO_GPU_RESP_OK_RESOURCE_UUID:
        return sizeof(struct virtio_gpu_resp_resource_uuid);
    default:
        return 0;
    }
}

uint32_t gt_check_resp(const struct virtio_gpu_ctrl_hdr *req, const void *resp, uint32_t used_len,
                       uint32_t resp_len)
{
    struct virtio_gpu_ctrl_hdr h;

    if (used_len < sizeof(h)) {
        print_error("command 0x%x: used length %u, shorter than a response header\n", req->type,
                    used_len);
        fail();
    }
    memcpy(&h, resp, sizeof(h));
    uint32_t want = resp_size(h.type);
    if (want == 0) {
        print_error("command 0x%x: response type 0x%x is not one a 2D device sends\n", req->type,
                    h.type);
        fail();
    }
    if (used_len != want || want > resp_len) {
        print_error("command 0x%x: response %s with used length %u, expected %u\n", req->type,
                    gt_resp_name(h.type), used_len, want);
        fail();
    }
    if (req->flags & VIRTIO_GPU_FLAG_FENCE) {
        if (!(h.flags & VIRTIO_GPU_FLAG_FENCE) || h.fence_id != req->fence_id ||
            h.ctx_id != req->ctx_id) {
            print_error("command 0x%x fence %llu ctx %u: response flags 0x%x fence %llu ctx %u\n",
                        req->type, (unsigned long long)req->fence_id, req->ctx_id, h.flags,
                        (unsigned long long)h.fence_id, h.ctx_id);
            fail();
        }
    } else if (h.flags != 0 || h.fence_id != 0) {
        print_error("command 0x%x without fence: response flags 0x%x fence %llu\n", req->type,
                    h.flags, (unsigned long long)h.fence_id);
        fail();
    }
    return h.type;
}

static struct virtio_gpu_ctrl_hdr req_header(const void *req, uint32_t req_len)
{
    struct virtio_gpu_ctrl_hdr h;

    memset(&h, 0, sizeof(h));
    memcpy(&h, req, req_len < sizeof(h) ? req_len : sizeof(h));
    if (req_len < sizeof(h))
        h.flags = 0; /* a truncated header is answered without a fence */
    return h;
}

uint32_t gt_cmd(struct vgpu_fe *fe, const void *req, uint32_t req_len, void *resp,
                uint32_t resp_len)
{
    uint8_t buf[sizeof(struct virtio_gpu_resp_edid)];
    uint32_t len = 0;

    assert_true(resp_len >= sizeof(struct virtio_gpu_ctrl_hdr) && resp_len <= sizeof(buf));
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CTRLQ, req, req_len, buf, resp_len, 0,
                             itest_ms(CMD_TIMEOUT_MS), &len));
    struct virtio_gpu_ctrl_hdr h = req_header(req, req_len);
    uint32_t type = gt_check_resp(&h, buf, len, resp_len);
    if (resp != NULL)
        memcpy(resp, buf, resp_len);
    return type;
}

uint32_t gt_cmd0(struct vgpu_fe *fe, const void *req, uint32_t req_len)
{
    return gt_cmd(fe, req, req_len, NULL, sizeof(struct virtio_gpu_ctrl_hdr));
}

void gt_post(struct vgpu_fe *fe, const void *req, uint32_t req_len, uint32_t resp_len,
             unsigned int flags, struct gt_req *r)
{
    uint64_t req_gpa = vgpu_fe_alloc(fe, req_len, 64);
    uint64_t resp_gpa = vgpu_fe_alloc(fe, resp_len, 64);

    assert_true(req_gpa != 0 && resp_gpa != 0);
    memcpy(vgpu_fe_gpa_ptr(fe, req_gpa, req_len), req, req_len);
    memset(vgpu_fe_gpa_ptr(fe, resp_gpa, resp_len), POISON, resp_len);
    struct vgpu_fe_buf bufs[2] = {{req_gpa, req_len}, {resp_gpa, resp_len}};
    r->head = vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, 1, 1, flags);
    FE_CHECK(fe, r->head);
    r->resp_gpa = resp_gpa;
    r->resp_len = resp_len;
    r->hdr = req_header(req, req_len);
}

uint32_t gt_wait(struct vgpu_fe *fe, struct gt_req *r, int timeout_ms, void *resp)
{
    uint16_t head = 0;
    uint32_t len = 0;

    FE_CHECK(fe, vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, timeout_ms, &head, &len));
    if (head != r->head) {
        print_error("command 0x%x fence %llu: used entry %u came back before its own (%d)\n",
                    r->hdr.type, (unsigned long long)r->hdr.fence_id, head, r->head);
        fail();
    }
    const void *p = vgpu_fe_gpa_ptr(fe, r->resp_gpa, r->resp_len);
    uint32_t type = gt_check_resp(&r->hdr, p, len, r->resp_len);
    if (resp != NULL)
        memcpy(resp, p, r->resp_len);
    return type;
}

static struct virtio_gpu_ctrl_hdr hdr_of(uint32_t type)
{
    struct virtio_gpu_ctrl_hdr h;

    memset(&h, 0, sizeof(h));
    h.type = type;
    return h;
}

uint32_t gt_create_2d(struct vgpu_fe *fe, uint32_t id, uint32_t format, uint32_t width,
                      uint32_t height)
{
    struct virtio_gpu_resource_create_2d c = {
        .hdr = hdr_of(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D),
        .resource_id = id,
        .format = format,
        .width = width,
        .height = height,
    };

    return gt_cmd0(fe, &c, sizeof(c));
}

uint32_t gt_unref(struct vgpu_fe *fe, uint32_t id)
{
    struct virtio_gpu_resource_unref c = {
        .hdr = hdr_of(VIRTIO_GPU_CMD_RESOURCE_UNREF),
        .resource_id = id,
    };

    return gt_cmd0(fe, &c, sizeof(c));
}

uint32_t gt_detach(struct vgpu_fe *fe, uint32_t id)
{
    struct virtio_gpu_resource_detach_backing c = {
        .hdr = hdr_of(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING),
        .resource_id = id,
    };

    return gt_cmd0(fe, &c, sizeof(c));
}

uint32_t gt_transfer(struct vgpu_fe *fe, uint32_t id, struct virtio_gpu_rect r, uint64_t offset)
{
    struct virtio_gpu_transfer_to_host_2d c = {
        .hdr = hdr_of(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D),
        .r = r,
        .offset = offset,
        .resource_id = id,
    };

    return gt_cmd0(fe, &c, sizeof(c));
}

uint32_t gt_set_scanout(struct vgpu_fe *fe, uint32_t scanout, uint32_t id, struct virtio_gpu_rect r)
{
    struct virtio_gpu_set_scanout c = {
        .hdr = hdr_of(VIRTIO_GPU_CMD_SET_SCANOUT),
        .r = r,
        .scanout_id = scanout,
        .resource_id = id,
    };

    return gt_cmd0(fe, &c, sizeof(c));
}

uint32_t gt_flush(struct vgpu_fe *fe, uint32_t id, struct virtio_gpu_rect r)
{
    struct virtio_gpu_resource_flush c = {
        .hdr = hdr_of(VIRTIO_GPU_CMD_RESOURCE_FLUSH),
        .r = r,
        .resource_id = id,
    };

    return gt_cmd0(fe, &c, sizeof(c));
}

uint32_t gt_attach(struct vgpu_fe *fe, uint32_t id, const struct virtio_gpu_mem_entry *e,
                   uint32_t n)
{
    struct virtio_gpu_resource_attach_backing c = {
        .hdr = hdr_of(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING),
        .resource_id = id,
        .nr_entries = n,
    };
    const uint32_t resp_len = sizeof(struct virtio_gpu_ctrl_hdr);
    uint64_t mark = vgpu_fe_alloc_mark(fe);
    uint64_t hdr_gpa = vgpu_fe_alloc(fe, sizeof(c), 64);
    uint64_t ent_gpa = n > 0 ? vgpu_fe_alloc(fe, (size_t)n * sizeof(*e), 64) : 0;
    uint64_t resp_gpa = vgpu_fe_alloc(fe, resp_len, 64);
    struct vgpu_fe_buf bufs[3];
    unsigned int n_out = 0;

    assert_true(hdr_gpa != 0 && resp_gpa != 0 && (n == 0 || ent_gpa != 0));
    memcpy(vgpu_fe_gpa_ptr(fe, hdr_gpa, sizeof(c)), &c, sizeof(c));
    bufs[n_out++] = (struct vgpu_fe_buf){hdr_gpa, sizeof(c)};
    if (n > 0) {
        memcpy(vgpu_fe_gpa_ptr(fe, ent_gpa, (size_t)n * sizeof(*e)), e, (size_t)n * sizeof(*e));
        bufs[n_out++] = (struct vgpu_fe_buf){ent_gpa, n * (uint32_t)sizeof(*e)};
    }
    memset(vgpu_fe_gpa_ptr(fe, resp_gpa, resp_len), POISON, resp_len);
    bufs[n_out] = (struct vgpu_fe_buf){resp_gpa, resp_len};
    struct gt_req r = {.resp_gpa = resp_gpa, .resp_len = resp_len, .hdr = c.hdr};
    r.head = vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, n_out, 1, 0);
    FE_CHECK(fe, r.head);
    uint32_t type = gt_wait(fe, &r, itest_ms(CMD_TIMEOUT_MS), NULL);
    vgpu_fe_alloc_release(fe, mark);
    return type;
}

uint32_t gt_display_info(struct vgpu_fe *fe, struct virtio_gpu_resp_display_info *out)
{
    struct virtio_gpu_ctrl_hdr c = hdr_of(VIRTIO_GPU_CMD_GET_DISPLAY_INFO);
    struct virtio_gpu_resp_display_info info;

    uint32_t type = gt_cmd(fe, &c, sizeof(c), &info, sizeof(info));
    if (out != NULL)
        *out = info;
    return type;
}

uint32_t gt_get_edid(struct vgpu_fe *fe, uint32_t scanout, struct virtio_gpu_resp_edid *out)
{
    struct virtio_gpu_cmd_get_edid c = {
        .hdr = hdr_of(VIRTIO_GPU_CMD_GET_EDID),
        .scanout = scanout,
    };
    struct virtio_gpu_resp_edid e;

    uint32_t type = gt_cmd(fe, &c, sizeof(c), &e, sizeof(e));
    if (out != NULL)
        *out = e;
    return type;
}

void gt_cursor(struct vgpu_fe *fe, uint32_t type, uint32_t scanout, uint32_t x, uint32_t y,
               uint32_t res, uint32_t hot_x, uint32_t hot_y)
{
    struct virtio_gpu_update_cursor c = {
        .hdr = hdr_of(type),
        .pos = {.scanout_id = scanout, .x = x, .y = y},
        .resource_id = res,
        .hot_x = hot_x,
        .hot_y = hot_y,
    };
    uint32_t len = 1;

    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CURSORQ, &c, sizeof(c), NULL, 0, 0,
                             itest_ms(CMD_TIMEOUT_MS), &len));
    assert_int_equal(len, 0);
}

/* ---- guest backing ---- */

void gt_backing_add(struct gt_backing *b, uint64_t gpa, uint32_t len)
{
    assert_true(b->n < sizeof(b->e) / sizeof(b->e[0]));
    b->e[b->n++] = (struct virtio_gpu_mem_entry){.addr = gpa, .length = len};
    b->size += len;
}

void gt_backing_contig(struct vgpu_fe *fe, struct gt_backing *b, uint32_t size)
{
    uint64_t gpa = vgpu_fe_alloc(fe, size, 4096);

    assert_true(gpa != 0);
    memset(b, 0, sizeof(*b));
    gt_backing_add(b, gpa, size);
}

/* Calls fn for each piece of [off, off+len) of the backing, with its host address. */
static void backing_walk(struct vgpu_fe *fe, const struct gt_backing *b, uint64_t off, size_t len,
                         uint8_t *buf, bool write)
{
    uint64_t base = 0;

    assert_true(off + len <= b->size);
    for (unsigned int i = 0; i < b->n && len > 0; i++) {
        uint64_t elen = b->e[i].length;
        if (off < base + elen) {
            uint64_t in = off - base;
            size_t chunk = (size_t)(elen - in < len ? elen - in : len);
            uint8_t *p = vgpu_fe_gpa_ptr(fe, b->e[i].addr + in, chunk);
            assert_non_null(p);
            if (write)
                memcpy(p, buf, chunk);
            else
                memcpy(buf, p, chunk);
            buf += chunk;
            off += chunk;
            len -= chunk;
        }
        base += elen;
    }
}

void gt_backing_write(struct vgpu_fe *fe, const struct gt_backing *b, uint64_t off, const void *src,
                      size_t len)
{
    backing_walk(fe, b, off, len, (uint8_t *)src, true);
}

void gt_backing_read(struct vgpu_fe *fe, const struct gt_backing *b, uint64_t off, void *dst,
                     size_t len)
{
    backing_walk(fe, b, off, len, dst, false);
}

uint32_t gt_attach_backing(struct vgpu_fe *fe, uint32_t id, const struct gt_backing *b)
{
    return gt_attach(fe, id, b->e, b->n);
}

uint64_t gt_alloc_across(struct vgpu_fe *fe, uint32_t before, uint32_t after)
{
    const struct vgpu_fe_region *r1 = vgpu_fe_region(fe, 1);

    assert_non_null(r1);
    assert_true(before % 16 == 0 && after % 16 == 0 && before > 0 && after > 0);
    uint64_t boundary = r1->gpa;
    uint64_t next = (vgpu_fe_alloc_mark(fe) + 15) & ~15ull;
    assert_true(next <= boundary - before);
    if (next < boundary - before)
        assert_true(vgpu_fe_alloc(fe, boundary - before - next, 16) == next);
    assert_true(vgpu_fe_alloc(fe, before, 16) == boundary - before);
    assert_true(vgpu_fe_alloc(fe, after, 16) == boundary);
    return boundary;
}

/* ---- pixels ---- */

struct format_layout {
    uint32_t fmt;
    const char *name;
    unsigned int r, g, b, a; /* byte index of each channel in memory */
    bool alpha;              /* a is alpha, not an X byte */
};

/* Straight from the names: virtio-gpu format names list the bytes in memory order. */
static const struct format_layout layouts[GT_NUM_FORMATS] = {
    {VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, "B8G8R8A8", 2, 1, 0, 3, true},
    {VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, "B8G8R8X8", 2, 1, 0, 3, false},
    {VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, "A8R8G8B8", 1, 2, 3, 0, true},
    {VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, "X8R8G8B8", 1, 2, 3, 0, false},
    {VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, "R8G8B8A8", 0, 1, 2, 3, true},
    {VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM, "X8B8G8R8", 3, 2, 1, 0, false},
    {VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM, "A8B8G8R8", 3, 2, 1, 0, true},
    {VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM, "R8G8B8X8", 0, 1, 2, 3, false},
};

static const struct format_layout *layout(uint32_t fmt)
{
    for (unsigned int i = 0; i < GT_NUM_FORMATS; i++) {
        if (layouts[i].fmt == fmt)
            return &layouts[i];
    }
    print_error("format %u is not a 2D format\n", fmt);
    fail();
    return NULL;
}

uint32_t gt_argb(uint32_t fmt, const uint8_t px[4])
{
    const struct format_layout *l = layout(fmt);

    return (uint32_t)px[l->a] << 24 | (uint32_t)px[l->r] << 16 | (uint32_t)px[l->g] << 8 |
           (uint32_t)px[l->b];
}

uint32_t gt_argb_mask(uint32_t fmt)
{
    return layout(fmt)->alpha ? 0xffffffffu : 0x00ffffffu;
}

const char *gt_format_name(uint32_t fmt)
{
    return layout(fmt)->name;
}

/* ---- display socket ---- */

void gt_display_init(struct gt_display *d, struct vgpu_fe *fe)
{
    memset(d, 0, sizeof(*d));
    d->fe = fe;
    d->cap = DISPLAY_BUF_SIZE;
    d->buf = malloc(d->cap);
    assert_non_null(d->buf);
}

void gt_display_finish(struct gt_display *d)
{
    free(d->buf);
    d->buf = NULL;
}

void gt_display_reset(struct gt_display *d)
{
    memset(d->enabled, 0, sizeof(d->enabled));
    memset(d->width, 0, sizeof(d->width));
    memset(d->height, 0, sizeof(d->height));
}

uint32_t gt_display_u32(const struct gt_display *d, size_t off)
{
    assert_true(off + 4 <= d->hdr.size);
    return gt_load_u32(d->buf, off);
}

static void bad_message(const struct gt_display *d, const char *why)
{
    print_error("display message %u (flags 0x%x, %u bytes): %s\n", d->hdr.request, d->hdr.flags,
                d->hdr.size, why);
    fail();
}

static void check_size(const struct gt_display *d, uint32_t size)
{
    if (d->hdr.size != size) {
        char why[64];
        (void)snprintf(why, sizeof(why), "expected %u bytes", size);
        bad_message(d, why);
    }
}

static uint32_t check_scanout(const struct gt_display *d)
{
    uint32_t s = gt_load_u32(d->buf, 0);

    if (s >= GT_MAX_SCANOUTS)
        bad_message(d, "scanout id out of range");
    return s;
}

/* The protocol rules every message must follow (reference section 2). */
static void check_message(struct gt_display *d)
{
    if (d->hdr.flags != 0)
        bad_message(d, "requests carry flags 0");
    switch (d->hdr.request) {
    case VGPU_FE_DISPLAY_GET_PROTOCOL_FEATURES:
    case VGPU_FE_DISPLAY_GET_DISPLAY_INFO:
        check_size(d, 0);
        break;
    case VGPU_FE_DISPLAY_SET_PROTOCOL_FEATURES:
        check_size(d, 8);
        break;
    case VGPU_FE_DISPLAY_CURSOR_POS:
    case VGPU_FE_DISPLAY_CURSOR_POS_HIDE:
        check_size(d, 12);
        check_scanout(d);
        break;
    case VGPU_FE_DISPLAY_CURSOR_UPDATE:
        check_size(d, GT_CURSOR_UPDATE_SIZE);
        check_scanout(d);
        break;
    case VGPU_FE_DISPLAY_GET_EDID:
        check_size(d, 4);
        check_scanout(d);
        break;
    case VGPU_FE_DISPLAY_SCANOUT: {
        check_size(d, 12);
        uint32_t s = check_scanout(d);
        d->width[s] = gt_load_u32(d->buf, 4);
        d->height[s] = gt_load_u32(d->buf, 8);
        d->enabled[s] = d->width[s] > 0 && d->height[s] > 0;
        if (!d->enabled[s] && (d->width[s] | d->height[s]) != 0)
            bad_message(d, "a disabling SCANOUT is 0x0");
        break;
    }
    case VGPU_FE_DISPLAY_UPDATE: {
        if (d->hdr.size < 20)
            bad_message(d, "UPDATE shorter than its header");
        uint32_t s = check_scanout(d);
        uint64_t x = gt_load_u32(d->buf, 4), y = gt_load_u32(d->buf, 8);
        uint64_t w = gt_load_u32(d->buf, 12), h = gt_load_u32(d->buf, 16);
        if (!d->enabled[s])
            bad_message(d, "UPDATE for a scanout without a surface (no SCANOUT before it)");
        if (w == 0 || h == 0)
            bad_message(d, "empty UPDATE");
        if (d->hdr.size != 20 + w * h * 4)
            bad_message(d, "UPDATE size is not 20 + width * height * 4");
        if (x + w > d->width[s] || y + h > d->height[s])
            bad_message(d, "UPDATE outside the surface");
        break;
    }
    default:
        bad_message(d, "not a message a 2D back-end sends");
    }
}

int gt_display_recv(struct gt_display *d, int timeout_ms)
{
    int fd = -1;

    memset(&d->hdr, 0, sizeof(d->hdr));
    int r = vgpu_fe_display_recv(d->fe, timeout_ms, &d->hdr, d->buf, d->cap, &fd);
    if (fd >= 0) {
        close(fd);
        bad_message(d, "an fd came with it");
    }
    if (r == -ETIMEDOUT || r == -ECONNRESET)
        return r;
    FE_CHECK(d->fe, r);
    check_message(d);
    d->count[d->hdr.request]++;
    return (int)d->hdr.request;
}

void gt_display_expect(struct gt_display *d, uint32_t req)
{
    int r = gt_display_recv(d, itest_ms(CMD_TIMEOUT_MS));

    if (r != (int)req) {
        print_error("display: expected message %u, got %d (%s)\n", req, r,
                    r < 0 ? strerror(-r) : "another message");
        fail();
    }
}

void gt_display_expect_silence(struct gt_display *d, int timeout_ms)
{
    int r = gt_display_recv(d, timeout_ms);

    if (r != -ETIMEDOUT) {
        print_error("display: expected nothing, got %d (%s)\n", r,
                    r < 0 ? strerror(-r) : "a message");
        fail();
    }
}

void gt_display_expect_closed(struct gt_display *d, int timeout_ms)
{
    int64_t deadline = vgpu_fe_now_ms() + timeout_ms;

    for (;;) {
        int64_t left = deadline - vgpu_fe_now_ms();
        int r = gt_display_recv(d, left > 0 ? (int)left : 0);
        if (r == -ECONNRESET)
            return;
        if (r == -ETIMEDOUT) {
            print_error("display: the back-end did not close the socket within %d ms\n",
                        timeout_ms);
            fail();
        }
    }
}

void gt_display_handshake(struct gt_display *d, uint64_t features)
{
    gt_display_expect(d, VGPU_FE_DISPLAY_GET_PROTOCOL_FEATURES);
    FE_CHECK(d->fe, vgpu_fe_display_reply(d->fe, VGPU_FE_DISPLAY_GET_PROTOCOL_FEATURES, &features,
                                          sizeof(features)));
    gt_display_expect(d, VGPU_FE_DISPLAY_SET_PROTOCOL_FEATURES);
    uint64_t set;
    memcpy(&set, d->buf, sizeof(set));
    assert_int_equal(set, features & 3u);
}
