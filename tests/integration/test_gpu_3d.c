/* SPDX-License-Identifier: MIT */
/*
 * 3D through virglrenderer (--virgl), driven by the fake front-end as a guest's virgl driver
 * would: capsets, contexts, 3D resources, a hand-written virgl command stream that clears a
 * render target, transfers back into guest memory, fences on the global timeline and on
 * per-context rings, the readback path to QEMU's display, and what a hostile guest sends
 * (bad sizes, unknown ids, garbage streams). No GPU needed: Mesa's llvmpipe under EGL's
 * surfaceless platform.
 *
 * One --virgl daemon serves the tests one session after another (each session starts from a
 * clean device); the start-up tests spawn their own.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define BIT(n) (1ull << (n))
#define CMD_TIMEOUT_MS 10000

/* virgl protocol (virglrenderer src/virgl_protocol.h). */
#define VIRGL_CMD0(cmd, obj, len)                                                                  \
    ((uint32_t)(cmd) | ((uint32_t)(obj) << 8) | ((uint32_t)(len) << 16))
enum {
    VIRGL_CCMD_NOP = 0,
    VIRGL_CCMD_CREATE_OBJECT = 1,
    VIRGL_CCMD_SET_FRAMEBUFFER_STATE = 5,
    VIRGL_CCMD_CLEAR = 7,
    VIRGL_CCMD_CLEAR_TEXTURE = 47,
    VIRGL_OBJECT_SURFACE = 8,
    PIPE_CLEAR_COLOR0 = 1 << 2,
    PIPE_TEXTURE_2D = 2,
    VIRGL_BIND_RENDER_TARGET = 1 << 1,
    VIRGL_BIND_SAMPLER_VIEW = 1 << 3,
};

#define W 64u
#define H 64u
#define MAX_CTX_ID 4096u /* VGPU_GPU_MAX_CTX_ID */
#define CAPSET_VENUS 4u  /* not in Debian 12's linux/virtio_gpu.h */

static struct {
    char *dir;
    char *path;
    struct vgpu_fe_daemon *d;
} fx;

static struct vgpu_fe_daemon *spawn_virgl(const char *path, unsigned int flags)
{
    static const char *const args[] = {"--virgl", NULL};
    static const char *const debug_args[] = {"--virgl", "--log-level", "debug", NULL};
    struct vgpu_fe_daemon *d =
        vgpu_fe_daemon_spawn_socket(path, getenv("VGPU_TEST_DEBUG") ? debug_args : args, flags);
    if (!d) {
        print_error("spawning vhost-gpu --virgl on %s failed: %s\n", path, strerror(errno));
        fail();
    }
    return d;
}

static int group_setup(void **state)
{
    fx.dir = itest_mkdtemp();
    fx.path = itest_path(fx.dir, "vgpu3d.sock");
    int64_t t0 = vgpu_fe_now_ms();
    fx.d = spawn_virgl(fx.path, 0);
    print_message("# --virgl daemon serving after %lld ms (virgl init included)\n",
                  (long long)(vgpu_fe_now_ms() - t0));
    return 0;
}

static int group_teardown(void **state)
{
    itest_release_all();
    /* A clean exit after all that 3D work: virglrenderer torn down on its thread, no leak. */
    int status = -1;
    if (vgpu_fe_daemon_signal(fx.d, SIGTERM) < 0 ||
        vgpu_fe_daemon_wait(fx.d, itest_ms(20000), &status) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        print_error("the --virgl daemon did not exit cleanly on SIGTERM (status 0x%x)\n",
                    (unsigned)status);
        vgpu_fe_daemon_destroy(fx.d);
        return -1;
    }
    vgpu_fe_daemon_destroy(fx.d);
    free(fx.path);
    itest_rmdir(fx.dir);
    return 0;
}

static int teardown(void **state)
{
    itest_release_all();
    assert_true(vgpu_fe_daemon_is_alive(fx.d));
    return 0;
}

/* A negotiated session; display (QEMU's display socket) only when asked for. */
static struct vgpu_fe *session(bool display)
{
    struct vgpu_fe_config cfg;
    vgpu_fe_config_init(&cfg);
    cfg.guest_features |= BIT(VIRTIO_GPU_F_VIRGL) | BIT(VIRTIO_GPU_F_CONTEXT_INIT);
    cfg.queue_size[VGPU_FE_CTRLQ] = 256; /* QEMU's size with virgl */
    cfg.mem_size = 128ull << 20;
    cfg.no_display_socket = !display;
    cfg.serve_display = false;
    struct vgpu_fe *fe = itest_connect(fx.d, &cfg);
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    return fe;
}

static struct virtio_gpu_ctrl_hdr hdr(uint32_t type, uint32_t ctx)
{
    return (struct virtio_gpu_ctrl_hdr){.type = type, .ctx_id = ctx};
}

/*
 * Runs one control command with a resp_len-byte writable buffer; checks the used length is
 * the response's own size (24 for errors and OK_NODATA) and returns the response type.
 */
static uint32_t cmd(struct vgpu_fe *fe, const void *req, uint32_t len, void *resp,
                    uint32_t resp_len)
{
    uint8_t buf[2048];
    assert_true(resp_len <= sizeof(buf));
    uint32_t used = 0;
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CTRLQ, req, len, buf, resp_len, 0,
                             itest_ms(CMD_TIMEOUT_MS), &used));
    assert_true(used >= sizeof(struct virtio_gpu_ctrl_hdr));
    struct virtio_gpu_ctrl_hdr h;
    memcpy(&h, buf, sizeof(h));
    if (h.type >= VIRTIO_GPU_RESP_ERR_UNSPEC || h.type == VIRTIO_GPU_RESP_OK_NODATA)
        assert_int_equal(used, sizeof(struct virtio_gpu_ctrl_hdr));
    if (resp)
        memcpy(resp, buf, used);
    return h.type;
}

static uint32_t cmd0(struct vgpu_fe *fe, const void *req, uint32_t len)
{
    return cmd(fe, req, len, NULL, sizeof(struct virtio_gpu_ctrl_hdr));
}

static uint32_t ctx_create(struct vgpu_fe *fe, uint32_t ctx, uint32_t context_init)
{
    struct virtio_gpu_ctx_create c = {
        .hdr = hdr(VIRTIO_GPU_CMD_CTX_CREATE, ctx),
        .nlen = 8,
        .context_init = context_init,
    };
    memcpy(c.debug_name, "itest-3d", 8);
    return cmd0(fe, &c, sizeof(c));
}

static uint32_t ctx_destroy(struct vgpu_fe *fe, uint32_t ctx)
{
    struct virtio_gpu_ctrl_hdr c = hdr(VIRTIO_GPU_CMD_CTX_DESTROY, ctx);
    return cmd0(fe, &c, sizeof(c));
}

static uint32_t ctx_res(struct vgpu_fe *fe, uint32_t type, uint32_t ctx, uint32_t res)
{
    struct virtio_gpu_ctx_resource c = {.hdr = hdr(type, ctx), .resource_id = res};
    return cmd0(fe, &c, sizeof(c));
}

static uint32_t create_3d(struct vgpu_fe *fe, uint32_t id, uint32_t format, uint32_t w, uint32_t h,
                          uint32_t flags)
{
    struct virtio_gpu_resource_create_3d c = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_3D, 0),
        .resource_id = id,
        .target = PIPE_TEXTURE_2D,
        .format = format,
        .bind = VIRGL_BIND_RENDER_TARGET | VIRGL_BIND_SAMPLER_VIEW,
        .width = w,
        .height = h,
        .depth = 1,
        .array_size = 1,
        .flags = flags,
    };
    return cmd0(fe, &c, sizeof(c));
}

/* Attaches size bytes of fresh guest memory and returns their gpa. */
static uint64_t attach(struct vgpu_fe *fe, uint32_t id, uint32_t size)
{
    uint64_t gpa = vgpu_fe_alloc(fe, size, 4096);
    assert_true(gpa != 0);
    struct {
        struct virtio_gpu_resource_attach_backing a;
        struct virtio_gpu_mem_entry e;
    } c = {
        .a = {.hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, 0),
              .resource_id = id,
              .nr_entries = 1},
        .e = {.addr = gpa, .length = size},
    };
    assert_int_equal(cmd0(fe, &c, sizeof(c)), VIRTIO_GPU_RESP_OK_NODATA);
    return gpa;
}

static uint32_t transfer_3d(struct vgpu_fe *fe, uint32_t type, uint32_t ctx, uint32_t id,
                            struct virtio_gpu_box box, uint64_t offset, uint32_t stride)
{
    struct virtio_gpu_transfer_host_3d c = {
        .hdr = hdr(type, ctx),
        .box = box,
        .offset = offset,
        .resource_id = id,
        .stride = stride,
    };
    return cmd0(fe, &c, sizeof(c));
}

#define BOX(x_, y_, w_, h_)                                                                        \
    ((struct virtio_gpu_box){.x = (x_), .y = (y_), .w = (w_), .h = (h_), .d = 1})

/* SUBMIT_3D of ndw words (the header's size says size_bytes). */
static uint32_t submit_raw(struct vgpu_fe *fe, uint32_t ctx, const uint32_t *words, uint32_t ndw,
                           uint32_t size_bytes)
{
    size_t len = sizeof(struct virtio_gpu_cmd_submit) + ndw * 4u;
    uint8_t *buf = calloc(1, len);
    assert_non_null(buf);
    struct virtio_gpu_cmd_submit s = {.hdr = hdr(VIRTIO_GPU_CMD_SUBMIT_3D, ctx),
                                      .size = size_bytes};
    memcpy(buf, &s, sizeof(s));
    memcpy(buf + sizeof(s), words, ndw * 4u);
    uint32_t t = cmd0(fe, buf, (uint32_t)len);
    free(buf);
    return t;
}

static uint32_t submit(struct vgpu_fe *fe, uint32_t ctx, const uint32_t *words, uint32_t ndw)
{
    return submit_raw(fe, ctx, words, ndw, ndw * 4u);
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

/* A stream that makes surface 1 of resource res the framebuffer and clears it to r, g, b. */
static uint32_t clear_stream(uint32_t *w, uint32_t res, uint32_t format, float r, float g, float b)
{
    uint32_t n = 0;
    w[n++] = VIRGL_CMD0(VIRGL_CCMD_CREATE_OBJECT, VIRGL_OBJECT_SURFACE, 5);
    w[n++] = 1;      /* surface handle */
    w[n++] = res;    /* resource */
    w[n++] = format; /* view format */
    w[n++] = 0;      /* level */
    w[n++] = 0;      /* first and last layer */
    w[n++] = VIRGL_CMD0(VIRGL_CCMD_SET_FRAMEBUFFER_STATE, 0, 3);
    w[n++] = 1; /* colour buffers */
    w[n++] = 0; /* no depth/stencil surface */
    w[n++] = 1; /* cbuf 0: surface 1 */
    w[n++] = VIRGL_CMD0(VIRGL_CCMD_CLEAR, 0, 8);
    w[n++] = PIPE_CLEAR_COLOR0;
    w[n++] = fbits(r);
    w[n++] = fbits(g);
    w[n++] = fbits(b);
    w[n++] = fbits(1.0f);
    w[n++] = 0; /* depth (a double) */
    w[n++] = 0;
    w[n++] = 0; /* stencil */
    return n;
}

/* Context ctx with render target res (W x H, B8G8R8X8) attached, backing at *gpa. */
static void make_target(struct vgpu_fe *fe, uint32_t ctx, uint32_t res, uint32_t flags,
                        uint64_t *gpa)
{
    assert_int_equal(ctx_create(fe, ctx, 0), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(create_3d(fe, res, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, W, H, flags),
                     VIRTIO_GPU_RESP_OK_NODATA);
    *gpa = attach(fe, res, W * H * 4);
    assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, ctx, res),
                     VIRTIO_GPU_RESP_OK_NODATA);
}

/* Clears res through ctx and reads it back into its backing; checks every pixel is want. */
static void clear_and_check(struct vgpu_fe *fe, uint32_t ctx, uint32_t res, uint64_t gpa, float r,
                            float g, float b, uint32_t want)
{
    uint32_t words[32];
    uint32_t n = clear_stream(words, res, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, r, g, b);
    assert_int_equal(submit(fe, ctx, words, n), VIRTIO_GPU_RESP_OK_NODATA);
    uint32_t *px = vgpu_fe_gpa_ptr(fe, gpa, W * H * 4);
    memset(px, 0x5a, W * H * 4);
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, ctx, res, BOX(0, 0, W, H), 0, W * 4),
        VIRTIO_GPU_RESP_OK_NODATA);
    for (uint32_t i = 0; i < W * H; i++) {
        if (px[i] != want) {
            print_error("pixel %u of resource %u is 0x%08x, expected 0x%08x\n", i, res, px[i],
                        want);
            fail();
        }
    }
}

/* ---- features, capsets ------------------------------------------------------------------ */

static void test_features_and_config(void **state)
{
    struct vgpu_fe *fe = session(false);
    const struct vgpu_fe_info *info = vgpu_fe_info(fe);
    assert_true(info->features & BIT(VIRTIO_GPU_F_VIRGL));
    assert_true(info->features & BIT(VIRTIO_GPU_F_CONTEXT_INIT));
    /* Guest-memory blobs and SET_SCANOUT_BLOB are served (test_blob_*). */
    assert_true(info->features & BIT(VIRTIO_GPU_F_RESOURCE_BLOB));
    assert_int_equal(info->config.num_capsets, 2);
    /* Host3d blobs and MAP_BLOB are not: an error, never a crash. */
    struct virtio_gpu_resource_create_blob blob = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, 0),
        .resource_id = 9,
        .blob_mem = VIRTIO_GPU_BLOB_MEM_HOST3D,
        .size = 4096,
    };
    assert_int_equal(cmd0(fe, &blob, sizeof(blob)), VIRTIO_GPU_RESP_ERR_UNSPEC);
    struct virtio_gpu_resource_map_blob map = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB, 0),
        .resource_id = 9,
    };
    assert_int_equal(cmd0(fe, &map, sizeof(map)), VIRTIO_GPU_RESP_ERR_UNSPEC);
}

static void test_capset_info(void **state)
{
    struct vgpu_fe *fe = session(false);
    static const uint32_t ids[] = {VIRTIO_GPU_CAPSET_VIRGL, VIRTIO_GPU_CAPSET_VIRGL2};
    static const uint32_t versions[] = {1, 2};
    static const uint32_t sizes[] = {308, 1376};
    for (uint32_t i = 0; i < 2; i++) {
        struct virtio_gpu_get_capset_info c = {.hdr = hdr(VIRTIO_GPU_CMD_GET_CAPSET_INFO, 0),
                                               .capset_index = i};
        struct virtio_gpu_resp_capset_info r;
        memset(&r, 0xee, sizeof(r));
        assert_int_equal(cmd(fe, &c, sizeof(c), &r, sizeof(r)), VIRTIO_GPU_RESP_OK_CAPSET_INFO);
        assert_int_equal(r.capset_id, ids[i]);
        assert_int_equal(r.capset_max_version, versions[i]);
        assert_int_equal(r.capset_max_size, sizes[i]);
        assert_int_equal(r.padding, 0); /* written in full, not left over */
    }
    for (uint32_t i = 2; i < 5; i++) {
        struct virtio_gpu_get_capset_info c = {.hdr = hdr(VIRTIO_GPU_CMD_GET_CAPSET_INFO, 0),
                                               .capset_index = i == 4 ? 0xffffffffu : i};
        assert_int_equal(cmd(fe, &c, sizeof(c), NULL, sizeof(struct virtio_gpu_resp_capset_info)),
                         VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    }
}

static void test_capset_data(void **state)
{
    struct vgpu_fe *fe = session(false);
    uint8_t resp[24 + 1376];
    struct virtio_gpu_get_capset c = {.hdr = hdr(VIRTIO_GPU_CMD_GET_CAPSET, 0),
                                      .capset_id = VIRTIO_GPU_CAPSET_VIRGL2,
                                      .capset_version = 2};
    uint32_t used = 0;
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CTRLQ, &c, sizeof(c), resp, sizeof(resp), 0,
                             itest_ms(CMD_TIMEOUT_MS), &used));
    assert_int_equal(used, sizeof(resp));
    struct virtio_gpu_ctrl_hdr h;
    memcpy(&h, resp, sizeof(h));
    assert_int_equal(h.type, VIRTIO_GPU_RESP_OK_CAPSET);
    /* virgl_caps_v2 starts with max_version (2), then the v1 caps with real GL limits. */
    uint32_t max_version;
    memcpy(&max_version, resp + 24, 4);
    assert_int_equal(max_version, 2);
    /* Fully written: no byte of the poison vgpu_fe_cmd put in the buffer is left. */
    unsigned int poison = 0;
    for (size_t i = 24; i + 4 <= sizeof(resp); i += 4)
        poison += memcmp(resp + i, "\xa5\xa5\xa5\xa5", 4) == 0;
    assert_int_equal(poison, 0);

    /* VIRGL version 1, 308 bytes. */
    c.capset_id = VIRTIO_GPU_CAPSET_VIRGL;
    c.capset_version = 1;
    assert_int_equal(cmd(fe, &c, sizeof(c), resp, 24 + 308), VIRTIO_GPU_RESP_OK_CAPSET);

    /* A buffer one byte short: an error, and nothing beyond the header written. */
    c.capset_id = VIRTIO_GPU_CAPSET_VIRGL2;
    c.capset_version = 2;
    uint8_t small[24 + 1375];
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CTRLQ, &c, sizeof(c), small, sizeof(small), 0,
                             itest_ms(CMD_TIMEOUT_MS), &used));
    assert_int_equal(used, 24);
    memcpy(&h, small, sizeof(h));
    assert_int_equal(h.type, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    for (size_t i = 24; i < sizeof(small); i++)
        assert_int_equal(small[i], 0xa5);
    /* A response buffer of nothing at all (QEMU CVE-2016-10028). */
    assert_int_equal(cmd(fe, &c, sizeof(c), NULL, 24), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);

    /* Unknown capsets and versions. */
    c.capset_id = CAPSET_VENUS;
    assert_int_equal(cmd(fe, &c, sizeof(c), resp, sizeof(resp)),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    c.capset_id = VIRTIO_GPU_CAPSET_VIRGL;
    c.capset_version = 2;
    assert_int_equal(cmd(fe, &c, sizeof(c), resp, sizeof(resp)),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
}

/* ---- contexts ------------------------------------------------------------------------------ */

static void test_contexts(void **state)
{
    struct vgpu_fe *fe = session(false);
    assert_int_equal(ctx_create(fe, 1, 0), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_create(fe, 1, 0), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(ctx_create(fe, 0, 0), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(ctx_create(fe, MAX_CTX_ID + 1, 0), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(ctx_create(fe, 0xffffffffu, 0), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(ctx_create(fe, MAX_CTX_ID, 0), VIRTIO_GPU_RESP_OK_NODATA);
    /* CONTEXT_INIT: the capset of the context, one that is served. */
    assert_int_equal(ctx_create(fe, 2, VIRTIO_GPU_CAPSET_VIRGL2), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_create(fe, 3, VIRTIO_GPU_CAPSET_VIRGL), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_create(fe, 4, CAPSET_VENUS), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(ctx_create(fe, 5, 0x7f), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);

    assert_int_equal(ctx_destroy(fe, 7), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(ctx_destroy(fe, 0), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(ctx_destroy(fe, 1), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_destroy(fe, 1), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);

    /* Attach and detach need a live context and an existing resource. */
    assert_int_equal(create_3d(fe, 10, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16, 0),
                     VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, 2, 10),
                     VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, 1, 10),
                     VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, 2, 11),
                     VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE, 2, 10),
                     VIRTIO_GPU_RESP_OK_NODATA);
    /* Unref of a resource still attached to a context, then of the context. */
    assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, 3, 10),
                     VIRTIO_GPU_RESP_OK_NODATA);
    struct virtio_gpu_resource_unref u = {.hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF, 0),
                                          .resource_id = 10};
    assert_int_equal(cmd0(fe, &u, sizeof(u)), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_destroy(fe, 3), VIRTIO_GPU_RESP_OK_NODATA);
}

static void test_context_limit(void **state)
{
    struct vgpu_fe *fe = session(false);
    /* 64 per guest; the ids stay free for a new context once destroyed. */
    for (uint32_t i = 1; i <= 64; i++)
        assert_int_equal(ctx_create(fe, i, 0), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_create(fe, 65, 0), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    assert_int_equal(ctx_destroy(fe, 64), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_create(fe, 65, 0), VIRTIO_GPU_RESP_OK_NODATA);
}

/* ---- rendering ----------------------------------------------------------------------------- */

static void test_clear_and_readback(void **state)
{
    struct vgpu_fe *fe = session(false);
    uint64_t gpa;
    make_target(fe, 1, 1, 0, &gpa);
    /* B8G8R8X8 bytes B, G, R, X: the little-endian word 0xXXRRGGBB. */
    clear_and_check(fe, 1, 1, gpa, 0.0f, 1.0f, 1.0f, 0xff00ffffu);
    clear_and_check(fe, 1, 1, gpa, 1.0f, 0.0f, 0.0f, 0xffff0000u);

    /* A partial box lands at its offset with the stride asked for. */
    uint32_t *px = vgpu_fe_gpa_ptr(fe, gpa, W * H * 4);
    memset(px, 0, W * H * 4);
    assert_int_equal(transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 1, 1, BOX(8, 4, 16, 2),
                                 (4 * W + 8) * 4, W * 4),
                     VIRTIO_GPU_RESP_OK_NODATA);
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 0; x < W; x++) {
            bool in = x >= 8 && x < 24 && y >= 4 && y < 6;
            assert_int_equal(px[y * W + x], in ? 0xffff0000u : 0);
        }

    /* Guest data in, the same data out (no context: ctx 0, as Linux does for 2D). */
    for (uint32_t i = 0; i < W * H; i++)
        px[i] = 0xff000000u | i;
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D, 0, 1, BOX(0, 0, W, H), 0, W * 4),
        VIRTIO_GPU_RESP_OK_NODATA);
    memset(px, 0, W * H * 4);
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 0, 1, BOX(0, 0, W, H), 0, W * 4),
        VIRTIO_GPU_RESP_OK_NODATA);
    for (uint32_t i = 0; i < W * H; i++)
        assert_int_equal(px[i], 0xff000000u | i);
}

/* Posts a request and a response buffer in guest memory without waiting. */
struct posted {
    int head;
    uint64_t resp_gpa;
    struct virtio_gpu_ctrl_hdr req;
};

static void post(struct vgpu_fe *fe, const void *req, uint32_t len, struct posted *p)
{
    uint64_t req_gpa = vgpu_fe_alloc(fe, len, 64);
    p->resp_gpa = vgpu_fe_alloc(fe, 64, 64);
    assert_true(req_gpa && p->resp_gpa);
    memcpy(vgpu_fe_gpa_ptr(fe, req_gpa, len), req, len);
    memset(vgpu_fe_gpa_ptr(fe, p->resp_gpa, 64), 0xa5, 64);
    memcpy(&p->req, req, sizeof(p->req));
    struct vgpu_fe_buf bufs[2] = {{req_gpa, len}, {p->resp_gpa, 64}};
    p->head = vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, 1, 1, VGPU_FE_POST_NO_KICK);
    FE_CHECK(fe, p->head);
}

/*
 * Fenced submissions on two contexts, two rings each, and the global timeline, all posted
 * before one kick: every response echoes its fence (and ring), and each timeline completes in
 * the order it was submitted.
 */
static void test_fences_in_order(void **state)
{
    struct vgpu_fe *fe = session(false);
    uint64_t gpa1, gpa2;
    make_target(fe, 1, 1, 0, &gpa1);
    make_target(fe, 2, 2, 0, &gpa2);
    enum { PER = 6, N = 5 * PER };
    struct posted p[N];
    uint64_t mark = vgpu_fe_alloc_mark(fe);
    for (int i = 0; i < N; i++) {
        uint32_t words[32];
        int timeline = i % 5; /* 0: global; 1, 2: ctx 1 rings 0 and 5; 3, 4: ctx 2 rings 0, 63 */
        uint32_t ctx = timeline == 0 ? 1 + (uint32_t)(i / 5) % 2 : timeline <= 2 ? 1 : 2;
        uint32_t res = ctx; /* make_target gave context i resource i */
        uint32_t n =
            clear_stream(words, res, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, (float)(i % 2), 0.5f, 0.0f);
        uint8_t buf[sizeof(struct virtio_gpu_cmd_submit) + sizeof(words)];
        struct virtio_gpu_cmd_submit s = {.hdr = hdr(VIRTIO_GPU_CMD_SUBMIT_3D, ctx), .size = n * 4};
        s.hdr.flags = VIRTIO_GPU_FLAG_FENCE;
        s.hdr.fence_id = 1000 + (uint64_t)i; /* one id space per ring in Linux; any will do */
        if (timeline != 0) {
            s.hdr.flags |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
            s.hdr.ring_idx = (uint8_t)(timeline == 1   ? 0
                                       : timeline == 2 ? 5
                                       : timeline == 3 ? 0
                                                       : 63);
        }
        memcpy(buf, &s, sizeof(s));
        memcpy(buf + sizeof(s), words, n * 4);
        post(fe, buf, (uint32_t)(sizeof(s) + n * 4), &p[i]);
    }
    FE_CHECK(fe, vgpu_fe_vq_kick(fe, VGPU_FE_CTRLQ));
    int64_t last[5] = {-1, -1, -1, -1, -1};
    for (int k = 0; k < N; k++) {
        uint16_t head;
        uint32_t len;
        FE_CHECK(fe,
                 vgpu_fe_vq_wait_used(fe, VGPU_FE_CTRLQ, itest_ms(CMD_TIMEOUT_MS), &head, &len));
        int i = 0;
        while (i < N && p[i].head != head)
            i++;
        assert_true(i < N);
        assert_int_equal(len, 24);
        struct virtio_gpu_ctrl_hdr r;
        memcpy(&r, vgpu_fe_gpa_ptr(fe, p[i].resp_gpa, 24), 24);
        assert_int_equal(r.type, VIRTIO_GPU_RESP_OK_NODATA);
        assert_true(r.flags & VIRTIO_GPU_FLAG_FENCE);
        assert_int_equal(r.fence_id, p[i].req.fence_id);
        assert_int_equal(r.ctx_id, p[i].req.ctx_id);
        int timeline = i % 5;
        if (timeline != 0) {
            assert_true(r.flags & VIRTIO_GPU_FLAG_INFO_RING_IDX);
            assert_int_equal(r.ring_idx, p[i].req.ring_idx);
        } else {
            assert_false(r.flags & VIRTIO_GPU_FLAG_INFO_RING_IDX);
        }
        if (i <= last[timeline]) {
            print_error("timeline %d completed command %d after %lld\n", timeline, i,
                        (long long)last[timeline]);
            fail();
        }
        last[timeline] = i;
    }
    vgpu_fe_alloc_release(fe, mark);
    /* The last clear of each target won. */
    clear_and_check(fe, 1, 1, gpa1, 0.0f, 0.0f, 1.0f, 0xff0000ffu);
}

/* An error in a fenced command still comes back in its timeline's order, with its fence. */
static void test_fence_on_error(void **state)
{
    struct vgpu_fe *fe = session(false);
    struct virtio_gpu_cmd_submit s = {.hdr = hdr(VIRTIO_GPU_CMD_SUBMIT_3D, 9), .size = 0};
    s.hdr.flags = VIRTIO_GPU_FLAG_FENCE;
    s.hdr.fence_id = 77;
    struct virtio_gpu_ctrl_hdr r;
    assert_int_equal(cmd(fe, &s, sizeof(s), &r, 24), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_true(r.flags & VIRTIO_GPU_FLAG_FENCE);
    assert_int_equal(r.fence_id, 77);
    /* A ring beyond 63, and a ring on a context that does not exist. */
    assert_int_equal(ctx_create(fe, 1, 0), VIRTIO_GPU_RESP_OK_NODATA);
    s.hdr.ctx_id = 1;
    s.hdr.flags |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
    s.hdr.ring_idx = 64;
    assert_int_equal(cmd0(fe, &s, sizeof(s)), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    s.hdr.ring_idx = 1;
    assert_int_equal(cmd(fe, &s, sizeof(s), &r, 24), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(r.ring_idx, 1);
    s.hdr.ctx_id = 2;
    assert_int_equal(cmd0(fe, &s, sizeof(s)), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
}

/* ---- hostile guests ------------------------------------------------------------------------ */

static void test_bad_submit_sizes(void **state)
{
    struct vgpu_fe *fe = session(false);
    uint64_t gpa;
    make_target(fe, 1, 1, 0, &gpa);
    uint32_t words[32];
    uint32_t n = clear_stream(words, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 1, 1, 1);
    /* More than the chain holds, not a multiple of 4, huge, and just past the chain. */
    assert_int_equal(submit_raw(fe, 1, words, n, n * 4 + 4), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(submit_raw(fe, 1, words, n, n * 4 - 2), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(submit_raw(fe, 1, words, n, 0xfffffffcu),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(submit_raw(fe, 1, words, n, 64u << 20), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* The request without its size field. */
    struct virtio_gpu_ctrl_hdr h = hdr(VIRTIO_GPU_CMD_SUBMIT_3D, 1);
    assert_int_equal(cmd0(fe, &h, sizeof(h)), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* Unknown context, and context 0. */
    assert_int_equal(submit(fe, 5, words, n), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(submit(fe, 0, words, n), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    /* Empty is fine; and the context still works. */
    assert_int_equal(submit(fe, 1, words, 0), VIRTIO_GPU_RESP_OK_NODATA);
    clear_and_check(fe, 1, 1, gpa, 1.0f, 1.0f, 0.0f, 0xffffff00u);
}

static void test_garbage_stream(void **state)
{
    struct vgpu_fe *fe = session(false);
    uint64_t gpa1, gpa2;
    make_target(fe, 1, 1, 0, &gpa1);
    make_target(fe, 2, 2, 0, &gpa2);
    /* An unknown command, then a length past the end of the stream. */
    static const uint32_t garbage[] = {0xdead00ffu, 1, 2, 3};
    assert_int_equal(submit(fe, 1, garbage, 4), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* The context is gone: later commands on it are refused. */
    uint32_t words[32];
    uint32_t n = clear_stream(words, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 1, 1, 1);
    assert_int_equal(submit(fe, 1, words, n), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, 1, 1),
                     VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    /* The other context renders on. */
    clear_and_check(fe, 2, 2, gpa2, 0.0f, 1.0f, 0.0f, 0xff00ff00u);
    /* A CLEAR of the wrong length. */
    static const uint32_t short_clear[] = {VIRGL_CMD0(VIRGL_CCMD_CLEAR, 0, 3), 4, 0, 0};
    assert_int_equal(submit(fe, 2, short_clear, 4), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(submit(fe, 2, words, n), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    /* A command longer than the stream: virglrenderer stops at the end (no error, no read
     * past it); either way the daemon lives on. */
    assert_int_equal(ctx_create(fe, 3, 0), VIRTIO_GPU_RESP_OK_NODATA);
    static const uint32_t overrun[] = {VIRGL_CMD0(VIRGL_CCMD_CLEAR, 0, 200), 4, 0};
    uint32_t t = submit(fe, 3, overrun, 3);
    assert_true(t == VIRTIO_GPU_RESP_OK_NODATA || t == VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* The guest destroys what it lost and starts again with the same ids. */
    assert_int_equal(ctx_destroy(fe, 1), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_destroy(fe, 2), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_create(fe, 1, 0), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, 1, 1),
                     VIRTIO_GPU_RESP_OK_NODATA);
    clear_and_check(fe, 1, 1, gpa1, 1.0f, 0.0f, 1.0f, 0xffff00ffu);
}

static void test_bad_resources(void **state)
{
    struct vgpu_fe *fe = session(false);
    /* Sizes whose byte count overflows or exceeds the guest's host memory. */
    assert_int_equal(
        create_3d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 0x7fffffffu, 0x7fffffffu, 0),
        VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
    assert_int_equal(create_3d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 0xffffffffu, 16, 0),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create_3d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 0, 16, 0),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create_3d(fe, 0, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16, 0),
                     VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    /* virglrenderer refuses it (over its 16384 limit): the id is free again afterwards. */
    assert_int_equal(create_3d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 20000, 4, 0),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create_3d(fe, 1, 0xffff, 16, 16, 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create_3d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16, 0),
                     VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(create_3d(fe, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 16, 0),
                     VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    /* Transfers: no backing yet, unknown resource, boxes outside, a level it does not have. */
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 0, 1, BOX(0, 0, 16, 16), 0, 64),
        VIRTIO_GPU_RESP_ERR_UNSPEC);
    uint64_t gpa = attach(fe, 1, 16 * 16 * 4);
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 0, 2, BOX(0, 0, 16, 16), 0, 64),
        VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 0, 1, BOX(8, 0, 16, 16), 0, 64),
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D, 0, 1,
                                 BOX(0xfffffff0u, 0, 32, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    struct virtio_gpu_transfer_host_3d t = {
        .hdr = hdr(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D, 0),
        .box = BOX(0, 0, 16, 16),
        .resource_id = 1,
        .level = 1,
    };
    assert_int_equal(cmd0(fe, &t, sizeof(t)), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* More bytes than the backing holds (virglrenderer checks the layout). */
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 0, 1, BOX(0, 0, 16, 16), 64, 64),
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 0, 1, BOX(0, 0, 16, 16), 0, 4096),
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 0, 1, BOX(0, 0, 16, 16),
                                 1u << 20, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* A context that does not exist. */
    assert_int_equal(
        transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, 3, 1, BOX(0, 0, 16, 16), 0, 64),
        VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    (void)gpa;
}

/* ---- display ------------------------------------------------------------------------------- */

struct disp {
    struct vgpu_fe_hdr hdr;
    uint8_t *buf;
    size_t cap;
};

static int disp_recv(struct vgpu_fe *fe, struct disp *d, int timeout_ms)
{
    int fd = -1;
    int r = vgpu_fe_display_recv(fe, timeout_ms, &d->hdr, d->buf, d->cap, &fd);
    if (fd >= 0)
        close(fd);
    return r < 0 ? r : (int)d->hdr.request;
}

static void disp_expect(struct vgpu_fe *fe, struct disp *d, uint32_t req)
{
    int r = disp_recv(fe, d, itest_ms(CMD_TIMEOUT_MS));
    if (r != (int)req) {
        print_error("display: expected message %u, got %d\n", req, r);
        fail();
    }
}

static uint32_t u32_at(const uint8_t *p, size_t off)
{
    uint32_t v;
    memcpy(&v, p + off, 4);
    return v;
}

static void disp_handshake(struct vgpu_fe *fe, struct disp *d)
{
    d->cap = 20 + W * H * 4 + 64;
    d->buf = malloc(d->cap);
    assert_non_null(d->buf);
    disp_expect(fe, d, VGPU_FE_DISPLAY_GET_PROTOCOL_FEATURES);
    uint64_t features = 0;
    FE_CHECK(fe, vgpu_fe_display_reply(fe, VGPU_FE_DISPLAY_GET_PROTOCOL_FEATURES, &features,
                                       sizeof(features)));
    disp_expect(fe, d, VGPU_FE_DISPLAY_SET_PROTOCOL_FEATURES);
}

static uint32_t set_scanout(struct vgpu_fe *fe, uint32_t s, uint32_t res, uint32_t w, uint32_t h)
{
    struct virtio_gpu_set_scanout c = {
        .hdr = hdr(VIRTIO_GPU_CMD_SET_SCANOUT, 0),
        .r = {.width = w, .height = h},
        .scanout_id = s,
        .resource_id = res,
    };
    return cmd0(fe, &c, sizeof(c));
}

static uint32_t flush(struct vgpu_fe *fe, uint32_t res, uint32_t x, uint32_t y, uint32_t w,
                      uint32_t h)
{
    struct virtio_gpu_resource_flush c = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_FLUSH, 0),
        .r = {.x = x, .y = y, .width = w, .height = h},
        .resource_id = res,
    };
    return cmd0(fe, &c, sizeof(c));
}

/* An UPDATE of the whole W x H scanout 0; returns its pixel words' address in d->buf. */
static const uint8_t *expect_full_update(struct vgpu_fe *fe, struct disp *d)
{
    disp_expect(fe, d, VGPU_FE_DISPLAY_UPDATE);
    assert_int_equal(d->hdr.size, 20 + W * H * 4);
    assert_int_equal(u32_at(d->buf, 0), 0);
    assert_int_equal(u32_at(d->buf, 4), 0);
    assert_int_equal(u32_at(d->buf, 8), 0);
    assert_int_equal(u32_at(d->buf, 12), W);
    assert_int_equal(u32_at(d->buf, 16), H);
    return d->buf + 20;
}

/*
 * A 3D render target on a scanout: SET_SCANOUT sends SCANOUT, a flush reads the cleared
 * pixels back and sends them as UPDATE, rows in the guest's order for both kinds of texture.
 */
static void test_scanout_readback(void **state)
{
    struct vgpu_fe *fe = session(true);
    struct disp d;
    disp_handshake(fe, &d);
    for (uint32_t y0top = 0; y0top < 2; y0top++) {
        uint32_t res = 1 + y0top;
        uint64_t gpa;
        if (y0top == 0) {
            make_target(fe, 1, res, 0, &gpa);
        } else {
            assert_int_equal(create_3d(fe, res, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, W, H,
                                       VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP),
                             VIRTIO_GPU_RESP_OK_NODATA);
            gpa = attach(fe, res, W * H * 4);
            assert_int_equal(ctx_res(fe, VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, 1, res),
                             VIRTIO_GPU_RESP_OK_NODATA);
        }
        clear_and_check(fe, 1, res, gpa, 0.0f, 1.0f, 1.0f, 0xff00ffffu);
        assert_int_equal(set_scanout(fe, 0, res, W, H), VIRTIO_GPU_RESP_OK_NODATA);
        disp_expect(fe, &d, VGPU_FE_DISPLAY_SCANOUT);
        assert_int_equal(u32_at(d.buf, 4), W);
        assert_int_equal(u32_at(d.buf, 8), H);
        assert_int_equal(flush(fe, res, 0, 0, W, H), VIRTIO_GPU_RESP_OK_NODATA);
        const uint8_t *px = expect_full_update(fe, &d);
        for (uint32_t i = 0; i < W * H; i++)
            assert_int_equal(u32_at(px, i * 4), 0xff00ffffu);

        /* Rows written by the guest: row y holds y. They must reach QEMU top to bottom. */
        uint32_t *g = vgpu_fe_gpa_ptr(fe, gpa, W * H * 4);
        for (uint32_t y = 0; y < H; y++)
            for (uint32_t x = 0; x < W; x++)
                g[y * W + x] = 0xff000000u | (y << 8) | x;
        assert_int_equal(
            transfer_3d(fe, VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D, 1, res, BOX(0, 0, W, H), 0, W * 4),
            VIRTIO_GPU_RESP_OK_NODATA);
        assert_int_equal(flush(fe, res, 0, 0, W, H), VIRTIO_GPU_RESP_OK_NODATA);
        px = expect_full_update(fe, &d);
        for (uint32_t i = 0; i < W * H; i++)
            assert_int_equal(u32_at(px, i * 4), g[i]);

        /* The first 8 rows cleared by the GPU (CLEAR_TEXTURE, in the guest's coordinates). */
        if (y0top == 0) {
            uint32_t words[13] = {VIRGL_CMD0(VIRGL_CCMD_CLEAR_TEXTURE, 0, 12),
                                  res,
                                  0,
                                  0,
                                  0,
                                  0,
                                  W,
                                  8,
                                  1,
                                  0xffff0000u,
                                  0,
                                  0,
                                  0};
            assert_int_equal(submit(fe, 1, words, 13), VIRTIO_GPU_RESP_OK_NODATA);
            assert_int_equal(flush(fe, res, 0, 0, W, H), VIRTIO_GPU_RESP_OK_NODATA);
            px = expect_full_update(fe, &d);
            for (uint32_t y = 0; y < H; y++)
                assert_int_equal(u32_at(px, (y * W + 3) * 4), y < 8 ? 0xffff0000u : g[y * W + 3]);
        }
        /* A partial flush sends only its rectangle. */
        assert_int_equal(flush(fe, res, 10, 20, 5, 3), VIRTIO_GPU_RESP_OK_NODATA);
        disp_expect(fe, &d, VGPU_FE_DISPLAY_UPDATE);
        assert_int_equal(d.hdr.size, 20 + 5 * 3 * 4);
        assert_int_equal(u32_at(d.buf, 4), 10);
        assert_int_equal(u32_at(d.buf, 8), 20);
        assert_int_equal(u32_at(d.buf, 20), g[20 * W + 10]);
    }

    /* A 2D resource in 3D mode goes through virglrenderer too. */
    assert_int_equal(set_scanout(fe, 0, 0, 0, 0), VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_SCANOUT);
    struct virtio_gpu_resource_create_2d c2 = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, 0),
        .resource_id = 5,
        .format = VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM,
        .width = W,
        .height = H,
    };
    assert_int_equal(cmd0(fe, &c2, sizeof(c2)), VIRTIO_GPU_RESP_OK_NODATA);
    uint64_t gpa = attach(fe, 5, W * H * 4);
    uint8_t *g = vgpu_fe_gpa_ptr(fe, gpa, W * H * 4);
    for (uint32_t i = 0; i < W * H; i++) {
        g[i * 4 + 0] = (uint8_t)i;        /* R */
        g[i * 4 + 1] = (uint8_t)(i >> 8); /* G */
        g[i * 4 + 2] = 0x33;              /* B */
        g[i * 4 + 3] = 0xff;              /* A */
    }
    struct virtio_gpu_transfer_to_host_2d t2 = {
        .hdr = hdr(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, 0),
        .r = {.x = 0, .y = 0, .width = W, .height = H},
        .resource_id = 5,
    };
    assert_int_equal(cmd0(fe, &t2, sizeof(t2)), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(set_scanout(fe, 0, 5, W, H), VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_SCANOUT);
    assert_int_equal(flush(fe, 5, 0, 0, W, H), VIRTIO_GPU_RESP_OK_NODATA);
    const uint8_t *px = expect_full_update(fe, &d);
    for (uint32_t i = 0; i < W * H; i++) {
        uint32_t want = 0xff000000u | ((i & 0xffu) << 16) | (((i >> 8) & 0xffu) << 8) | 0x33u;
        assert_int_equal(u32_at(px, i * 4), want);
    }
    /* A partial rectangle: its rows are a resource width apart, from its first pixel on. */
    memset(g, 0x77, W * H * 4);
    t2.r = (struct virtio_gpu_rect){.x = 8, .y = 2, .width = 16, .height = 3};
    t2.offset = (2 * W + 8) * 4;
    assert_int_equal(cmd0(fe, &t2, sizeof(t2)), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(flush(fe, 5, 0, 0, W, H), VIRTIO_GPU_RESP_OK_NODATA);
    px = expect_full_update(fe, &d);
    for (uint32_t y = 0; y < H; y++) {
        for (uint32_t x = 0; x < W; x++) {
            uint32_t i = y * W + x;
            bool in = x >= 8 && x < 24 && y >= 2 && y < 5;
            uint32_t want =
                in ? 0x77777777u
                   : 0xff000000u | ((i & 0xffu) << 16) | (((i >> 8) & 0xffu) << 8) | 0x33u;
            assert_int_equal(u32_at(px, i * 4), want);
        }
    }
    /* Unref while on the scanout disables it. */
    struct virtio_gpu_resource_unref u = {.hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF, 0),
                                          .resource_id = 5};
    assert_int_equal(cmd0(fe, &u, sizeof(u)), VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_SCANOUT);
    assert_int_equal(u32_at(d.buf, 4), 0);
    free(d.buf);
}

/* A 3D resource that cannot be read back as a frame is refused on a scanout. */
static void test_scanout_refused(void **state)
{
    struct vgpu_fe *fe = session(false);
    /* R32G32B32A32_FLOAT (31 in virgl_formats): not one of the 32-bit layouts. */
    assert_int_equal(create_3d(fe, 1, 31, 16, 16, 0), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(set_scanout(fe, 0, 1, 16, 16), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* B8G8R8X8_SRGB has the same bytes as B8G8R8X8_UNORM: shown. */
    assert_int_equal(create_3d(fe, 2, 101, 16, 16, 0), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(set_scanout(fe, 0, 2, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
}

/* ---- guest-memory blobs ------------------------------------------------------------------- */

/* RESOURCE_CREATE_BLOB with n entries sent, nr_entries claimed (header and entries in one buffer).
 */
static uint32_t create_blob(struct vgpu_fe *fe, uint32_t id, uint32_t blob_mem, uint64_t size,
                            const struct virtio_gpu_mem_entry *e, uint32_t n, uint32_t nr_entries)
{
    struct {
        struct virtio_gpu_resource_create_blob b;
        struct virtio_gpu_mem_entry e[4];
    } c = {
        .b = {.hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, 0),
              .resource_id = id,
              .blob_mem = blob_mem,
              .blob_flags = VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE,
              .nr_entries = nr_entries,
              .size = size},
    };
    assert_true(n <= 4);
    memcpy(c.e, e, n * sizeof(*e));
    return cmd0(fe, &c, (uint32_t)(sizeof(c.b) + n * sizeof(*e)));
}

static uint32_t set_scanout_blob(struct vgpu_fe *fe, uint32_t s, uint32_t res, uint32_t format,
                                 uint32_t w, uint32_t h, struct virtio_gpu_rect r, uint32_t offset,
                                 uint32_t stride)
{
    struct virtio_gpu_set_scanout_blob c = {
        .hdr = hdr(VIRTIO_GPU_CMD_SET_SCANOUT_BLOB, 0),
        .r = r,
        .scanout_id = s,
        .resource_id = res,
        .width = w,
        .height = h,
        .format = format,
        .strides = {stride},
        .offsets = {offset},
    };
    return cmd0(fe, &c, sizeof(c));
}

#define RECT(x_, y_, w_, h_)                                                                       \
    ((struct virtio_gpu_rect){.x = (x_), .y = (y_), .width = (w_), .height = (h_)})
#define BW 16u
#define BH 8u
#define BSTRIDE 80u  /* more than BW * 4 */
#define BOFFSET 200u /* not a multiple of the stride */

/*
 * A guest blob in two scattered pieces on a scanout: a flush sends exactly the pixels in guest
 * memory, rows a stride apart from a non-zero offset, read where the guest wrote them.
 */
static void test_blob_scanout(void **state)
{
    struct vgpu_fe *fe = session(true);
    struct disp d;
    disp_handshake(fe, &d);
    const uint32_t size = BOFFSET + BSTRIDE * BH; /* the last row's tail included */
    uint64_t a = vgpu_fe_alloc(fe, 4096, 4096), b = vgpu_fe_alloc(fe, 4096, 4096);
    assert_true(a != 0 && b != 0);
    const uint32_t first = 300; /* the split falls inside row 1 */
    struct virtio_gpu_mem_entry e[2] = {{.addr = a + 4096 - first, .length = first},
                                        {.addr = b, .length = size - first}};
    assert_int_equal(create_blob(fe, 7, VIRTIO_GPU_BLOB_MEM_GUEST, size, e, 2, 2),
                     VIRTIO_GPU_RESP_OK_NODATA);
    /* Row y, column x holds 0xff000000 | y << 8 | x; everything else 0x5a bytes. */
    uint8_t *pa = vgpu_fe_gpa_ptr(fe, e[0].addr, first);
    uint8_t *pb = vgpu_fe_gpa_ptr(fe, b, size - first);
    uint8_t img[BOFFSET + BSTRIDE * BH];
    memset(img, 0x5a, sizeof(img));
    for (uint32_t y = 0; y < BH; y++)
        for (uint32_t x = 0; x < BW; x++) {
            uint32_t v = 0xff000000u | (y << 8) | x;
            memcpy(img + BOFFSET + y * BSTRIDE + x * 4, &v, 4);
        }
    memcpy(pa, img, first);
    memcpy(pb, img + first, size - first);

    /* B8G8R8A8: the memory bytes of a pixel are its ARGB word, little-endian. */
    assert_int_equal(set_scanout_blob(fe, 0, 7, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, BW, BH,
                                      RECT(0, 0, BW, BH), BOFFSET, BSTRIDE),
                     VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_SCANOUT);
    assert_int_equal(u32_at(d.buf, 0), 0);
    assert_int_equal(u32_at(d.buf, 4), BW);
    assert_int_equal(u32_at(d.buf, 8), BH);
    assert_int_equal(flush(fe, 7, 0, 0, BW, BH), VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_UPDATE);
    assert_int_equal(d.hdr.size, 20 + BW * BH * 4);
    assert_int_equal(u32_at(d.buf, 12), BW);
    assert_int_equal(u32_at(d.buf, 16), BH);
    for (uint32_t y = 0; y < BH; y++)
        for (uint32_t x = 0; x < BW; x++)
            assert_int_equal(u32_at(d.buf, 20 + (y * BW + x) * 4), 0xff000000u | (y << 8) | x);

    /* The guest draws straight into its memory; a partial flush sends that rectangle. */
    uint32_t v = 0xff123456u;
    memcpy(pb + BOFFSET + 5 * BSTRIDE + 3 * 4 - first, &v, 4);
    assert_int_equal(flush(fe, 7, 3, 5, 2, 1), VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_UPDATE);
    assert_int_equal(d.hdr.size, 20 + 2 * 4);
    assert_int_equal(u32_at(d.buf, 4), 3);
    assert_int_equal(u32_at(d.buf, 8), 5);
    assert_int_equal(u32_at(d.buf, 20), 0xff123456u);
    assert_int_equal(u32_at(d.buf, 24), 0xff000504u);

    /* An X format: alpha forced opaque, on a scanout showing part of the framebuffer. */
    assert_int_equal(set_scanout_blob(fe, 0, 7, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, BW, BH,
                                      RECT(2, 1, 4, 3), BOFFSET, BSTRIDE),
                     VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_SCANOUT);
    assert_int_equal(u32_at(d.buf, 4), 4);
    assert_int_equal(u32_at(d.buf, 8), 3);
    assert_int_equal(flush(fe, 7, 0, 0, BW, BH), VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_UPDATE);
    assert_int_equal(d.hdr.size, 20 + 4 * 3 * 4);
    for (uint32_t y = 0; y < 3; y++)
        for (uint32_t x = 0; x < 4; x++)
            assert_int_equal(u32_at(d.buf, 20 + (y * 4 + x) * 4) & 0x00ffffffu,
                             ((y + 1) << 8) | (x + 2));

    /* UNREF while shown disables the scanout; a flush after it finds no resource. */
    struct virtio_gpu_resource_unref u = {.hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF, 0),
                                          .resource_id = 7};
    assert_int_equal(cmd0(fe, &u, sizeof(u)), VIRTIO_GPU_RESP_OK_NODATA);
    disp_expect(fe, &d, VGPU_FE_DISPLAY_SCANOUT);
    assert_int_equal(u32_at(d.buf, 4), 0);
    assert_int_equal(flush(fe, 7, 0, 0, BW, BH), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    /* The id is free again. */
    assert_int_equal(create_blob(fe, 7, VIRTIO_GPU_BLOB_MEM_GUEST, size, e, 2, 2),
                     VIRTIO_GPU_RESP_OK_NODATA);
    free(d.buf);
}

/* Every bad blob argument gets its exact error, and nothing is created. */
static void test_blob_refused(void **state)
{
    struct vgpu_fe *fe = session(false);
    uint64_t gpa = vgpu_fe_alloc(fe, 8192, 4096);
    assert_true(gpa != 0);
    struct virtio_gpu_mem_entry e = {.addr = gpa, .length = 8192};
    const uint32_t G = VIRTIO_GPU_BLOB_MEM_GUEST;
    assert_int_equal(create_blob(fe, 1, VIRTIO_GPU_BLOB_MEM_HOST3D, 4096, &e, 1, 1),
                     VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_int_equal(create_blob(fe, 1, VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST, 4096, &e, 1, 1),
                     VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_int_equal(create_blob(fe, 0, G, 4096, &e, 1, 1),
                     VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(create_blob(fe, 1, G, 0, &e, 1, 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* Entries shorter than the blob. */
    assert_int_equal(create_blob(fe, 1, G, 8193, &e, 1, 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* An entry outside guest memory. */
    struct virtio_gpu_mem_entry out[2] = {e, {.addr = 1ull << 40, .length = 4096}};
    assert_int_equal(create_blob(fe, 1, G, 4096, out, 2, 2), VIRTIO_GPU_RESP_ERR_UNSPEC);
    /* More entries claimed than the chain holds; more than any backing may have. */
    assert_int_equal(create_blob(fe, 1, G, 4096, &e, 1, 3), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(create_blob(fe, 1, G, 4096, &e, 1, 0xffffffffu), VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_int_equal(create_blob(fe, 1, G, 4096, &e, 1, 1), VIRTIO_GPU_RESP_OK_NODATA);
    /* None of the refused ones left a resource behind; the id is now in use. */
    assert_int_equal(create_blob(fe, 1, G, 4096, &e, 1, 1),
                     VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(create_blob(fe, 2, G, 4096, &e, 1, 1), VIRTIO_GPU_RESP_OK_NODATA);

    const uint32_t F = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM;
    /* offsets[0] + strides[0] * (height - 1) wraps 32 bits. */
    assert_int_equal(
        set_scanout_blob(fe, 0, 1, F, 16, 16, RECT(0, 0, 16, 16), 0xffffffffu, 0x80000000u),
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* 192 + 256 * 15 + 16 * 4 is exactly the blob's 4096 bytes; one more is past it. */
    assert_int_equal(set_scanout_blob(fe, 0, 1, F, 16, 16, RECT(0, 0, 16, 16), 192, 256),
                     VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(set_scanout_blob(fe, 0, 1, F, 16, 16, RECT(0, 0, 16, 16), 193, 256),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* A stride shorter than a row. */
    assert_int_equal(set_scanout_blob(fe, 0, 1, F, 16, 16, RECT(0, 0, 16, 16), 0, 63),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* Rect outside the framebuffer, empty rect, empty framebuffer. */
    assert_int_equal(set_scanout_blob(fe, 0, 1, F, 16, 16, RECT(1, 0, 16, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(set_scanout_blob(fe, 0, 1, F, 16, 16, RECT(0, 0, 0, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(set_scanout_blob(fe, 0, 1, F, 0, 16, RECT(0, 0, 0, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* Bad format. */
    assert_int_equal(set_scanout_blob(fe, 0, 1, 0, 16, 16, RECT(0, 0, 16, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(set_scanout_blob(fe, 0, 1, 999, 16, 16, RECT(0, 0, 16, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    /* Not a blob, no such resource, no such scanout. */
    assert_int_equal(create_3d(fe, 3, F, 16, 16, 0), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(set_scanout_blob(fe, 0, 3, F, 16, 16, RECT(0, 0, 16, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    assert_int_equal(set_scanout_blob(fe, 0, 9, F, 16, 16, RECT(0, 0, 16, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(set_scanout_blob(fe, 16, 1, F, 16, 16, RECT(0, 0, 16, 16), 0, 64),
                     VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
    /* A blob is not a SET_SCANOUT resource, nor has it backing to attach, detach or transfer. */
    assert_int_equal(set_scanout(fe, 0, 2, 16, 16), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    struct virtio_gpu_resource_detach_backing det = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, 0), .resource_id = 2};
    assert_int_equal(cmd0(fe, &det, sizeof(det)), VIRTIO_GPU_RESP_ERR_UNSPEC);
    /* Scanout 0 still shows blob 1: unref it, flush, disable (nothing left to crash on). */
    struct virtio_gpu_resource_unref u = {.hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF, 0),
                                          .resource_id = 1};
    assert_int_equal(cmd0(fe, &u, sizeof(u)), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(flush(fe, 1, 0, 0, 16, 16), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    assert_int_equal(set_scanout_blob(fe, 0, 0, F, 16, 16, RECT(0, 0, 16, 16), 0, 64),
                     VIRTIO_GPU_RESP_OK_NODATA);
}

/* The cursor image of a 64x64 3D resource is read back as well. */
static void test_cursor_3d(void **state)
{
    struct vgpu_fe *fe = session(true);
    struct disp d;
    disp_handshake(fe, &d);
    uint64_t gpa;
    make_target(fe, 1, 1, 0, &gpa); /* W x H is the cursor's 64 x 64 */
    clear_and_check(fe, 1, 1, gpa, 1.0f, 1.0f, 0.0f, 0xffffff00u);
    struct virtio_gpu_update_cursor c = {
        .hdr = hdr(VIRTIO_GPU_CMD_UPDATE_CURSOR, 0),
        .pos = {.scanout_id = 0, .x = 5, .y = 6},
        .resource_id = 1,
        .hot_x = 1,
        .hot_y = 2,
    };
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CURSORQ, &c, sizeof(c), NULL, 0, 0,
                             itest_ms(CMD_TIMEOUT_MS), NULL));
    disp_expect(fe, &d, VGPU_FE_DISPLAY_CURSOR_UPDATE);
    assert_int_equal(d.hdr.size, 20 + 64 * 64 * 4);
    for (uint32_t i = 0; i < 64 * 64; i++)
        assert_int_equal(u32_at(d.buf, 20 + i * 4), 0xffffff00u);
    free(d.buf);
}

/* ---- guest memory, start-up ---------------------------------------------------------------- */

/*
 * A pause and resume re-sends the memory table (QEMU without CONFIGURE_MEM_SLOTS) while the
 * guest keeps its resources: virglrenderer's backing must follow the new mapping (a stale one
 * would point into unmapped memory).
 */
static void test_memory_table_change(void **state)
{
    struct vgpu_fe_config cfg;
    vgpu_fe_config_init(&cfg);
    cfg.guest_features |= BIT(VIRTIO_GPU_F_VIRGL);
    cfg.protocol_mask &= ~BIT(VGPU_FE_PROTO_CONFIGURE_MEM_SLOTS);
    cfg.reset_device = false;
    cfg.no_display_socket = true;
    cfg.two_regions = true;
    struct vgpu_fe *fe = itest_connect(fx.d, &cfg);
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    uint64_t gpa;
    make_target(fe, 1, 1, 0, &gpa);
    clear_and_check(fe, 1, 1, gpa, 1.0f, 0.0f, 0.0f, 0xffff0000u);
    /* A guest blob on scanout 0: dropped from it at each change, set again, never read stale. */
    uint64_t bgpa = vgpu_fe_alloc(fe, 4096, 4096);
    assert_true(bgpa != 0);
    struct virtio_gpu_mem_entry be = {.addr = bgpa, .length = 4096};
    const uint32_t F = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM;
    assert_int_equal(create_blob(fe, 2, VIRTIO_GPU_BLOB_MEM_GUEST, 4096, &be, 1, 1),
                     VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(set_scanout_blob(fe, 0, 2, F, 16, 16, RECT(0, 0, 16, 16), 0, 64),
                     VIRTIO_GPU_RESP_OK_NODATA);
    for (int i = 0; i < 3; i++) {
        FE_CHECK(fe, vgpu_fe_stop(fe));
        FE_CHECK(fe, vgpu_fe_start(fe));
        clear_and_check(fe, 1, 1, gpa, (float)(i % 2), 1.0f, 0.0f,
                        i % 2 ? 0xffffff00u : 0xff00ff00u);
        assert_int_equal(flush(fe, 2, 0, 0, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
        assert_int_equal(set_scanout_blob(fe, 0, 2, F, 16, 16, RECT(0, 0, 16, 16), 0, 64),
                         VIRTIO_GPU_RESP_OK_NODATA);
        assert_int_equal(flush(fe, 2, 0, 0, 16, 16), VIRTIO_GPU_RESP_OK_NODATA);
    }
}

/* virgl that cannot start makes the daemon exit with a message before it serves. */
static void test_init_failure(void **state)
{
    char *path = itest_path(fx.dir, "fail.sock");
    /* No EGL vendor library: libglvnd then has no surfaceless platform. */
    setenv("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/vhost-gpu-test.json", 1);
    const char *const args[] = {"--virgl", "--socket-path", path, NULL};
    struct vgpu_fe_run_result res;
    int r = vgpu_fe_run(args, itest_ms(20000), &res);
    unsetenv("__EGL_VENDOR_LIBRARY_FILENAMES");
    assert_int_equal(r, 0);
    assert_true(WIFEXITED(res.wstatus));
    assert_int_equal(WEXITSTATUS(res.wstatus), 1);
    assert_non_null(strstr(res.err, "virgl"));
    assert_int_equal(access(path, F_OK), -1); /* it never listened */
    vgpu_fe_run_result_finish(&res);

    const char *const args2[] = {
        "--virgl", "--render-node", "/nonexistent/renderD128", "--socket-path", path, NULL};
    assert_int_equal(vgpu_fe_run(args2, itest_ms(20000), &res), 0);
    assert_int_equal(WEXITSTATUS(res.wstatus), 1);
    assert_non_null(strstr(res.err, "render node"));
    vgpu_fe_run_result_finish(&res);
    free(path);
}

/* Without --virgl nothing 3D is offered, and no GL library is even loaded. */
static void test_2d_mode_loads_no_gl(void **state)
{
    char *path = itest_path(fx.dir, "2d.sock");
    struct vgpu_fe_daemon *d = itest_spawn_socket(path, 0);
    struct vgpu_fe_config cfg;
    vgpu_fe_config_init(&cfg);
    cfg.no_display_socket = true;
    struct vgpu_fe *fe = itest_connect(d, &cfg);
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    const struct vgpu_fe_info *info = vgpu_fe_info(fe);
    assert_false(info->features & (BIT(VIRTIO_GPU_F_VIRGL) | BIT(VIRTIO_GPU_F_CONTEXT_INIT)));
    assert_int_equal(info->config.num_capsets, 0);
    assert_int_equal(ctx_create(fe, 1, 0), VIRTIO_GPU_RESP_ERR_UNSPEC);

    char maps[64];
    (void)snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)vgpu_fe_daemon_pid(d));
    FILE *f = fopen(maps, "r");
    assert_non_null(f);
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, "libEGL") || strstr(line, "libGL") || strstr(line, "_dri.so") ||
            strstr(line, "gallium") || strstr(line, "libLLVM")) {
            print_error("a 2D daemon maps %s", line);
            fail();
        }
    }
    fclose(f);
    itest_release(fe);
    vgpu_fe_daemon_destroy(d);
    free(path);
}

/* Round trip of a fenced SUBMIT_3D (a clear of a 64x64 target): printed, not judged. */
static void test_submit_round_trip(void **state)
{
    struct vgpu_fe *fe = session(false);
    uint64_t gpa;
    make_target(fe, 1, 1, 0, &gpa);
    uint32_t words[32];
    uint32_t n = clear_stream(words, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 0, 0, 0);
    uint8_t buf[sizeof(struct virtio_gpu_cmd_submit) + sizeof(words)];
    struct virtio_gpu_cmd_submit s = {.hdr = hdr(VIRTIO_GPU_CMD_SUBMIT_3D, 1), .size = n * 4};
    s.hdr.flags = VIRTIO_GPU_FLAG_FENCE;
    enum { ROUNDS = 200 };
    int64_t t0 = vgpu_fe_now_ms();
    for (int i = 0; i < ROUNDS; i++) {
        s.hdr.fence_id = (uint64_t)i + 1;
        memcpy(buf, &s, sizeof(s));
        memcpy(buf + sizeof(s), words, n * 4);
        assert_int_equal(cmd0(fe, buf, (uint32_t)(sizeof(s) + n * 4)), VIRTIO_GPU_RESP_OK_NODATA);
    }
    int64_t t1 = vgpu_fe_now_ms();
    s.hdr.flags = 0;
    memcpy(buf, &s, sizeof(s));
    for (int i = 0; i < ROUNDS; i++)
        assert_int_equal(cmd0(fe, buf, (uint32_t)(sizeof(s) + n * 4)), VIRTIO_GPU_RESP_OK_NODATA);
    int64_t t2 = vgpu_fe_now_ms();
    print_message("# SUBMIT_3D round trip: %.3f ms fenced, %.3f ms unfenced (mean of %d)\n",
                  (double)(t1 - t0) / ROUNDS, (double)(t2 - t1) / ROUNDS, ROUNDS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_features_and_config, teardown),
        cmocka_unit_test_teardown(test_capset_info, teardown),
        cmocka_unit_test_teardown(test_capset_data, teardown),
        cmocka_unit_test_teardown(test_contexts, teardown),
        cmocka_unit_test_teardown(test_context_limit, teardown),
        cmocka_unit_test_teardown(test_clear_and_readback, teardown),
        cmocka_unit_test_teardown(test_fences_in_order, teardown),
        cmocka_unit_test_teardown(test_fence_on_error, teardown),
        cmocka_unit_test_teardown(test_bad_submit_sizes, teardown),
        cmocka_unit_test_teardown(test_garbage_stream, teardown),
        cmocka_unit_test_teardown(test_bad_resources, teardown),
        cmocka_unit_test_teardown(test_scanout_readback, teardown),
        cmocka_unit_test_teardown(test_scanout_refused, teardown),
        cmocka_unit_test_teardown(test_blob_scanout, teardown),
        cmocka_unit_test_teardown(test_blob_refused, teardown),
        cmocka_unit_test_teardown(test_cursor_3d, teardown),
        cmocka_unit_test_teardown(test_memory_table_change, teardown),
        cmocka_unit_test_teardown(test_init_failure, teardown),
        cmocka_unit_test_teardown(test_2d_mode_loads_no_gl, teardown),
        cmocka_unit_test_teardown(test_submit_round_trip, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
