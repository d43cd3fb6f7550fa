/* SPDX-License-Identifier: MIT */
#include "virtio/iov.h"

#include <stdint.h>
#include <string.h>

size_t vgpu_iov_size(const struct iovec *iov, unsigned int n)
{
    size_t total = 0;
    for (unsigned int i = 0; i < n; i++) {
        if (iov[i].iov_len > SIZE_MAX - total)
            return SIZE_MAX;
        total += iov[i].iov_len;
    }
    return total;
}

size_t vgpu_iov_to_buf(const struct iovec *iov, unsigned int n, size_t off, void *dst, size_t len)
{
    size_t done = 0;
    for (unsigned int i = 0; i < n && done < len; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        size_t chunk = iov[i].iov_len - off;
        if (chunk > len - done)
            chunk = len - done;
        memcpy((char *)dst + done, (const char *)iov[i].iov_base + off, chunk);
        done += chunk;
        off = 0;
    }
    return done;
}

size_t vgpu_iov_from_buf(const struct iovec *iov, unsigned int n, size_t off, const void *src,
                         size_t len)
{
    size_t done = 0;
    for (unsigned int i = 0; i < n && done < len; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        size_t chunk = iov[i].iov_len - off;
        if (chunk > len - done)
            chunk = len - done;
        memcpy((char *)iov[i].iov_base + off, (const char *)src + done, chunk);
        done += chunk;
        off = 0;
    }
    return done;
}
