/* SPDX-License-Identifier: MIT */
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = VGPU_LOG_INFO;

static const char *const level_names[] = {
    [VGPU_LOG_ERROR] = "error",
    [VGPU_LOG_WARN] = "warn",
    [VGPU_LOG_INFO] = "info",
    [VGPU_LOG_DEBUG] = "debug",
};

void vgpu_log_set_level(enum vgpu_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum vgpu_log_level vgpu_log_get_level(void)
{
    return (enum vgpu_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int vgpu_log_parse_level(const char *name, enum vgpu_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum vgpu_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void vgpu_log(enum vgpu_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
        return;

    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int n = snprintf(line, sizeof(line), "vhost-gpu[%ld.%06ld] %s: ", (long)ts.tv_sec,
                     ts.tv_nsec / 1000, level_names[level]);
    if (n < 0)
        return;
    size_t len = (size_t)n;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    len += (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';

    /* One write per line so that lines from the two threads never interleave. */
    int saved = errno;
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
    errno = saved;
}

static atomic_llong guest_second = -1;
static atomic_uint guest_count;
static atomic_uint guest_suppressed;

bool vgpu_log_guest_allowed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec;
    long long seen = atomic_load_explicit(&guest_second, memory_order_relaxed);
    /* Whoever moves the second forward resets the budget and reports what was dropped. */
    if (now != seen && atomic_compare_exchange_strong(&guest_second, &seen, now)) {
        atomic_store_explicit(&guest_count, 0, memory_order_relaxed);
        unsigned int dropped = atomic_exchange_explicit(&guest_suppressed, 0, memory_order_relaxed);
        if (dropped)
            vgpu_log(VGPU_LOG_WARN, "%u more messages about bad guest input were suppressed",
                     dropped);
    }
    if (atomic_fetch_add_explicit(&guest_count, 1, memory_order_relaxed) < VGPU_LOG_GUEST_PER_SEC)
        return true;
    atomic_fetch_add_explicit(&guest_suppressed, 1, memory_order_relaxed);
    return false;
}
