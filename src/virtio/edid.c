/* SPDX-License-Identifier: MIT */
#include "virtio/edid.h"

#include <stdio.h>
#include <string.h>

#define MAX_ACTIVE 4095u /* 12-bit DTD fields */
#define MAX_CLOCK_10KHZ 0xffffu

/* CVT 1.2 reduced blanking, version 1. */
#define RB_H_BLANK 160u
#define RB_H_FPORCH 48u
#define RB_H_SYNC 32u
#define RB_V_FPORCH 3u
#define RB_MIN_V_BPORCH 6u
#define RB_MIN_V_BLANK_US 460u
#define CVT_CLOCK_STEP_HZ 250000u
#define PREFERRED_REFRESH 60u

/* The EDID base block, by byte offset. */
enum {
    EDID_MANUFACTURER = 8,
    EDID_PRODUCT = 10,
    EDID_SERIAL = 12,
    EDID_WEEK = 16,
    EDID_YEAR = 17,
    EDID_VERSION = 18,
    EDID_REVISION = 19,
    EDID_INPUT = 20,
    EDID_WIDTH_CM = 21,
    EDID_HEIGHT_CM = 22,
    EDID_GAMMA = 23,
    EDID_FEATURES = 24,
    EDID_CHROMA = 25,
    EDID_ESTABLISHED = 35,
    EDID_STANDARD = 38,
    EDID_DESCRIPTOR_1 = 54, /* the preferred detailed timing */
    EDID_DESCRIPTOR_2 = 72,
    EDID_DESCRIPTOR_3 = 90,
    EDID_DESCRIPTOR_4 = 108,
    EDID_DESCRIPTOR_SIZE = 18,
    EDID_EXTENSIONS = 126,
    EDID_CHECKSUM = 127,
};

/* Display descriptor tags (byte 3 of an 18-byte descriptor whose clock is 0). */
#define DESC_SERIAL 0xff
#define DESC_RANGE_LIMITS 0xfd
#define DESC_NAME 0xfc

struct timing {
    uint32_t hactive, hblank, hfront, hsync;
    uint32_t vactive, vblank, vfront, vsync;
    uint32_t clock_10khz;
};

static uint32_t min_u32(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

static uint32_t max_u32(uint32_t a, uint32_t b)
{
    return a > b ? a : b;
}

/* CVT's vsync width encodes the aspect ratio (the table and tests of Linux drm_cvt_mode()). */
static uint32_t cvt_vsync(uint32_t w, uint32_t h)
{
    if (h % 3 == 0 && h * 4 / 3 == w)
        return 4;
    if (h % 9 == 0 && h * 16 / 9 == w)
        return 5;
    if (h % 10 == 0 && h * 16 / 10 == w)
        return 6;
    if (h % 4 == 0 && h * 5 / 4 == w)
        return 7;
    if (h % 9 == 0 && h * 15 / 9 == w)
        return 7;
    return 10;
}

/*
 * CVT reduced blanking v1 for w x h at refresh Hz, non-interlaced, no margins, in exact
 * integer arithmetic. The spec's estimated line period is (1e6/refresh - 460) / h us and its
 * blanking lines floor(460 / period) + 1, which is floor(460 * h * refresh / (1e6 - 460 *
 * refresh)) + 1, at least front porch + sync + minimum back porch.
 */
static void cvt_rb(uint32_t w, uint32_t h, uint32_t refresh, struct timing *t)
{
    t->hactive = w;
    t->hblank = RB_H_BLANK;
    t->hfront = RB_H_FPORCH;
    t->hsync = RB_H_SYNC;
    t->vactive = h;
    t->vfront = RB_V_FPORCH;
    t->vsync = cvt_vsync(w, h);

    uint64_t vbi = (uint64_t)RB_MIN_V_BLANK_US * h * refresh /
                       (1000000u - (uint64_t)RB_MIN_V_BLANK_US * refresh) +
                   1;
    uint64_t min_vbi = RB_V_FPORCH + t->vsync + RB_MIN_V_BPORCH;
    t->vblank = (uint32_t)(vbi > min_vbi ? vbi : min_vbi);

    uint64_t pixels_per_s = (uint64_t)refresh * (w + t->hblank) * (h + t->vblank);
    uint64_t clock = pixels_per_s / CVT_CLOCK_STEP_HZ * (CVT_CLOCK_STEP_HZ / 10000u);
    if (clock == 0)
        clock = pixels_per_s / 10000u; /* >= 60 * 161 * 20 / 10^4 = 19, never 0 */
    t->clock_10khz = clock > UINT32_MAX ? UINT32_MAX : (uint32_t)clock;
}

/* The highest refresh rate <= 60 Hz whose clock fits the 16-bit field (1 Hz always does). */
static void preferred_timing(uint32_t w, uint32_t h, struct timing *t)
{
    for (uint32_t refresh = PREFERRED_REFRESH; refresh > 1; refresh--) {
        cvt_rb(w, h, refresh, t);
        if (t->clock_10khz <= MAX_CLOCK_10KHZ)
            return;
    }
    cvt_rb(w, h, 1, t);
}

/* Physical size at 96 pixels per inch, in units of 1/per_metre metres, rounded to nearest. */
static uint32_t size_at_96dpi(uint32_t px, uint32_t per_metre)
{
    /* px / 96 in * 0.0254 m/in * per_metre, i.e. px * 254 * per_metre / 960000. */
    return (uint32_t)(((uint64_t)px * 254u * per_metre + 480000u) / 960000u);
}

static void put_dtd(uint8_t *d, const struct timing *t)
{
    uint32_t w_mm = min_u32(max_u32(size_at_96dpi(t->hactive, 1000), 1), 4095);
    uint32_t h_mm = min_u32(max_u32(size_at_96dpi(t->vactive, 1000), 1), 4095);

    d[0] = (uint8_t)(t->clock_10khz & 0xff);
    d[1] = (uint8_t)(t->clock_10khz >> 8);
    d[2] = (uint8_t)(t->hactive & 0xff);
    d[3] = (uint8_t)(t->hblank & 0xff);
    d[4] = (uint8_t)((t->hactive >> 8) << 4 | (t->hblank >> 8));
    d[5] = (uint8_t)(t->vactive & 0xff);
    d[6] = (uint8_t)(t->vblank & 0xff);
    d[7] = (uint8_t)((t->vactive >> 8) << 4 | (t->vblank >> 8));
    d[8] = (uint8_t)(t->hfront & 0xff);
    d[9] = (uint8_t)(t->hsync & 0xff);
    d[10] = (uint8_t)((t->vfront & 0xf) << 4 | (t->vsync & 0xf));
    d[11] = (uint8_t)((t->hfront >> 8) << 6 | (t->hsync >> 8) << 4 | (t->vfront >> 4) << 2 |
                      (t->vsync >> 4));
    d[12] = (uint8_t)(w_mm & 0xff);
    d[13] = (uint8_t)(h_mm & 0xff);
    d[14] = (uint8_t)((w_mm >> 8) << 4 | (h_mm >> 8));
    d[15] = 0; /* no borders */
    d[16] = 0;
    /* Non-interlaced, digital separate sync, vsync negative, hsync positive (as CVT-RB). */
    d[17] = 0x18 | 0x02;
}

/* A display descriptor's header; data bytes 5..17 are the caller's. */
static void put_display_descriptor(uint8_t *d, uint8_t tag)
{
    memset(d, 0, EDID_DESCRIPTOR_SIZE);
    d[3] = tag;
}

/* Up to 13 characters, then a 0x0a terminator and space padding, as the spec asks. */
static void put_text_descriptor(uint8_t *d, uint8_t tag, const char *text)
{
    put_display_descriptor(d, tag);
    size_t len = strlen(text);
    if (len > 13)
        len = 13;
    for (size_t i = 0; i < len; i++)
        d[5 + i] = (uint8_t)text[i]; /* not NUL-terminated: EDID text ends with 0x0a */
    if (len < 13) {
        d[5 + len] = 0x0a;
        memset(d + 6 + len, ' ', 13 - len - 1);
    }
}

/*
 * Range limits that include the preferred mode, so a guest checking modes against them keeps
 * it, and wide enough (50-75 Hz, 30-160 kHz where the mode allows) that guests may infer the
 * usual smaller modes, as they would from a real continuous-frequency monitor.
 */
static void put_range_descriptor(uint8_t *d, const struct timing *t)
{
    uint64_t htotal = t->hactive + t->hblank;
    uint64_t vtotal = t->vactive + t->vblank;
    uint64_t clock_khz = (uint64_t)t->clock_10khz * 10u;
    uint32_t h_lo = (uint32_t)(clock_khz / htotal);
    uint32_t h_hi = (uint32_t)((clock_khz + htotal - 1) / htotal);
    uint32_t v_lo = (uint32_t)(clock_khz * 1000u / (htotal * vtotal));
    uint32_t v_hi = (uint32_t)((clock_khz * 1000u + htotal * vtotal - 1) / (htotal * vtotal));

    put_display_descriptor(d, DESC_RANGE_LIMITS);
    d[4] = 0; /* no +255 offsets */
    d[5] = (uint8_t)min_u32(max_u32(min_u32(v_lo, 50), 1), 255);
    d[6] = (uint8_t)min_u32(max_u32(v_hi, 75), 255);
    d[7] = (uint8_t)min_u32(max_u32(min_u32(h_lo, 30), 1), 255);
    d[8] = (uint8_t)min_u32(max_u32(h_hi, 160), 255);
    /* Maximum pixel clock in 10 MHz units, rounded up. */
    d[9] = (uint8_t)min_u32((t->clock_10khz + 999u) / 1000u, 255);
    d[10] = 0x01; /* range limits only: no GTF or CVT formula implied */
    d[11] = 0x0a;
    memset(d + 12, ' ', 6);
}

static void put_chromaticity(uint8_t *e)
{
    /* sRGB primaries and D65 white, x and y in 1/10000, stored as 10-bit binary fractions. */
    static const uint32_t xy[8] = {6400, 3300, 3000, 6000, 1500, 600, 3127, 3290};
    uint32_t v[8];
    for (unsigned int i = 0; i < 8; i++)
        v[i] = (xy[i] * 1024u + 5000u) / 10000u;
    /* Low two bits of red/green, then of blue/white, then the high eight bits in order. */
    e[0] = (uint8_t)((v[0] & 3) << 6 | (v[1] & 3) << 4 | (v[2] & 3) << 2 | (v[3] & 3));
    e[1] = (uint8_t)((v[4] & 3) << 6 | (v[5] & 3) << 4 | (v[6] & 3) << 2 | (v[7] & 3));
    for (unsigned int i = 0; i < 8; i++)
        e[2 + i] = (uint8_t)(v[i] >> 2);
}

size_t vgpu_edid_generate(uint8_t *out, size_t out_len, uint32_t width, uint32_t height,
                          uint32_t serial)
{
    if (!out || out_len < VGPU_EDID_SIZE || width == 0 || height == 0)
        return 0;
    width = min_u32(width, MAX_ACTIVE);
    height = min_u32(height, MAX_ACTIVE);

    uint8_t e[VGPU_EDID_SIZE];
    memset(e, 0, sizeof(e));

    static const uint8_t header[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
    memcpy(e, header, sizeof(header));

    /* Three letters, 5 bits each ('A' = 1), big-endian. */
    const char *mfg = "VGP";
    uint32_t id = (uint32_t)(mfg[0] - 'A' + 1) << 10 | (uint32_t)(mfg[1] - 'A' + 1) << 5 |
                  (uint32_t)(mfg[2] - 'A' + 1);
    e[EDID_MANUFACTURER] = (uint8_t)(id >> 8);
    e[EDID_MANUFACTURER + 1] = (uint8_t)(id & 0xff);
    e[EDID_PRODUCT] = 0x01; /* product code 0x0001, little-endian */
    e[EDID_PRODUCT + 1] = 0x00;
    for (unsigned int i = 0; i < 4; i++)
        e[EDID_SERIAL + i] = (uint8_t)(serial >> (8 * i));
    /* Fixed, so the EDID is reproducible: week unspecified, 2024. */
    e[EDID_WEEK] = 0;
    e[EDID_YEAR] = 2024 - 1990;
    e[EDID_VERSION] = 1;
    e[EDID_REVISION] = 4;
    /* Digital, 8 bits per colour, DisplayPort (as QEMU's generated EDID). */
    e[EDID_INPUT] = 0x80 | 0x20 | 0x05;
    e[EDID_WIDTH_CM] = (uint8_t)min_u32(max_u32(size_at_96dpi(width, 100), 1), 255);
    e[EDID_HEIGHT_CM] = (uint8_t)min_u32(max_u32(size_at_96dpi(height, 100), 1), 255);
    e[EDID_GAMMA] = 220 - 100; /* 2.2 */
    /* RGB 4:4:4; sRGB default colour space; preferred timing is native; continuous frequency */
    e[EDID_FEATURES] = 0x04 | 0x02 | 0x01;
    put_chromaticity(e + EDID_CHROMA);
    /* 640x480@60 only if it fits on the scanout, so no established mode exceeds it. */
    if (width >= 640 && height >= 480)
        e[EDID_ESTABLISHED] = 0x20;
    for (unsigned int i = 0; i < 8; i++) {
        e[EDID_STANDARD + 2 * i] = 0x01; /* unused */
        e[EDID_STANDARD + 2 * i + 1] = 0x01;
    }

    struct timing t;
    preferred_timing(width, height, &t);
    put_dtd(e + EDID_DESCRIPTOR_1, &t);
    put_range_descriptor(e + EDID_DESCRIPTOR_2, &t);
    put_text_descriptor(e + EDID_DESCRIPTOR_3, DESC_NAME, "vhost-gpu");
    char text[16]; /* "4294967295" at most: cannot truncate */
    (void)snprintf(text, sizeof(text), "%u", serial);
    put_text_descriptor(e + EDID_DESCRIPTOR_4, DESC_SERIAL, text);

    e[EDID_EXTENSIONS] = 0;
    uint8_t sum = 0;
    for (unsigned int i = 0; i < EDID_CHECKSUM; i++)
        sum = (uint8_t)(sum + e[i]);
    e[EDID_CHECKSUM] = (uint8_t)(0x100 - sum);

    memcpy(out, e, sizeof(e));
    return VGPU_EDID_SIZE;
}
