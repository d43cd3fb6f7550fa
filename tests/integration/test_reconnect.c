/* SPDX-License-Identifier: MIT */
/*
 * A --socket-path daemon serves one front-end after another (QEMU restarts, reconnects) without
 * leaking: after a warm-up its fd count is exactly flat and its RSS stays within a small bound.
 * SIGTERM ends it promptly with status 0 and removes its socket.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

#define ITERATIONS 100
#define WARMUP 5
#define RSS_SLACK_KIB 512

struct fixture {
    char *dir;
    char *path;
    struct vgpu_fe_daemon *d;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->dir = itest_mkdtemp();
    f->path = itest_path(f->dir, "vgpu.sock");
    f->d = itest_spawn_socket(f->path, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    itest_release_all();
    if (f != NULL) {
        vgpu_fe_daemon_destroy(f->d);
        free(f->path);
        itest_rmdir(f->dir);
        free(f);
    }
    return 0;
}

static void dump_fds(const struct vgpu_fe_daemon *d, const char *what)
{
    char buf[8192];

    if (vgpu_fe_daemon_fd_list(d, buf, sizeof(buf)) >= 0)
        print_error("%s: daemon fds:\n%s", what, buf);
}

/* Checks the fd count against the reference taken at iteration WARMUP. */
static void check_fds(const struct vgpu_fe_daemon *d, unsigned int iter, int *ref)
{
    int n = vgpu_fe_daemon_fd_count(d);

    assert_true(n > 0);
    if (iter == WARMUP) {
        *ref = n;
    } else if (iter > WARMUP && n != *ref) {
        print_error("iteration %u: daemon has %d fds, %d at iteration %d\n", iter, n, *ref, WARMUP);
        dump_fds(d, "now");
        fail();
    }
}

static void test_reconnect_many(void **state)
{
    struct fixture *f = *state;
    int fd_ref = -1;
    long rss_ref = 0, rss = 0;

    for (unsigned int i = 0; i < ITERATIONS; i++) {
        struct vgpu_fe *fe = itest_connect(f->d, NULL);
        FE_CHECK(fe, vgpu_fe_negotiate(fe));
        itest_ctrl_roundtrip(fe, i & 1 ? VGPU_FE_POST_INDIRECT : 0, 1000 + i);
        itest_cursor_roundtrip(fe, 0);
        /* Measured while connected: the previous session is certainly torn down by now,
         * since the daemon serves one front-end at a time. */
        check_fds(f->d, i, &fd_ref);
        rss = vgpu_fe_daemon_rss_kib(f->d);
        assert_true(rss > 0);
        if (i == WARMUP)
            rss_ref = rss;
        itest_release(fe);
    }
    print_message("fds %d, RSS %ld KiB after warm-up, %ld KiB after %d sessions\n", fd_ref, rss_ref,
                  rss, ITERATIONS);
    /* TSan keeps shadow memory and access history for every address ever used, so RSS
     * grows with the number of sessions there whatever the daemon does; the fd check
     * above still runs in that lane. */
    const char *san = getenv("VGPU_SANITIZE");
    if (san && strstr(san, "thread")) {
        print_message("RSS bound not checked under ThreadSanitizer\n");
    } else if (rss - rss_ref > RSS_SLACK_KIB) {
        print_error("RSS grew by %ld KiB over %d sessions\n", rss - rss_ref, ITERATIONS - WARMUP);
        fail();
    }
    assert_true(vgpu_fe_daemon_is_alive(f->d));
}

/* Front-ends that vanish at every stage of a session. */
static void test_disconnect_midway(void **state)
{
    struct fixture *f = *state;
    int fd_ref = -1;

    for (unsigned int i = 0; i < 8 * 5 + WARMUP; i++) {
        struct vgpu_fe *fe = itest_connect(f->d, NULL);
        switch (i % 5) {
        case 0:
            break;
        case 1:
            FE_CHECK(fe, vgpu_fe_realize(fe));
            break;
        case 2: {
            /* Started, with a command in flight and the display socket open. */
            FE_CHECK(fe, vgpu_fe_negotiate(fe));
            struct virtio_gpu_ctrl_hdr req;
            itest_fill_unspec(&req, 1);
            uint64_t g = vgpu_fe_alloc(fe, 48, 64);
            memcpy(vgpu_fe_gpa_ptr(fe, g, 24), &req, 24);
            struct vgpu_fe_buf bufs[2] = {{g, 24}, {g + 24, 24}};
            FE_CHECK(fe, vgpu_fe_vq_post(fe, VGPU_FE_CTRLQ, bufs, 1, 1, 0));
            break;
        }
        case 3:
            FE_CHECK(fe, vgpu_fe_negotiate(fe));
            FE_CHECK(fe, vgpu_fe_stop(fe));
            break;
        default: {
            /* Half a header. */
            uint8_t half[6] = {1, 0, 0, 0, 1, 0};
            FE_CHECK(fe, vgpu_fe_send_bytes(fe, half, sizeof(half), NULL, 0));
            break;
        }
        }
        itest_release(fe);

        fe = itest_connect(f->d, NULL);
        FE_CHECK(fe, vgpu_fe_negotiate(fe));
        itest_roundtrip(fe, 0);
        check_fds(f->d, i, &fd_ref);
        itest_release(fe);
    }
    assert_true(vgpu_fe_daemon_is_alive(f->d));
}

/* A second front-end that connects while the first is served gets its turn afterwards. */
static void test_queued_connection(void **state)
{
    struct fixture *f = *state;
    struct vgpu_fe *a = itest_connect(f->d, NULL);

    FE_CHECK(a, vgpu_fe_negotiate(a));
    struct vgpu_fe *b = itest_connect(f->d, NULL);
    FE_CHECK(b, vgpu_fe_send(b, VGPU_FE_GET_FEATURES, VGPU_FE_VERSION, NULL, 0, NULL, 0));
    itest_roundtrip(a, 0);
    itest_release(a);
    uint64_t features;
    FE_CHECK(b, vgpu_fe_recv_reply(b, VGPU_FE_GET_FEATURES, &features, sizeof(features)));
    assert_true(features & (1ull << VGPU_FE_F_PROTOCOL_FEATURES));
    FE_CHECK(b, vgpu_fe_negotiate(b));
    itest_roundtrip(b, 0);
    itest_release(b);
    itest_check_serves(f->d, NULL);
}

static void expect_clean_sigterm(struct fixture *f)
{
    int status = 0;

    FE_CHECK(NULL, vgpu_fe_daemon_signal(f->d, SIGTERM));
    int64_t t0 = vgpu_fe_now_ms();
    int r = vgpu_fe_daemon_wait(f->d, itest_ms(2000), &status);
    if (r < 0) {
        print_error("the daemon ignored SIGTERM for %d ms\n", itest_ms(2000));
        fail();
    }
    print_message("exited %lld ms after SIGTERM\n", (long long)(vgpu_fe_now_ms() - t0));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        print_error("SIGTERM: wait status 0x%x (exit %d, signal %d), expected exit 0\n", status,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        fail();
    }
    struct stat st;
    if (lstat(f->path, &st) == 0) {
        print_error("the socket file %s is still there after SIGTERM\n", f->path);
        fail();
    }
}

static void test_sigterm_idle(void **state)
{
    struct fixture *f = *state;

    itest_check_serves(f->d, NULL);
    expect_clean_sigterm(f);
}

static void test_sigterm_connected(void **state)
{
    struct fixture *f = *state;
    struct vgpu_fe *fe = itest_connect(f->d, NULL);

    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    itest_roundtrip(fe, 0);
    expect_clean_sigterm(f);
    /* The session ended with the process. */
    FE_CHECK(fe, vgpu_fe_wait_closed(fe, itest_ms(1000)));
    itest_release(fe);
}

/*
 * ASan's quarantine keeps freed memory resident (about 10 KiB per session here), which would
 * drown the RSS check in the sanitizer lane. Children get it switched off; other ASan checks
 * stay on, and LSan still reports real leaks when the daemon exits.
 */
static void no_asan_quarantine_for_children(void)
{
    const char *old = getenv("ASAN_OPTIONS");
    char *v = NULL;

    if (asprintf(&v, "%s%squarantine_size_mb=0:thread_local_quarantine_size_kb=0",
                 old != NULL ? old : "", old != NULL && *old != '\0' ? ":" : "") < 0)
        return;
    setenv("ASAN_OPTIONS", v, 1);
    free(v);
}

int main(void)
{
    no_asan_quarantine_for_children();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reconnect_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_midway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_connected, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
