/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpora of the fuzz targets: gen_corpus DIR creates DIR/<target>/seed-*.
 * The seeds are well-formed inputs in each target's format (see the comment at the top of
 * each fuzz_*.c) that reach deep states at once: a full QEMU-like negotiation, a ring with a
 * command in it, the 2D pipeline from create to unref. Rerun after changing a format:
 *   cmake --build build-fuzz --target fuzz_corpus
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <linux/vhost_types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_gpu.h>
#include <linux/virtio_ring.h>

#include "virtio/vu_msg.h"

#define BIT(n) (1ull << (n))

struct out {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct out *o, const void *src, size_t n)
{
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n)
            cap *= 2;
        uint8_t *p = realloc(o->p, cap);
        if (!p) {
            perror("realloc");
            exit(1);
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, src, n);
    o->len += n;
}

static void put8(struct out *o, uint8_t v)
{
    put(o, &v, 1);
}

static void put16(struct out *o, uint16_t v)
{
    put(o, &v, 2);
}

static void put32(struct out *o, uint32_t v)
{
    put(o, &v, 4);
}

static const char *base_dir;

static void save(const char *target, const char *name, struct out *o)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", base_dir, target) >= (int)sizeof(path) ||
        (mkdir(path, 0755) < 0 && errno != EEXIST)) {
        perror(path);
        exit(1);
    }
    if (snprintf(path, sizeof(path), "%s/%s/seed-%s", base_dir, target, name) >=
        (int)sizeof(path)) {
        (void)fputs("path too long\n", stderr);
        exit(1);
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(o->p, 1, o->len, f) != o->len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    free(o->p);
    memset(o, 0, sizeof(*o));
}

/* ---- fuzz_vu_session ---- */

enum { KIND_AUTO = 0, KIND_EVENT = 1, KIND_MEM = 2, KIND_SOCKET = 3 };

#define F_NEED_REPLY (VGPU_VU_VERSION | VGPU_VU_FLAG_NEED_REPLY)
#define RING_DESC 0x0000u
#define RING_AVAIL 0x1000u
#define RING_USED 0x2000u
#define CUR_DESC 0x3000u
#define CUR_AVAIL 0x3100u
#define CUR_USED 0x3200u
#define UVA 0x7f0000000000ull

static void msg(struct out *o, uint32_t request, uint32_t flags, const void *payload, uint16_t len,
                unsigned int nfds, unsigned int kind)
{
    put8(o, (uint8_t)(nfds | 0x08 | (kind << 4)));
    put16(o, len);
    struct vgpu_vu_hdr h = {request, flags, len};
    put(o, &h, sizeof(h));
    if (len)
        put(o, payload, len);
}

static void msg_u64(struct out *o, uint32_t request, uint64_t v, unsigned int nfds)
{
    msg(o, request, F_NEED_REPLY, &v, sizeof(v), nfds, KIND_AUTO);
}

static void msg_state(struct out *o, uint32_t request, uint32_t index, uint32_t num)
{
    struct vhost_vring_state st = {index, num};
    msg(o, request, F_NEED_REPLY, &st, sizeof(st), 0, KIND_AUTO);
}

static void poke(struct out *o, uint32_t off, const void *src, uint8_t n)
{
    put8(o, 0x80);
    put32(o, off);
    put8(o, n);
    put(o, src, n);
}

static void fire(struct out *o, uint8_t watch)
{
    put8(o, 0x81);
    put8(o, watch);
    put8(o, 1); /* VGPU_EV_READ */
}

static void completions(struct out *o)
{
    put8(o, 0x82);
}

static void mem_table(struct out *o, unsigned int nregions)
{
    struct vgpu_vu_memory m;
    memset(&m, 0, sizeof(m));
    m.nregions = nregions;
    uint64_t size = (1u << 20) / nregions;
    for (unsigned int i = 0; i < nregions; i++)
        m.regions[i] = (struct vgpu_vu_region){i * size, size, UVA + i * size, i * size};
    msg(o, VGPU_VU_SET_MEM_TABLE, F_NEED_REPLY, &m,
        (uint16_t)(8 + nregions * sizeof(struct vgpu_vu_region)), nregions, KIND_MEM);
}

static void negotiate(struct out *o, bool display)
{
    msg(o, VGPU_VU_GET_FEATURES, VGPU_VU_VERSION, NULL, 0, 0, KIND_AUTO);
    msg(o, VGPU_VU_GET_PROTOCOL_FEATURES, VGPU_VU_VERSION, NULL, 0, 0, KIND_AUTO);
    msg_u64(o, VGPU_VU_SET_PROTOCOL_FEATURES,
            BIT(VGPU_VU_PROTO_MQ) | BIT(VGPU_VU_PROTO_REPLY_ACK) | BIT(VGPU_VU_PROTO_BACKEND_REQ) |
                BIT(VGPU_VU_PROTO_CONFIG) | BIT(VGPU_VU_PROTO_RESET_DEVICE) |
                BIT(VGPU_VU_PROTO_CONFIGURE_MEM_SLOTS),
            0);
    msg(o, VGPU_VU_GET_QUEUE_NUM, F_NEED_REPLY, NULL, 0, 0, KIND_AUTO);
    msg(o, VGPU_VU_SET_OWNER, F_NEED_REPLY, NULL, 0, 0, KIND_AUTO);
    msg(o, VGPU_VU_SET_BACKEND_REQ_FD, F_NEED_REPLY, NULL, 0, 1, KIND_SOCKET);
    msg(o, VGPU_VU_GET_MAX_MEM_SLOTS, F_NEED_REPLY, NULL, 0, 0, KIND_AUTO);
    msg_u64(o, VGPU_VU_SET_FEATURES,
            BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_RING_F_INDIRECT_DESC) |
                BIT(VIRTIO_RING_F_EVENT_IDX) | BIT(VGPU_VU_F_PROTOCOL_FEATURES) |
                BIT(VIRTIO_GPU_F_EDID) | BIT(VIRTIO_GPU_F_RESOURCE_UUID),
            0);
    struct {
        uint32_t offset, size, flags;
        uint8_t region[sizeof(struct virtio_gpu_config)];
    } cfg = {0, sizeof(struct virtio_gpu_config), 0, {0}};
    msg(o, VGPU_VU_GET_CONFIG, VGPU_VU_VERSION, &cfg, sizeof(cfg), 0, KIND_AUTO);
    cfg.region[4] = 1; /* events_clear */
    msg(o, VGPU_VU_SET_CONFIG, F_NEED_REPLY, &cfg, sizeof(cfg), 0, KIND_AUTO);
    if (display)
        msg(o, VGPU_VU_GPU_SET_SOCKET, F_NEED_REPLY, NULL, 0, 1, KIND_SOCKET);
    mem_table(o, 1);
    const uint32_t num[2] = {16, 16};
    const uint64_t desc[2] = {RING_DESC, CUR_DESC}, avail[2] = {RING_AVAIL, CUR_AVAIL},
                   used[2] = {RING_USED, CUR_USED};
    for (uint32_t q = 0; q < 2; q++) {
        msg_state(o, VGPU_VU_SET_VRING_NUM, q, num[q]);
        struct vhost_vring_addr a = {.index = q,
                                     .desc_user_addr = UVA + desc[q],
                                     .avail_user_addr = UVA + avail[q],
                                     .used_user_addr = UVA + used[q]};
        msg(o, VGPU_VU_SET_VRING_ADDR, F_NEED_REPLY, &a, sizeof(a), 0, KIND_AUTO);
        msg_state(o, VGPU_VU_SET_VRING_BASE, q, 0);
        msg_u64(o, VGPU_VU_SET_VRING_CALL, q, 1);
        msg_u64(o, VGPU_VU_SET_VRING_ERR, q, 1);
        msg_u64(o, VGPU_VU_SET_VRING_KICK, q, 1);
        msg_state(o, VGPU_VU_SET_VRING_ENABLE, q, 1);
    }
}

/* A control command in the guest: request at 0x10000, response at 0x11000, chain head 0. */
static void ring_command(struct out *o, const void *req, uint8_t req_len, uint16_t avail_idx)
{
    uint16_t head = (uint16_t)((avail_idx * 2) % 16);
    uint32_t req_gpa = 0x10000u + avail_idx * 0x100u;
    uint32_t resp_gpa = 0x11000u + avail_idx * 0x200u;
    struct vring_desc d[2] = {
        {req_gpa, req_len, VRING_DESC_F_NEXT, (uint16_t)(head + 1)},
        {resp_gpa, 408, VRING_DESC_F_WRITE, 0},
    };
    poke(o, req_gpa, req, req_len);
    poke(o, RING_DESC + head * 16u, d, sizeof(d));
    poke(o, RING_AVAIL + 4u + (avail_idx % 16u) * 2u, &head, 2);
    uint16_t idx = (uint16_t)(avail_idx + 1);
    poke(o, RING_AVAIL + 2u, &idx, 2);
}

static void gen_vu_session(void)
{
    const char *t = "fuzz_vu_session";
    struct out o = {0};

    negotiate(&o, true);
    msg_state(&o, VGPU_VU_GET_VRING_BASE, 0, 0);
    msg_state(&o, VGPU_VU_GET_VRING_BASE, 1, 0);
    msg(&o, VGPU_VU_RESET_DEVICE, F_NEED_REPLY, NULL, 0, 0, KIND_AUTO);
    save(t, "negotiate", &o);

    negotiate(&o, false);
    struct virtio_gpu_ctrl_hdr info = {.type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO};
    ring_command(&o, &info, sizeof(info), 0);
    struct virtio_gpu_resource_create_2d c2d = {
        .hdr = {.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D,
                .flags = VIRTIO_GPU_FLAG_FENCE,
                .fence_id = 1},
        .resource_id = 1,
        .format = VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM,
        .width = 64,
        .height = 64,
    };
    ring_command(&o, &c2d, sizeof(c2d), 1);
    fire(&o, 0);
    completions(&o);
    completions(&o);
    save(t, "commands", &o);

    negotiate(&o, false);
    struct vgpu_vu_mem_reg reg = {0, {0x200000, 0x1000, UVA + 0x200000, 0}};
    msg(&o, VGPU_VU_ADD_MEM_REG, F_NEED_REPLY, &reg, sizeof(reg), 1, KIND_MEM);
    msg(&o, VGPU_VU_REM_MEM_REG, F_NEED_REPLY, &reg, sizeof(reg), 0, KIND_AUTO);
    mem_table(&o, 2);
    msg(&o, VGPU_VU_RESET_OWNER, F_NEED_REPLY, NULL, 0, 0, KIND_AUTO);
    save(t, "memslots", &o);

    /* The display socket: GET_PROTOCOL_FEATURES answered by "QEMU", then a hang-up. */
    msg(&o, VGPU_VU_GPU_SET_SOCKET, VGPU_VU_VERSION, NULL, 0, 1, KIND_SOCKET);
    struct vgpu_vu_hdr reply = {1, VGPU_VU_FLAG_REPLY, 8};
    uint64_t features = 1; /* EDID */
    put8(&o, 0x83);
    put8(&o, sizeof(reply) + sizeof(features));
    put(&o, &reply, sizeof(reply));
    put(&o, &features, sizeof(features));
    fire(&o, 0);
    put8(&o, 0x84);
    fire(&o, 0);
    save(t, "display", &o);

    /* Broken framing: wrong version, then a payload over the limit. */
    msg(&o, VGPU_VU_GET_FEATURES, 0x2, NULL, 0, 0, KIND_AUTO);
    save(t, "bad-version", &o);
    put8(&o, 0x00);
    put16(&o, 0);
    struct vgpu_vu_hdr big = {VGPU_VU_SET_MEM_TABLE, VGPU_VU_VERSION, 0x10000};
    put(&o, &big, sizeof(big));
    save(t, "too-big", &o);
    msg(&o, VGPU_VU_SET_VRING_KICK, VGPU_VU_VERSION, (uint64_t[]){0}, 8, 7, KIND_EVENT);
    save(t, "too-many-fds", &o);
}

/* ---- fuzz_vring ---- */

struct vring_hdr {
    uint8_t size, flags;
    uint16_t base, desc, avail, used;
};

/* Default layout for an 8-entry ring: desc at 0, avail at 128, used at 152. */
static void vring_seed(const char *name, uint8_t flags, const struct vring_desc *d, unsigned int nd,
                       const struct vring_desc *ind, unsigned int nind, uint64_t ind_gpa,
                       uint16_t avail_idx)
{
    struct out o = {0};
    struct vring_hdr h = {0, flags, 0, 0, 0, 0};
    put(&o, &h, sizeof(h));
    uint8_t mem[0x4000];
    memset(mem, 0, sizeof(mem));
    memcpy(mem, d, nd * sizeof(*d));
    uint8_t *avail = mem + (size_t)8 * 16;
    memcpy(avail + 2, &avail_idx, 2);
    for (uint16_t i = 0; i < avail_idx && i < 8; i++) {
        uint16_t head = i;
        memcpy(avail + 4 + (size_t)2 * i, &head, 2);
    }
    if (ind)
        memcpy(mem + ind_gpa, ind, nind * sizeof(*ind));
    put(&o, mem, sizeof(mem));
    save("fuzz_vring", name, &o);
}

static void gen_vring(void)
{
    struct vring_desc two[2] = {
        {0x1000, 64, VRING_DESC_F_NEXT, 1},
        {0x2000, 128, VRING_DESC_F_WRITE, 0},
    };
    vring_seed("chain", 0, two, 2, NULL, 0, 0, 1);
    vring_seed("chain-event-idx", 1, two, 2, NULL, 0, 0, 1);
    struct vring_desc indirect[1] = {{0x3000, 32, VRING_DESC_F_INDIRECT, 0}};
    vring_seed("indirect", 0, indirect, 1, two, 2, 0x3000, 1);
    /* Two regions: the buffer crosses from the first half into the second. */
    struct vring_desc cross[1] = {{0x7000, 0x2000, VRING_DESC_F_WRITE, 0}};
    vring_seed("cross-region", 0x02, cross, 1, NULL, 0, 0, 1);
    struct vring_desc loop[2] = {
        {0x1000, 16, VRING_DESC_F_NEXT, 1},
        {0x1000, 16, VRING_DESC_F_NEXT, 0},
    };
    vring_seed("loop", 0x10, loop, 2, NULL, 0, 0, 1);
    struct vring_desc many[8];
    for (uint16_t i = 0; i < 8; i++)
        many[i] = (struct vring_desc){0x1000u + i * 64u, 64, 0, 0};
    vring_seed("eight", 0x11, many, 8, NULL, 0, 0, 8);
}

/* ---- fuzz_gpu_cmd ---- */

enum {
    CTL_CURSOR = 0x01,
    CTL_SPLIT = 0x02,
    CTL_INDIRECT = 0x04,
    CTL_NO_RESP = 0x06,
    CTL_RESP_INFO = 0x08,
    CTL_RESP_EDID = 0x10,
    CTL_BARRIER = 0x20,
    CTL_MEMTABLE = 0x40,
    CTL_RESTART = 0x80,
};

static void cmd(struct out *o, uint8_t ctl, const void *req, uint16_t len)
{
    put8(o, ctl);
    put16(o, len);
    put(o, req, len);
}

static struct virtio_gpu_ctrl_hdr hdr(uint32_t type, uint64_t fence)
{
    return (struct virtio_gpu_ctrl_hdr){
        .type = type, .flags = fence ? VIRTIO_GPU_FLAG_FENCE : 0, .fence_id = fence};
}

static void create_2d(struct out *o, uint8_t ctl, uint32_t id, uint32_t w, uint32_t h)
{
    struct virtio_gpu_resource_create_2d c = {hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, 0), id,
                                              VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, w, h};
    cmd(o, ctl, &c, sizeof(c));
}

static void attach(struct out *o, uint8_t ctl, uint32_t id, uint64_t addr, uint32_t len)
{
    struct {
        struct virtio_gpu_resource_attach_backing a;
        struct virtio_gpu_mem_entry e[2];
    } r = {{hdr(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, 0), id, 2},
           {{addr, len / 2, 0}, {addr + len / 2 + 4096, len - len / 2, 0}}};
    cmd(o, ctl, &r, sizeof(r));
}

static void pipeline(struct out *o, uint8_t extra)
{
    struct virtio_gpu_ctrl_hdr info = hdr(VIRTIO_GPU_CMD_GET_DISPLAY_INFO, 0);
    cmd(o, CTL_RESP_INFO | extra, &info, sizeof(info));
    create_2d(o, 0, 1, 64, 64);
    attach(o, CTL_SPLIT, 1, 0x100000, 64 * 64 * 4);
    struct virtio_gpu_rect full = {0, 0, 64, 64};
    struct virtio_gpu_transfer_to_host_2d t = {hdr(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, 3), full, 0,
                                               1, 0};
    cmd(o, CTL_INDIRECT, &t, sizeof(t));
    struct virtio_gpu_rect part = {8, 8, 16, 16};
    t.r = part;
    t.offset = 8 * 64 * 4 + 8 * 4;
    cmd(o, extra, &t, sizeof(t));
    struct virtio_gpu_set_scanout s = {hdr(VIRTIO_GPU_CMD_SET_SCANOUT, 0), full, 0, 1};
    cmd(o, 0, &s, sizeof(s));
    struct virtio_gpu_resource_flush fl = {hdr(VIRTIO_GPU_CMD_RESOURCE_FLUSH, 4), full, 1, 0};
    cmd(o, 0, &fl, sizeof(fl));
    struct virtio_gpu_update_cursor cu = {
        hdr(VIRTIO_GPU_CMD_UPDATE_CURSOR, 0), {0, 10, 20, 0}, 1, 2, 3, 0};
    cmd(o, CTL_CURSOR | CTL_NO_RESP, &cu, sizeof(cu));
    cu.hdr.type = VIRTIO_GPU_CMD_MOVE_CURSOR;
    cmd(o, CTL_CURSOR | CTL_NO_RESP, &cu, sizeof(cu));
    fl.r = part;
    cmd(o, CTL_BARRIER, &fl, sizeof(fl));
    struct virtio_gpu_resource_detach_backing db = {hdr(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, 0),
                                                    1, 0};
    cmd(o, 0, &db, sizeof(db));
    s.resource_id = 0;
    cmd(o, 0, &s, sizeof(s));
    struct virtio_gpu_resource_unref u = {hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF, 5), 1, 0};
    cmd(o, 0, &u, sizeof(u));
}

static void gen_gpu_cmd(void)
{
    const char *t = "fuzz_gpu_cmd";
    struct out o = {0};

    put8(&o, 0x01);
    pipeline(&o, 0);
    save(t, "pipeline", &o);

    put8(&o, 0x04 | 0x10);
    pipeline(&o, CTL_MEMTABLE);
    save(t, "pipeline-two-regions", &o);

    put8(&o, 0x00);
    pipeline(&o, CTL_RESTART);
    save(t, "pipeline-restart", &o);

    /* With QEMU's display socket: display info, EDID, scanouts and updates go through it. */
    put8(&o, 0x80 | 0x10 | 0x01);
    pipeline(&o, 0);
    struct virtio_gpu_cmd_get_edid e1 = {hdr(VIRTIO_GPU_CMD_GET_EDID, 9), 1, 0};
    cmd(&o, CTL_RESP_EDID, &e1, sizeof(e1));
    save(t, "pipeline-display", &o);

    put8(&o, 0x01);
    struct virtio_gpu_cmd_get_edid e = {hdr(VIRTIO_GPU_CMD_GET_EDID, 0), 0, 0};
    cmd(&o, CTL_RESP_EDID, &e, sizeof(e));
    create_2d(&o, 0, 7, 16, 16);
    struct virtio_gpu_resource_assign_uuid au = {hdr(VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID, 0), 7, 0};
    cmd(&o, CTL_RESP_INFO, &au, sizeof(au));
    struct virtio_gpu_get_capset_info ci = {hdr(VIRTIO_GPU_CMD_GET_CAPSET_INFO, 0), 0, 0};
    cmd(&o, 0, &ci, sizeof(ci));
    struct virtio_gpu_get_capset cs = {hdr(VIRTIO_GPU_CMD_GET_CAPSET, 0), 1, 1};
    cmd(&o, 0, &cs, sizeof(cs));
    struct virtio_gpu_ctx_create cc = {hdr(VIRTIO_GPU_CMD_CTX_CREATE, 0), 4, 0, ""};
    cc.hdr.ctx_id = 1;
    cmd(&o, 0, &cc, sizeof(cc));
    save(t, "queries", &o);

    /* Many resources and backings, under the small host-memory limit. */
    put8(&o, 0x08 | 0x30);
    for (uint32_t id = 1; id <= 12; id++) {
        create_2d(&o, 0, id, 128 * id, 64);
        attach(&o, 0, id, 0x100000 + id * 0x1000, 0x8000);
    }
    save(t, "many", &o);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        (void)fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    base_dir = argv[1];
    if (mkdir(base_dir, 0755) < 0 && errno != EEXIST) {
        perror(base_dir);
        return 1;
    }
    gen_vu_session();
    gen_vring();
    gen_gpu_cmd();
    return 0;
}
