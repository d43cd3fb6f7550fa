/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "virtio/edid.h"

/* The detailed timing descriptor, decoded back from its packed fields. */
struct dtd {
    uint32_t clock_10khz;
    uint32_t hactive, hblank, hfront, hsync;
    uint32_t vactive, vblank, vfront, vsync;
    uint32_t w_mm, h_mm;
    uint8_t flags;
};

static struct dtd parse_dtd(const uint8_t *d)
{
    struct dtd t;
    t.clock_10khz = d[0] | (uint32_t)d[1] << 8;
    t.hactive = d[2] | (uint32_t)(d[4] >> 4) << 8;
    t.hblank = d[3] | (uint32_t)(d[4] & 0xf) << 8;
    t.vactive = d[5] | (uint32_t)(d[7] >> 4) << 8;
    t.vblank = d[6] | (uint32_t)(d[7] & 0xf) << 8;
    t.hfront = d[8] | (uint32_t)(d[11] >> 6) << 8;
    t.hsync = d[9] | (uint32_t)((d[11] >> 4) & 3) << 8;
    t.vfront = (uint32_t)(d[10] >> 4) | (uint32_t)((d[11] >> 2) & 3) << 4;
    t.vsync = (uint32_t)(d[10] & 0xf) | (uint32_t)(d[11] & 3) << 4;
    t.w_mm = d[12] | (uint32_t)(d[14] >> 4) << 8;
    t.h_mm = d[13] | (uint32_t)(d[14] & 0xf) << 8;
    t.flags = d[17];
    return t;
}

/* Refresh rate in millihertz. */
static uint64_t refresh_mhz(const struct dtd *t)
{
    uint64_t total = (uint64_t)(t->hactive + t->hblank) * (t->vactive + t->vblank);
    return (uint64_t)t->clock_10khz * 10000u * 1000u / total;
}

static uint32_t gen(uint8_t *e, uint32_t w, uint32_t h, uint32_t serial)
{
    memset(e, 0xcc, VGPU_EDID_SIZE);
    return (uint32_t)vgpu_edid_generate(e, VGPU_EDID_SIZE, w, h, serial);
}

static void check_text(const uint8_t *d, uint8_t tag, const char *text)
{
    assert_int_equal(d[0], 0);
    assert_int_equal(d[1], 0);
    assert_int_equal(d[2], 0);
    assert_int_equal(d[3], tag);
    assert_int_equal(d[4], 0);
    size_t len = strlen(text);
    assert_memory_equal(d + 5, text, len);
    if (len < 13) {
        assert_int_equal(d[5 + len], 0x0a);
        for (size_t i = 6 + len; i < 18; i++)
            assert_int_equal(d[i], ' ');
    }
}

/* Everything that holds for every size. */
static struct dtd check_common(const uint8_t *e, uint32_t w, uint32_t h, uint32_t serial)
{
    static const uint8_t header[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
    assert_memory_equal(e, header, 8);

    uint8_t sum = 0;
    for (unsigned int i = 0; i < VGPU_EDID_SIZE; i++)
        sum = (uint8_t)(sum + e[i]);
    assert_int_equal(sum, 0);

    /* Manufacturer "VGP": bit 15 clear, three 5-bit letters. */
    uint32_t mfg = (uint32_t)e[8] << 8 | e[9];
    assert_int_equal(mfg >> 15, 0);
    char letters[4] = {(char)('A' - 1 + ((mfg >> 10) & 31)), (char)('A' - 1 + ((mfg >> 5) & 31)),
                       (char)('A' - 1 + (mfg & 31)), 0};
    assert_string_equal(letters, "VGP");

    uint32_t serial_field =
        e[12] | (uint32_t)e[13] << 8 | (uint32_t)e[14] << 16 | (uint32_t)e[15] << 24;
    assert_int_equal(serial_field, serial);
    assert_int_equal(e[18], 1);
    assert_int_equal(e[19], 4);
    assert_true(e[20] & 0x80); /* digital */
    assert_true(e[21] >= 1);
    assert_true(e[22] >= 1);
    assert_int_equal(e[24] & 0x03, 0x03); /* preferred timing is native; continuous frequency */
    for (unsigned int i = 38; i < 54; i++)
        assert_int_equal(e[i], 0x01); /* standard timings unused */
    assert_int_equal(e[126], 0);      /* no extensions */

    /* Descriptor 1: the preferred mode, exactly the (clamped) requested size. */
    struct dtd t = parse_dtd(e + 54);
    assert_true(t.clock_10khz > 0 && t.clock_10khz <= 0xffff);
    assert_int_equal(t.hactive, w > 4095 ? 4095 : w);
    assert_int_equal(t.vactive, h > 4095 ? 4095 : h);
    assert_int_equal(t.hblank, 160);
    assert_int_equal(t.hfront, 48);
    assert_int_equal(t.hsync, 32);
    assert_int_equal(t.vfront, 3);
    assert_true(t.vsync >= 4 && t.vsync <= 10);
    assert_true(t.vblank >= 3 + t.vsync + 6);
    assert_int_equal(t.flags, 0x1a);
    assert_true(t.w_mm >= 1 && t.h_mm >= 1);
    uint64_t mhz = refresh_mhz(&t);
    assert_true(mhz <= 61000);

    /* Descriptor 2: range limits that contain the preferred mode. */
    const uint8_t *r = e + 72;
    assert_int_equal(r[0] | r[1] | r[2] | r[4], 0);
    assert_int_equal(r[3], 0xfd);
    assert_true(r[5] >= 1 && r[5] <= r[6]);
    assert_true((uint64_t)r[5] * 1000 <= mhz && mhz <= (uint64_t)r[6] * 1000);
    uint64_t line_hz = (uint64_t)t.clock_10khz * 10000u / (t.hactive + t.hblank);
    assert_true(r[7] >= 1 && r[7] <= r[8]);
    assert_true((uint64_t)r[7] * 1000 <= line_hz && line_hz <= (uint64_t)r[8] * 1000);
    assert_true((uint64_t)r[9] * 1000 >= t.clock_10khz);
    assert_int_equal(r[11], 0x0a);

    /* Descriptors 3 and 4: monitor name and serial string. */
    check_text(e + 90, 0xfc, "vhost-gpu");
    char text[16];
    (void)snprintf(text, sizeof(text), "%u", serial);
    check_text(e + 108, 0xff, text);
    return t;
}

static void test_rejects(void **state)
{
    uint8_t e[VGPU_EDID_SIZE + 1];
    memset(e, 0xcc, sizeof(e));
    assert_int_equal(vgpu_edid_generate(NULL, 128, 640, 480, 0), 0);
    assert_int_equal(vgpu_edid_generate(e, 127, 640, 480, 0), 0);
    assert_int_equal(vgpu_edid_generate(e, 128, 0, 480, 0), 0);
    assert_int_equal(vgpu_edid_generate(e, 128, 640, 0, 0), 0);
    for (size_t i = 0; i < sizeof(e); i++)
        assert_int_equal(e[i], 0xcc);
    /* A larger buffer is fine; only 128 bytes are written. */
    assert_int_equal(vgpu_edid_generate(e, sizeof(e), 640, 480, 0), VGPU_EDID_SIZE);
    assert_int_equal(e[VGPU_EDID_SIZE], 0xcc);
}

/*
 * CVT-RB timings: pixel clock (10 kHz), vertical blank lines, vsync lines. The totals and sync
 * positions agree with X's `cvt -r`; the clocks follow VESA's formula (refresh x totals, rounded
 * down to 0.25 MHz), which gives the DMT values (3840x2160 RB: 533.25 MHz). X's cvt and Linux
 * drm_cvt_mode() derive the clock from the estimated line period instead and land one step
 * lower for some sizes (533.00 for 3840x2160, 90.75 for 1280x1024).
 */
static void test_cvt_reference_modes(void **state)
{
    static const struct {
        uint32_t w, h, clock, vblank, vsync;
    } modes[] = {
        {640, 480, 2350, 14, 4},    {1024, 768, 5600, 22, 4},   {1280, 800, 7100, 23, 6},
        {1280, 1024, 9100, 30, 7},  {1920, 1080, 13850, 31, 5}, {1920, 1200, 15400, 35, 6},
        {2560, 1600, 26850, 46, 6}, {3840, 2160, 53325, 62, 5},
    };
    uint8_t e[VGPU_EDID_SIZE];
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        assert_int_equal(gen(e, modes[i].w, modes[i].h, (uint32_t)i), VGPU_EDID_SIZE);
        struct dtd t = check_common(e, modes[i].w, modes[i].h, (uint32_t)i);
        if (t.clock_10khz != modes[i].clock || t.vblank != modes[i].vblank)
            fail_msg("%ux%u: clock %u vblank %u, want %u %u", modes[i].w, modes[i].h, t.clock_10khz,
                     t.vblank, modes[i].clock, modes[i].vblank);
        assert_int_equal(t.vsync, modes[i].vsync);
        uint64_t mhz = refresh_mhz(&t);
        assert_true(mhz >= 59400 && mhz <= 60000); /* 640x480: 59.46 Hz */
    }
}

static void test_sizes(void **state)
{
    static const uint32_t sizes[][2] = {
        {640, 480},   {1024, 768}, {1280, 800}, {1920, 1080}, {3840, 2160},
        {4095, 4095}, {1, 1},      {1, 4095},   {4095, 1},    {800, 601},
    };
    uint8_t e[VGPU_EDID_SIZE];
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint32_t w = sizes[i][0], h = sizes[i][1];
        assert_int_equal(gen(e, w, h, 7), VGPU_EDID_SIZE);
        struct dtd t = check_common(e, w, h, 7);
        uint64_t mhz = refresh_mhz(&t);
        print_message("%ux%u: %u.%02u MHz, %u x %u total, %llu.%03llu Hz\n", w, h,
                      t.clock_10khz / 100, t.clock_10khz % 100, t.hactive + t.hblank,
                      t.vactive + t.vblank, (unsigned long long)(mhz / 1000),
                      (unsigned long long)(mhz % 1000));
        if (w == 4095 && h == 4095) {
            /* 60 Hz would need 1075 MHz; the refresh drops until the clock fits. */
            assert_true(mhz >= 35000 && mhz < 37000);
        } else {
            assert_true(mhz >= 55000);
        }
    }
}

static void test_clamp(void **state)
{
    uint8_t e[VGPU_EDID_SIZE];
    assert_int_equal(gen(e, 5000, 3000, 1), VGPU_EDID_SIZE);
    struct dtd t = check_common(e, 5000, 3000, 1);
    assert_int_equal(t.hactive, 4095);
    assert_int_equal(t.vactive, 3000);
    assert_int_equal(gen(e, UINT32_MAX, UINT32_MAX, 1), VGPU_EDID_SIZE);
    t = check_common(e, UINT32_MAX, UINT32_MAX, 1);
    assert_int_equal(t.hactive, 4095);
    assert_int_equal(t.vactive, 4095);
}

static void test_details(void **state)
{
    uint8_t e[VGPU_EDID_SIZE];
    /* 96 DPI: 1920 px = 508 mm = 51 cm; 1080 px = 285.75 mm = 29 cm. */
    gen(e, 1920, 1080, 0);
    assert_int_equal(e[21], 51);
    assert_int_equal(e[22], 29);
    struct dtd t = parse_dtd(e + 54);
    assert_int_equal(t.w_mm, 508);
    assert_int_equal(t.h_mm, 286);
    assert_int_equal(e[35], 0x20); /* 640x480@60 */

    /* No established mode larger than the scanout. */
    gen(e, 320, 200, 0);
    assert_int_equal(e[35] | e[36] | e[37], 0);
    check_common(e, 320, 200, 0);

    /* The serial number field and string follow the argument. */
    gen(e, 1024, 768, 0xdeadbeef);
    check_common(e, 1024, 768, 0xdeadbeef);
    check_text(e + 108, 0xff, "3735928559");

    /* Deterministic: same arguments, same bytes. */
    uint8_t again[VGPU_EDID_SIZE];
    gen(again, 1024, 768, 0xdeadbeef);
    assert_memory_equal(e, again, VGPU_EDID_SIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects), cmocka_unit_test(test_cvt_reference_modes),
        cmocka_unit_test(test_sizes),   cmocka_unit_test(test_clamp),
        cmocka_unit_test(test_details),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
