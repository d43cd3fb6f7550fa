/* SPDX-License-Identifier: MIT */
#ifndef VGPU_VIRTIO_EDID_H
#define VGPU_VIRTIO_EDID_H

#include <stddef.h>
#include <stdint.h>

/*
 * EDID for the virtual monitor behind one scanout, answered to VIRTIO_GPU_CMD_GET_EDID
 * (VIRTIO_GPU_F_EDID) so the guest's preferred mode is the scanout's size.
 */

#define VGPU_EDID_SIZE 128

/*
 * Writes one EDID 1.4 base block (VGPU_EDID_SIZE bytes, no extensions) to out:
 * manufacturer "VGP" (not in the PNP ID registry as shipped in Debian 12's hwdata), product
 * name "vhost-gpu", the 32-bit serial number field and a serial-number string both set to
 * serial (pass the scanout index), a digital 8-bit-per-colour input, sRGB chromaticity, a
 * physical size derived from 96 DPI, 640x480@60 as the only established timing when it fits,
 * and a continuous-frequency range limits descriptor that includes the preferred mode.
 *
 * The preferred detailed timing is width x height, exactly (not rounded to CVT's 8-pixel
 * cells), with CVT 1.2 reduced-blanking v1 timings at 60 Hz: 160-pixel horizontal blank
 * (48 front porch, 32 sync, positive), 3-line front porch, vsync width by aspect ratio
 * (negative), vertical blank of at least 460 us, and the pixel clock rounded down to
 * 0.25 MHz. Where that clock would not fit the descriptor's 16-bit field (655.35 MHz, e.g.
 * 4095x4095), the refresh rate is lowered one hertz at a time until it does (36 Hz for
 * 4095x4095). Where it would round down to zero (tiny modes such as 1x1), it is rounded down
 * to 10 kHz instead, the field's own unit. Small modes stay well-formed but are of little use:
 * Linux ignores detailed timings under 64 pixels a side, and edid-decode flags pixel clocks
 * under 10 MHz (below about 400x300) as implausible; the guest then falls back to a default.
 * Totals and sync positions match X's `cvt -r`; the clock follows VESA's formula (refresh x
 * totals), which gives the DMT values (533.25 MHz for 3840x2160) where X's cvt and Linux's
 * drm_cvt_mode(), working from the estimated line period, may be one 0.25 MHz step lower.
 *
 * width and height above 4095, the limit of the descriptor's 12-bit fields, are clamped to
 * 4095 (the guest's preferred mode then is smaller than asked, not wrong by a factor of 4096).
 * Returns VGPU_EDID_SIZE, or 0 with out untouched if out is NULL, out_len < VGPU_EDID_SIZE, or
 * width or height is 0. Pure function; any thread.
 */
size_t vgpu_edid_generate(uint8_t *out, size_t out_len, uint32_t width, uint32_t height,
                          uint32_t serial);

#endif
