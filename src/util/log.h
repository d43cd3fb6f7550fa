/* SPDX-License-Identifier: MIT */
#ifndef VGPU_UTIL_LOG_H
#define VGPU_UTIL_LOG_H

/*
 * One logger for the whole process. Messages go to stderr, one line each, prefixed with the
 * level. Thread-safe: each line is formatted into a local buffer and written with one write(2).
 */

#include <stdbool.h>

enum vgpu_log_level {
    VGPU_LOG_ERROR = 0,
    VGPU_LOG_WARN = 1,
    VGPU_LOG_INFO = 2,
    VGPU_LOG_DEBUG = 3,
};

/* Sets the most verbose level printed (default VGPU_LOG_INFO). Call before threads start. */
void vgpu_log_set_level(enum vgpu_log_level level);
enum vgpu_log_level vgpu_log_get_level(void);

/* Parses "error", "warn", "info", "debug". Returns 0 or -EINVAL. */
int vgpu_log_parse_level(const char *name, enum vgpu_log_level *out);

void vgpu_log(enum vgpu_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Whether a message caused by guest input may be logged now: at most VGPU_LOG_GUEST_PER_SEC
 * per second across the process, so a hostile guest cannot flood the log. When a new second
 * starts, the number suppressed in the previous ones is logged once. Any thread.
 */
#define VGPU_LOG_GUEST_PER_SEC 20u
bool vgpu_log_guest_allowed(void);

#define vgpu_warn_guest(...)                                                                       \
    do {                                                                                           \
        if (vgpu_log_guest_allowed())                                                              \
            vgpu_log(VGPU_LOG_WARN, __VA_ARGS__);                                                  \
    } while (0)

#define vgpu_err(...) vgpu_log(VGPU_LOG_ERROR, __VA_ARGS__)
#define vgpu_warn(...) vgpu_log(VGPU_LOG_WARN, __VA_ARGS__)
#define vgpu_info(...) vgpu_log(VGPU_LOG_INFO, __VA_ARGS__)
#define vgpu_dbg(...)                                                                              \
    do {                                                                                           \
        if (vgpu_log_get_level() >= VGPU_LOG_DEBUG)                                                \
            vgpu_log(VGPU_LOG_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

#endif
