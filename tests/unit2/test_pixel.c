/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <linux/virtio_gpu.h>

#include "render/pixel.h"

/* The model, written independently of pixel.c: each name's bytes in memory order. */
static const struct {
    const char *name;
    const char *order; /* channel of byte 0, 1, 2, 3 */
    uint32_t fmt;
    bool alpha;
} formats[] = {
    {"B8G8R8A8_UNORM", "BGRA", VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, true},
    {"B8G8R8X8_UNORM", "BGRX", VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, false},
    {"A8R8G8B8_UNORM", "ARGB", VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, true},
    {"X8R8G8B8_UNORM", "XRGB", VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, false},
    {"R8G8B8A8_UNORM", "RGBA", VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, true},
    {"X8B8G8R8_UNORM", "XBGR", VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM, false},
    {"A8B8G8R8_UNORM", "ABGR", VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM, true},
    {"R8G8B8X8_UNORM", "RGBX", VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM, false},
};
#define N_FORMATS (sizeof(formats) / sizeof(formats[0]))

static const uint32_t invalid_formats[] = {0, 5, 66, 69, 120, 122, 133, 135, 0xffffffffu};
#define N_INVALID (sizeof(invalid_formats) / sizeof(invalid_formats[0]))

#define MAX_PIXELS 64u
#define GUARD 8u /* bytes around dst that must stay untouched */

/* Every byte of the row distinct (mod 256 over 64 pixels: 256 distinct values). */
static uint8_t src_byte(size_t pixel, unsigned int byte)
{
    return (uint8_t)(pixel * 4 + byte + 0x11);
}

/* The expected output word: the byte holding each channel moved to its ARGB position. */
static uint32_t expect_word(const char *order, size_t pixel)
{
    uint32_t w = 0;
    for (unsigned int byte = 0; byte < 4; byte++) {
        unsigned int shift = 0;
        switch (order[byte]) {
        case 'B':
            shift = 0;
            break;
        case 'G':
            shift = 8;
            break;
        case 'R':
            shift = 16;
            break;
        default: /* 'A', and 'X' which is passed through into the alpha position */
            shift = 24;
            break;
        }
        w |= (uint32_t)src_byte(pixel, byte) << shift;
    }
    return w;
}

static void check_row(size_t i, size_t n, size_t src_off, size_t dst_off)
{
    uint8_t src_buf[MAX_PIXELS * 4 + 8];
    uint8_t dst_buf[MAX_PIXELS * 4 + 2 * GUARD + 8];
    memset(src_buf, 0, sizeof(src_buf));
    for (size_t p = 0; p < n; p++) {
        for (unsigned int b = 0; b < 4; b++)
            src_buf[src_off + p * 4 + b] = src_byte(p, b);
    }
    memset(dst_buf, 0xa5, sizeof(dst_buf));
    uint8_t *dst = dst_buf + GUARD + dst_off;

    vgpu_pixel_row_to_argb(formats[i].fmt, src_buf + src_off, dst, n);

    for (size_t p = 0; p < n; p++) {
        uint32_t got;
        memcpy(&got, dst + p * 4, sizeof(got));
        if (got != expect_word(formats[i].order, p))
            fail_msg("%s n=%zu pixel %zu: got 0x%08x want 0x%08x", formats[i].name, n, p, got,
                     expect_word(formats[i].order, p));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* On this host the words are the bytes B, G, R, A (SDL ARGB8888, pixman a8r8g8b8). */
        assert_int_equal(dst[p * 4 + 0], (uint8_t)got);
        assert_int_equal(dst[p * 4 + 3], (uint8_t)(got >> 24));
#endif
    }
    for (size_t k = 0; k < GUARD + dst_off; k++)
        assert_int_equal(dst_buf[k], 0xa5);
    for (size_t k = GUARD + dst_off + n * 4; k < sizeof(dst_buf); k++)
        assert_int_equal(dst_buf[k], 0xa5);
}

static void test_all_formats(void **state)
{
    const size_t lengths[] = {0, 1, 7, 64};
    for (size_t i = 0; i < N_FORMATS; i++) {
        for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
            check_row(i, lengths[l], 0, 0);
            /* Misaligned source and destination. */
            check_row(i, lengths[l], 1, 3);
            check_row(i, lengths[l], 3, 2);
        }
    }
}

static void test_in_place(void **state)
{
    for (size_t i = 0; i < N_FORMATS; i++) {
        uint8_t buf[7 * 4];
        for (size_t p = 0; p < 7; p++) {
            for (unsigned int b = 0; b < 4; b++)
                buf[p * 4 + b] = src_byte(p, b);
        }
        vgpu_pixel_row_to_argb(formats[i].fmt, buf, buf, 7);
        for (size_t p = 0; p < 7; p++) {
            uint32_t got;
            memcpy(&got, buf + p * 4, sizeof(got));
            assert_int_equal(got, expect_word(formats[i].order, p));
        }
    }
}

/* X bytes pass through, whatever they hold; alpha is never forced to 0xff. */
static void test_x_byte_passthrough(void **state)
{
    const uint8_t bgrx[4] = {0x01, 0x02, 0x03, 0x00};
    const uint8_t xrgb[4] = {0x7f, 0x03, 0x02, 0x01};
    uint32_t out;
    vgpu_pixel_row_to_argb(VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, bgrx, (uint8_t *)&out, 1);
    assert_int_equal(out, 0x00030201u);
    vgpu_pixel_row_to_argb(VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, xrgb, (uint8_t *)&out, 1);
    assert_int_equal(out, 0x7f030201u);
}

static void test_properties(void **state)
{
    for (size_t i = 0; i < N_FORMATS; i++) {
        assert_true(vgpu_format_is_valid(formats[i].fmt));
        assert_int_equal(vgpu_format_has_alpha(formats[i].fmt), formats[i].alpha);
        assert_string_equal(vgpu_format_name(formats[i].fmt), formats[i].name);
    }
    for (size_t i = 0; i < N_INVALID; i++) {
        assert_false(vgpu_format_is_valid(invalid_formats[i]));
        assert_false(vgpu_format_has_alpha(invalid_formats[i]));
        assert_string_equal(vgpu_format_name(invalid_formats[i]), "invalid");
    }
}

static void test_invalid_format_leaves_dst(void **state)
{
    uint8_t src[16], dst[16];
    memset(src, 0x42, sizeof(src));
    for (size_t i = 0; i < N_INVALID; i++) {
        memset(dst, 0xa5, sizeof(dst));
        vgpu_pixel_row_to_argb(invalid_formats[i], src, dst, 4);
        for (size_t k = 0; k < sizeof(dst); k++)
            assert_int_equal(dst[k], 0xa5);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_formats),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_x_byte_passthrough),
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_invalid_format_leaves_dst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
