/* SPDX-License-Identifier: MIT */
#include "itest.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void itest_fail(const char *file, int line, const char *expr, int r, const struct vgpu_fe *fe)
{
    print_error("%s:%d: %s = %d (%s)\n    front-end: %s\n", file, line, expr, r, strerror(-r),
                fe != NULL ? vgpu_fe_last_error(fe) : "-");
    _fail(file, line);
}

void itest_fail_expect(const char *file, int line, const char *expr, int r, int want,
                       const struct vgpu_fe *fe)
{
    print_error("%s:%d: %s = %d (%s), expected %d (%s)\n    front-end: %s\n", file, line, expr, r,
                strerror(-r), want, strerror(-want), fe != NULL ? vgpu_fe_last_error(fe) : "-");
    _fail(file, line);
}

#define MAX_TRACKED 16
static struct vgpu_fe *tracked[MAX_TRACKED];

static struct vgpu_fe *track(struct vgpu_fe *fe)
{
    for (int i = 0; i < MAX_TRACKED; i++) {
        if (tracked[i] == NULL) {
            tracked[i] = fe;
            return fe;
        }
    }
    print_error("more than %d open sessions\n", MAX_TRACKED);
    vgpu_fe_destroy(fe);
    fail();
    return NULL;
}

void itest_release(struct vgpu_fe *fe)
{
    for (int i = 0; i < MAX_TRACKED; i++) {
        if (tracked[i] == fe)
            tracked[i] = NULL;
    }
    vgpu_fe_destroy(fe);
}

void itest_release_all(void)
{
    for (int i = 0; i < MAX_TRACKED; i++) {
        vgpu_fe_destroy(tracked[i]);
        tracked[i] = NULL;
    }
}

int itest_ms(int base_ms)
{
    return vgpu_fe_timeout_ms(base_ms);
}

const char *const *itest_daemon_args(void)
{
    static const char *const debug[] = {"--log-level", "debug", NULL};

    return getenv("VGPU_TEST_DEBUG") != NULL ? debug : NULL;
}

struct vgpu_fe_daemon *itest_spawn_fd(const struct vgpu_fe_config *cfg, unsigned int flags,
                                      struct vgpu_fe **fe)
{
    int sock = -1;
    struct vgpu_fe_daemon *d = vgpu_fe_daemon_spawn_fd(itest_daemon_args(), flags, &sock);

    if (d == NULL) {
        print_error("spawning the daemon failed: %s (VGPU_BINARY=%s)\n", strerror(errno),
                    vgpu_fe_binary() != NULL ? vgpu_fe_binary() : "unset");
        fail();
    }
    *fe = vgpu_fe_create(sock, cfg);
    if (*fe == NULL) {
        print_error("vgpu_fe_create failed: %s\n", strerror(errno));
        vgpu_fe_daemon_destroy(d);
        fail();
    }
    track(*fe);
    return d;
}

struct vgpu_fe_daemon *itest_spawn_socket(const char *path, unsigned int flags)
{
    struct vgpu_fe_daemon *d = vgpu_fe_daemon_spawn_socket(path, itest_daemon_args(), flags);

    if (d == NULL) {
        print_error("spawning the daemon on %s failed: %s (VGPU_BINARY=%s)\n", path,
                    strerror(errno), vgpu_fe_binary() != NULL ? vgpu_fe_binary() : "unset");
        fail();
    }
    return d;
}

struct vgpu_fe *itest_connect(struct vgpu_fe_daemon *d, const struct vgpu_fe_config *cfg)
{
    int sock = vgpu_fe_daemon_connect(d, itest_ms(5000));

    if (sock < 0) {
        print_error("connecting to %s failed: %s\n", vgpu_fe_daemon_socket_path(d),
                    strerror(-sock));
        fail();
    }
    struct vgpu_fe *fe = vgpu_fe_create(sock, cfg);
    if (fe == NULL) {
        print_error("vgpu_fe_create failed: %s\n", strerror(errno));
        fail();
    }
    return track(fe);
}

void itest_fill_unspec(void *req, uint64_t fence_id)
{
    struct virtio_gpu_ctrl_hdr h;

    memset(&h, 0, sizeof(h));
    h.type = 0x0999;
    h.flags = VIRTIO_GPU_FLAG_FENCE;
    h.fence_id = fence_id;
    memcpy(req, &h, sizeof(h));
}

void itest_check_unspec(const void *resp, uint64_t fence_id)
{
    struct virtio_gpu_ctrl_hdr h;

    memcpy(&h, resp, sizeof(h));
    assert_int_equal(h.type, VIRTIO_GPU_RESP_ERR_UNSPEC);
    assert_true(h.flags & VIRTIO_GPU_FLAG_FENCE);
    assert_int_equal(h.fence_id, fence_id);
    assert_int_equal(h.ctx_id, 0);
    assert_int_equal(h.ring_idx, 0);
}

void itest_ctrl_roundtrip(struct vgpu_fe *fe, unsigned int flags, uint64_t fence_id)
{
    struct virtio_gpu_ctrl_hdr req, resp;
    uint32_t len = 0;

    itest_fill_unspec(&req, fence_id);
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CTRLQ, &req, sizeof(req), &resp, sizeof(resp), flags,
                             itest_ms(5000), &len));
    assert_int_equal(len, sizeof(resp));
    itest_check_unspec(&resp, fence_id);
}

void itest_cursor_roundtrip(struct vgpu_fe *fe, unsigned int flags)
{
    struct virtio_gpu_update_cursor mc;
    uint32_t len = 1;

    memset(&mc, 0, sizeof(mc));
    mc.hdr.type = VIRTIO_GPU_CMD_MOVE_CURSOR;
    mc.pos.x = 100;
    mc.pos.y = 200;
    assert_int_equal(sizeof(mc), 56);
    FE_CHECK(fe, vgpu_fe_cmd(fe, VGPU_FE_CURSORQ, &mc, sizeof(mc), NULL, 0, flags, itest_ms(5000),
                             &len));
    assert_int_equal(len, 0);
}

void itest_roundtrip(struct vgpu_fe *fe, unsigned int flags)
{
    itest_ctrl_roundtrip(fe, flags, 77);
    itest_cursor_roundtrip(fe, flags);
}

void itest_check_serves(struct vgpu_fe_daemon *d, const struct vgpu_fe_config *cfg)
{
    struct vgpu_fe *fe = itest_connect(d, cfg);

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    itest_roundtrip(fe, 0);
    itest_release(fe);
    assert_true(vgpu_fe_daemon_is_alive(d));
}

void itest_finish_fd(struct vgpu_fe_daemon *d, struct vgpu_fe *fe)
{
    int status = 0;

    itest_release(fe);
    int r = vgpu_fe_daemon_wait(d, itest_ms(5000), &status);
    if (r < 0) {
        print_error("the --fd daemon did not exit after the front-end disconnected\n");
        fail();
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        print_error("the --fd daemon ended with wait status 0x%x (exit %d, signal %d)\n", status,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        fail();
    }
}

char *itest_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *dir = NULL;

    if (base == NULL || *base == '\0')
        base = "/tmp";
    if (asprintf(&dir, "%s/vgpu-itest-XXXXXX", base) < 0)
        fail();
    if (mkdtemp(dir) == NULL) {
        print_error("mkdtemp failed: %s\n", strerror(errno));
        fail();
    }
    return dir;
}

char *itest_path(const char *dir, const char *name)
{
    char *p = NULL;

    if (asprintf(&p, "%s/%s", dir, name) < 0)
        fail();
    return p;
}

void itest_rmdir(char *dir)
{
    if (dir == NULL)
        return;
    DIR *d = opendir(dir);
    if (d != NULL) {
        for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *p = itest_path(dir, e->d_name);
            unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

int itest_shared_start(struct itest_shared *s, const char *const *extra)
{
    const char *argv[32];
    size_t n = 0;

    for (const char *const *p = itest_daemon_args(); p != NULL && *p != NULL && n < 24; p++)
        argv[n++] = *p;
    for (const char *const *p = extra; p != NULL && *p != NULL && n < 31; p++)
        argv[n++] = *p;
    argv[n] = NULL;
    s->dir = itest_mkdtemp();
    s->path = itest_path(s->dir, "vgpu.sock");
    s->log_seen = 0;
    s->d = vgpu_fe_daemon_spawn_socket(s->path, argv, VGPU_FE_SPAWN_CAPTURE_STDERR);
    if (s->d == NULL) {
        print_error("spawning the daemon on %s failed: %s (VGPU_BINARY=%s)\n", s->path,
                    strerror(errno), vgpu_fe_binary() != NULL ? vgpu_fe_binary() : "unset");
        return -1;
    }
    return 0;
}

void itest_shared_stop(struct itest_shared *s)
{
    vgpu_fe_daemon_destroy(s->d);
    free(s->path);
    itest_rmdir(s->dir);
}

char *itest_shared_log(struct itest_shared *s)
{
    static char buf[1 << 20];
    long n = vgpu_fe_daemon_stderr(s->d, buf, sizeof(buf));

    if (n < 0)
        n = 0;
    long from = s->log_seen <= n ? s->log_seen : 0;
    s->log_seen = n;
    return buf + from;
}

int itest_shared_test_done(struct itest_shared *s)
{
    itest_release_all();
    const char *log = itest_shared_log(s);

    if (*log != '\0')
        (void)fprintf(stderr, "---- daemon log ----\n%s--------------------\n", log);
    if (!vgpu_fe_daemon_is_alive(s->d)) {
        (void)fprintf(stderr, "the daemon died\n");
        return -1;
    }
    return 0;
}
