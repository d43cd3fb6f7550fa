/* SPDX-License-Identifier: MIT */
/*
 * The render thread through its rings: 2D commands, frames and their credit, cursor events,
 * and a stress test of the hand-off that the TSan lane checks for races.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "render/render.h"

static atomic_uint notified;

static void notify(void *data)
{
    atomic_fetch_add(&notified, 1);
}

static struct vgpu_render *start(unsigned int ring)
{
    struct vgpu_render_options o = {.notify = notify, .ring_size = ring};
    struct vgpu_render *r = vgpu_render_create(&o);
    assert_non_null(r);
    return r;
}

static struct vgpu_rcmd *new_cmd(enum vgpu_rop op)
{
    struct vgpu_rcmd *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->op = op;
    c->resp = c->resp_buf;
    c->resp_type = VIRTIO_GPU_RESP_OK_NODATA;
    return c;
}

/* Next message from the render thread, waiting up to 5 s. */
static struct vgpu_rmsg *next(struct vgpu_render *r)
{
    for (int i = 0; i < 50; i++) {
        struct vgpu_rmsg *m = vgpu_render_next(r);
        if (m)
            return m;
        vgpu_render_wait(r, 100);
    }
    fail_msg("no message from the render thread");
    return NULL;
}

/* Runs one command and returns its response type; events before it go to *events. */
static uint32_t run(struct vgpu_render *r, struct vgpu_rcmd *c, struct vgpu_pevent **events,
                    unsigned int max_events, unsigned int *nevents)
{
    assert_true(vgpu_render_submit(r, c));
    vgpu_render_kick(r);
    unsigned int n = 0;
    for (;;) {
        struct vgpu_rmsg *m = next(r);
        if (m->kind == VGPU_RMSG_CMD) {
            assert_ptr_equal(m, c);
            break;
        }
        assert_true(n < max_events);
        events[n++] = vgpu_rmsg_event(m);
    }
    if (nevents)
        *nevents = n;
    else
        assert_int_equal(n, 0);
    uint32_t type = c->resp_type;
    free(c);
    return type;
}

static void free_event(struct vgpu_pevent *ev)
{
    free(ev->image);
    free(ev);
}

static uint32_t create(struct vgpu_render *r, uint32_t id, uint32_t fmt, uint32_t w, uint32_t h)
{
    struct vgpu_rcmd *c = new_cmd(VGPU_ROP_CREATE_2D);
    c->u.create_2d.res_id = id;
    c->u.create_2d.format = fmt;
    c->u.create_2d.width = w;
    c->u.create_2d.height = h;
    return run(r, c, NULL, 0, NULL);
}

/* Transfers a whole w x h image from buf (stride w * 4). */
static uint32_t transfer(struct vgpu_render *r, uint32_t id, uint32_t w, uint32_t h, void *buf)
{
    struct vgpu_rcmd *c = new_cmd(VGPU_ROP_TRANSFER_2D);
    /* Split the backing in two uneven iovecs to exercise the row walk. */
    struct iovec *iov = calloc(2, sizeof(*iov));
    size_t total = (size_t)w * h * 4, first = total / 3 + 1;
    iov[0] = (struct iovec){.iov_base = buf, .iov_len = first};
    iov[1] = (struct iovec){.iov_base = (uint8_t *)buf + first, .iov_len = total - first};
    c->u.transfer.res_id = id;
    c->u.transfer.r = (struct virtio_gpu_rect){0, 0, w, h};
    c->u.transfer.stride = w * 4;
    c->u.transfer.iov = iov;
    c->u.transfer.niov = 2;
    uint32_t t = run(r, c, NULL, 0, NULL);
    free(iov);
    return t;
}

static void set_scanout(struct vgpu_render *r, uint32_t s, uint32_t id, uint32_t w, uint32_t h,
                        struct vgpu_pevent **ev)
{
    struct vgpu_rcmd *c = new_cmd(VGPU_ROP_SET_SCANOUT);
    c->u.scanout.scanout_id = s;
    c->u.scanout.res_id = id;
    c->u.scanout.r = (struct virtio_gpu_rect){0, 0, w, h};
    unsigned int n;
    assert_int_equal(run(r, c, ev, 1, &n), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0]->type, VGPU_PEVENT_SCANOUT);
    assert_int_equal(ev[0]->width, w);
    assert_int_equal(ev[0]->height, h);
}

static unsigned int flush(struct vgpu_render *r, uint32_t id, struct virtio_gpu_rect rc,
                          struct vgpu_pevent **ev, unsigned int max)
{
    struct vgpu_rcmd *c = new_cmd(VGPU_ROP_FLUSH);
    c->u.flush.res_id = id;
    c->u.flush.r = rc;
    unsigned int n;
    assert_int_equal(run(r, c, ev, max, &n), VIRTIO_GPU_RESP_OK_NODATA);
    return n;
}

static void test_transfer_flush_frame(void **state)
{
    struct vgpu_render *r = start(0);
    const uint32_t w = 37, h = 19;
    uint8_t *img = malloc(w * h * 4);
    for (size_t i = 0; i < w * h * 4; i++)
        img[i] = (uint8_t)(i * 7 + 3);

    /* R8G8B8A8: bytes R,G,B,A must arrive as native 0xAARRGGBB words. */
    assert_int_equal(create(r, 5, VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, w, h),
                     VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(create(r, 5, VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, w, h),
                     VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY); /* the reactor refuses this first */
    assert_int_equal(vgpu_render_num_resources(r), 1);
    assert_int_equal(transfer(r, 5, w, h, img), VIRTIO_GPU_RESP_OK_NODATA);

    struct vgpu_pevent *ev[4];
    set_scanout(r, 2, 5, w, h, ev);
    free_event(ev[0]);

    unsigned int n = flush(r, 5, (struct virtio_gpu_rect){3, 4, 10, 5}, ev, 4);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0]->type, VGPU_PEVENT_FRAME);
    struct vgpu_frame *f = ev[0]->frame;
    assert_int_equal(f->scanout, 2);
    assert_int_equal(f->x, 3);
    assert_int_equal(f->y, 4);
    assert_int_equal(f->width, 10);
    assert_int_equal(f->height, 5);
    for (uint32_t y = 0; y < 5; y++) {
        for (uint32_t x = 0; x < 10; x++) {
            const uint8_t *p = img + ((4 + y) * w + 3 + x) * 4;
            uint32_t want =
                (uint32_t)p[3] << 24 | (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
            uint32_t got;
            memcpy(&got, f->pixels + (y * 10 + x) * 4, 4);
            assert_int_equal(got, want);
        }
    }
    free_event(ev[0]);
    vgpu_render_return_frame(r, f);
    free(img);
    vgpu_render_destroy(r);
}

static void test_frame_credit_merges_damage(void **state)
{
    struct vgpu_render *r = start(0);
    assert_int_equal(create(r, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 100, 100),
                     VIRTIO_GPU_RESP_OK_NODATA);
    struct vgpu_pevent *ev[4];
    set_scanout(r, 0, 1, 100, 100, ev);
    free_event(ev[0]);

    assert_int_equal(flush(r, 1, (struct virtio_gpu_rect){0, 0, 10, 10}, ev, 4), 1);
    struct vgpu_frame *f = ev[0]->frame;
    free_event(ev[0]);
    /* The frame is out: further flushes accumulate damage and produce nothing. */
    assert_int_equal(flush(r, 1, (struct virtio_gpu_rect){50, 60, 5, 5}, ev, 4), 0);
    assert_int_equal(flush(r, 1, (struct virtio_gpu_rect){20, 10, 5, 5}, ev, 4), 0);
    /* Giving it back sends the union of what was missed. */
    vgpu_render_return_frame(r, f);
    struct vgpu_rmsg *m = next(r);
    assert_int_equal(m->kind, VGPU_RMSG_EVENT);
    struct vgpu_pevent *e = vgpu_rmsg_event(m);
    assert_int_equal(e->type, VGPU_PEVENT_FRAME);
    assert_int_equal(e->frame->x, 20);
    assert_int_equal(e->frame->y, 10);
    assert_int_equal(e->frame->width, 35);
    assert_int_equal(e->frame->height, 55);
    vgpu_render_return_frame(r, e->frame);
    free_event(e);
    vgpu_render_destroy(r);
}

static void test_unref_disables_scanout(void **state)
{
    struct vgpu_render *r = start(0);
    assert_int_equal(create(r, 9, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 8, 8),
                     VIRTIO_GPU_RESP_OK_NODATA);
    struct vgpu_pevent *ev[4];
    set_scanout(r, 1, 9, 8, 8, ev);
    free_event(ev[0]);
    set_scanout(r, 3, 9, 4, 4, ev);
    free_event(ev[0]);

    struct vgpu_rcmd *c = new_cmd(VGPU_ROP_UNREF);
    c->u.res_id = 9;
    unsigned int n;
    assert_int_equal(run(r, c, ev, 4, &n), VIRTIO_GPU_RESP_OK_NODATA);
    assert_int_equal(n, 2);
    for (unsigned int i = 0; i < n; i++) {
        assert_int_equal(ev[i]->type, VGPU_PEVENT_SCANOUT);
        assert_int_equal(ev[i]->width, 0);
        free_event(ev[i]);
    }
    assert_int_equal(vgpu_render_num_resources(r), 0);
    /* A flush of the freed id is refused, not a use-after-free. */
    c = new_cmd(VGPU_ROP_FLUSH);
    c->u.flush.res_id = 9;
    c->u.flush.r = (struct virtio_gpu_rect){0, 0, 8, 8};
    assert_int_equal(run(r, c, NULL, 0, NULL), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    vgpu_render_destroy(r);
}

static void test_cursor(void **state)
{
    struct vgpu_render *r = start(0);
    assert_int_equal(create(r, 4, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64),
                     VIRTIO_GPU_RESP_OK_NODATA);
    uint32_t *img = malloc(64 * 64 * 4);
    for (uint32_t i = 0; i < 64 * 64; i++)
        img[i] = 0x80000000u | i;
    assert_int_equal(transfer(r, 4, 64, 64, img), VIRTIO_GPU_RESP_OK_NODATA);

    struct vgpu_rcmd *c = new_cmd(VGPU_ROP_CURSOR_UPDATE);
    c->u.cursor.scanout_id = 0;
    c->u.cursor.x = 10;
    c->u.cursor.y = 20;
    c->u.cursor.res_id = 4;
    c->u.cursor.hot_x = 1;
    c->u.cursor.hot_y = 2;
    struct vgpu_pevent *ev[2];
    unsigned int n;
    run(r, c, ev, 2, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0]->type, VGPU_PEVENT_CURSOR_IMAGE);
    assert_int_equal(ev[0]->x, 10);
    assert_int_equal(ev[0]->hot_y, 2);
    assert_memory_equal(ev[0]->image, img, 64 * 64 * 4);
    free_event(ev[0]);

    c = new_cmd(VGPU_ROP_CURSOR_MOVE);
    c->u.cursor.scanout_id = 0;
    c->u.cursor.x = 5;
    c->u.cursor.y = 6;
    c->u.cursor.res_id = 0;
    run(r, c, ev, 2, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0]->type, VGPU_PEVENT_CURSOR_MOVE);
    assert_false(ev[0]->visible);
    free_event(ev[0]);
    free(img);
    vgpu_render_destroy(r);
}

/*
 * Many commands through a small ring while this thread consumes completions: order kept,
 * nothing lost, every frame handed back. Run under TSan this checks the hand-off itself.
 */
static void test_stress_handoff(void **state)
{
    struct vgpu_render *r = start(8);
    const unsigned int total = 20000;
    assert_int_equal(create(r, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64),
                     VIRTIO_GPU_RESP_OK_NODATA);
    struct vgpu_pevent *ev[1];
    set_scanout(r, 0, 1, 64, 64, ev);
    free_event(ev[0]);
    uint32_t *img = calloc(64 * 64, 4);

    unsigned int sent = 0, done = 0, frames = 0;
    uint64_t expect = 1;
    struct iovec one = {.iov_base = img, .iov_len = 64 * 64 * 4};
    while (done < total) {
        while (sent < total && vgpu_render_free_slots(r) > 0) {
            struct vgpu_rcmd *c;
            if (sent % 3 == 0) {
                c = new_cmd(VGPU_ROP_TRANSFER_2D);
                c->u.transfer.res_id = 1;
                c->u.transfer.r = (struct virtio_gpu_rect){0, 0, 64, 64};
                c->u.transfer.stride = 256;
                c->u.transfer.iov = &one;
                c->u.transfer.niov = 1;
            } else {
                c = new_cmd(VGPU_ROP_FLUSH);
                c->u.flush.res_id = 1;
                c->u.flush.r = (struct virtio_gpu_rect){sent % 60, 0, 4, 64};
            }
            c->hdr.fence_id = ++sent;
            assert_true(vgpu_render_submit(r, c));
            vgpu_render_kick(r);
        }
        struct vgpu_rmsg *m = next(r);
        if (m->kind == VGPU_RMSG_EVENT) {
            struct vgpu_pevent *e = vgpu_rmsg_event(m);
            assert_int_equal(e->type, VGPU_PEVENT_FRAME);
            frames++;
            vgpu_render_return_frame(r, e->frame);
            free_event(e);
            continue;
        }
        struct vgpu_rcmd *c = vgpu_rmsg_cmd(m);
        assert_true(c->hdr.fence_id == expect);
        assert_int_equal(c->resp_type, VIRTIO_GPU_RESP_OK_NODATA);
        expect++;
        done++;
        free(c);
    }
    assert_true(frames > 0);
    free(img);
    vgpu_render_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer_flush_frame),
        cmocka_unit_test(test_frame_credit_merges_damage),
        cmocka_unit_test(test_unref_disables_scanout),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_stress_handoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
