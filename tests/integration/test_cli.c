/* SPDX-License-Identifier: MIT */
/*
 * The command line as libvirt and the vhost-user "backend program conventions" use it: help,
 * version, capabilities JSON, exit status 2 for bad usage, and the socket-path rules (replace a
 * stale socket, never steal a live one, never delete a regular file).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

static int run(const char *const *args, struct vgpu_fe_run_result *res)
{
    int r = vgpu_fe_run(args, itest_ms(5000), res);

    if (r < 0) {
        print_error("running the daemon failed: %s\n  stdout: %s\n  stderr: %s\n", strerror(-r),
                    res->out != NULL ? res->out : "", res->err != NULL ? res->err : "");
        vgpu_fe_run_result_finish(res);
        fail();
    }
    return WIFEXITED(res->wstatus) ? WEXITSTATUS(res->wstatus) : 128 + WTERMSIG(res->wstatus);
}

static void expect_exit(const char *const *args, int want, struct vgpu_fe_run_result *res)
{
    int code = run(args, res);

    if (code != want) {
        print_error("%s ...: exit %d, expected %d\n  stdout: %s\n  stderr: %s\n",
                    args[0] != NULL ? args[0] : "", code, want, res->out, res->err);
        vgpu_fe_run_result_finish(res);
        fail();
    }
}

static unsigned int count_lines(const char *s, size_t len)
{
    unsigned int n = 0;

    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    if (len > 0 && s[len - 1] != '\n')
        n++;
    return n;
}

static void test_help(void **state)
{
    struct vgpu_fe_run_result res;
    const char *const args[] = {"--help", NULL};

    expect_exit(args, 0, &res);
    assert_true(res.out_len > 0);
    assert_non_null(strstr(res.out, "--socket-path"));
    assert_non_null(strstr(res.out, "--fd"));
    assert_non_null(strstr(res.out, "--print-capabilities"));
    vgpu_fe_run_result_finish(&res);

    const char *const args2[] = {"-h", NULL};
    expect_exit(args2, 0, &res);
    assert_non_null(strstr(res.out, "--socket-path"));
    vgpu_fe_run_result_finish(&res);
}

static void test_version(void **state)
{
    struct vgpu_fe_run_result res;
    const char *const args[] = {"--version", NULL};

    expect_exit(args, 0, &res);
    assert_non_null(strstr(res.out, VGPU_VERSION));
    vgpu_fe_run_result_finish(&res);
    const char *const args2[] = {"-V", NULL};
    expect_exit(args2, 0, &res);
    assert_non_null(strstr(res.out, VGPU_VERSION));
    vgpu_fe_run_result_finish(&res);
}

/* Removes all JSON whitespace outside strings. */
static void squeeze(const char *in, char *out, size_t size)
{
    bool in_str = false;
    size_t o = 0;

    for (const char *p = in; *p != '\0' && o + 1 < size; p++) {
        if (*p == '"' && (p == in || p[-1] != '\\'))
            in_str = !in_str;
        if (!in_str && isspace((unsigned char)*p))
            continue;
        out[o++] = *p;
    }
    out[o] = '\0';
}

static void check_capabilities(const char *out)
{
    char j[4096];

    squeeze(out, j, sizeof(j));
    size_t n = strlen(j);
    assert_true(n >= 2);
    assert_int_equal(j[0], '{');
    assert_int_equal(j[n - 1], '}');
    assert_non_null(strstr(j, "\"type\":\"gpu\""));
    const char *f = strstr(j, "\"features\":[");
    assert_non_null(f);
    /* Only feature names libvirt knows (it rejects unknown ones). */
    const char *p = f + strlen("\"features\":[");
    while (*p != ']') {
        assert_int_equal(*p, '"');
        const char *end = strchr(p + 1, '"');
        assert_non_null(end);
        size_t len = (size_t)(end - p - 1);
        bool known = (len == 5 && strncmp(p + 1, "virgl", 5) == 0) ||
                     (len == 11 && strncmp(p + 1, "render-node", 11) == 0);
        if (!known) {
            print_error("unknown capability feature %.*s\n", (int)len, p + 1);
            fail();
        }
        p = end + 1;
        if (*p == ',')
            p++;
        else
            assert_int_equal(*p, ']');
    }
}

static void test_print_capabilities(void **state)
{
    struct vgpu_fe_run_result res;
    const char *const args[] = {"--print-capabilities", NULL};

    expect_exit(args, 0, &res);
    check_capabilities(res.out);
    vgpu_fe_run_result_finish(&res);

    const char *const args2[] = {"-c", NULL};
    expect_exit(args2, 0, &res);
    check_capabilities(res.out);
    vgpu_fe_run_result_finish(&res);

    /* "Ignore all other options": even with a socket option it only prints. */
    const char *const args3[] = {"--print-capabilities", "--fd", "99", NULL};
    expect_exit(args3, 0, &res);
    check_capabilities(res.out);
    vgpu_fe_run_result_finish(&res);
}

/* Bad usage: exit 2 and exactly one line on stderr. */
static void expect_usage_error(const char *const *args)
{
    struct vgpu_fe_run_result res;

    expect_exit(args, 2, &res);
    if (res.err_len == 0 || count_lines(res.err, res.err_len) != 1) {
        print_error("expected one line on stderr, got %u:\n%s\n", count_lines(res.err, res.err_len),
                    res.err);
        vgpu_fe_run_result_finish(&res);
        fail();
    }
    vgpu_fe_run_result_finish(&res);
}

static void test_bad_usage(void **state)
{
    const char *const unknown[] = {"--bogus", NULL};
    const char *const unknown_short[] = {"-Z", NULL};
    const char *const neither[] = {NULL};
    const char *const both[] = {"--fd", "3", "--socket-path", "/nonexistent/x.sock", NULL};
    const char *const bad_fd[] = {"--fd", "abc", NULL};
    const char *const neg_fd[] = {"--fd", "-1", NULL};
    const char *const bad_level[] = {"--socket-path", "/nonexistent/x.sock", "--log-level", "loud",
                                     NULL};
    const char *const missing_arg[] = {"--socket-path", NULL};
    const char *const stray[] = {"--socket-path", "/nonexistent/x.sock", "extra", NULL};

    expect_usage_error(unknown);
    expect_usage_error(unknown_short);
    expect_usage_error(neither);
    expect_usage_error(both);
    expect_usage_error(bad_fd);
    expect_usage_error(neg_fd);
    expect_usage_error(bad_level);
    expect_usage_error(missing_arg);
    expect_usage_error(stray);
}

static void test_bad_outputs(void **state)
{
    const char *const zero[] = {"--socket-path", "/nonexistent/x.sock", "--outputs", "0", NULL};
    const char *const many[] = {"--socket-path", "/nonexistent/x.sock", "--outputs", "17", NULL};
    const char *const junk[] = {"--socket-path", "/nonexistent/x.sock", "--outputs", "2x", NULL};

    expect_usage_error(zero);
    expect_usage_error(many);
    expect_usage_error(junk);
}

/* --outputs N shows up as num_scanouts in the config space. */
static void test_outputs(void **state)
{
    static const char *const args[] = {"--outputs", "4", NULL};
    int sock;
    struct vgpu_fe_daemon *d = vgpu_fe_daemon_spawn_fd(args, 0, &sock);

    assert_non_null(d);
    struct vgpu_fe *fe = vgpu_fe_create(sock, NULL);
    assert_non_null(fe);
    FE_CHECK(fe, vgpu_fe_negotiate(fe));
    assert_int_equal(vgpu_fe_info(fe)->config.num_scanouts, 4);
    itest_roundtrip(fe, 0);
    itest_finish_fd(d, fe);
    vgpu_fe_daemon_destroy(d);
}

static int bind_unix(const char *path, bool do_listen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (const struct sockaddr *)&sa, sizeof(sa)), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static void test_stale_socket(void **state)
{
    char *dir = itest_mkdtemp();
    char *path = itest_path(dir, "vgpu.sock");

    /* A socket file nobody listens on any more (a crashed daemon's leftover). */
    close(bind_unix(path, true));
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));

    struct vgpu_fe_daemon *d = itest_spawn_socket(path, 0);
    itest_check_serves(d, NULL);
    vgpu_fe_daemon_destroy(d);
    free(path);
    itest_rmdir(dir);
}

static void test_live_socket(void **state)
{
    char *dir = itest_mkdtemp();
    char *path = itest_path(dir, "vgpu.sock");
    int lfd = bind_unix(path, true);
    struct vgpu_fe_run_result res;
    const char *const args[] = {"--socket-path", path, NULL};

    int code = run(args, &res);
    if (code == 0 || res.err_len == 0) {
        print_error("daemon on a live socket: exit %d, stderr '%s'\n", code, res.err);
        vgpu_fe_run_result_finish(&res);
        fail();
    }
    vgpu_fe_run_result_finish(&res);
    /* Our listener still owns the path. */
    int c = vgpu_fe_connect_path(path, itest_ms(1000));
    assert_true(c >= 0);
    int a = accept(lfd, NULL, NULL);
    assert_true(a >= 0);
    close(a);
    close(c);
    close(lfd);
    free(path);
    itest_rmdir(dir);
}

static void test_regular_file(void **state)
{
    char *dir = itest_mkdtemp();
    char *path = itest_path(dir, "vgpu.sock");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    struct vgpu_fe_run_result res;
    const char *const args[] = {"--socket-path", path, NULL};

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep", 4), 4);
    close(fd);
    int code = run(args, &res);
    if (code == 0 || res.err_len == 0) {
        print_error("daemon on a regular file: exit %d, stderr '%s'\n", code, res.err);
        vgpu_fe_run_result_finish(&res);
        fail();
    }
    vgpu_fe_run_result_finish(&res);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);
    free(path);
    itest_rmdir(dir);
}

/* A socket path in a directory that does not exist: a clear failure, not a hang. */
static void test_socket_dir_missing(void **state)
{
    struct vgpu_fe_run_result res;
    const char *const args[] = {"--socket-path", "/nonexistent-vgpu-dir/vgpu.sock", NULL};

    int code = run(args, &res);
    assert_true(code != 0);
    assert_true(res.err_len > 0);
    vgpu_fe_run_result_finish(&res);
}

/* --fd: exits 0 when the front-end goes away, also before any message. */
static void test_fd_eof(void **state)
{
    int sock;
    struct vgpu_fe_daemon *d = vgpu_fe_daemon_spawn_fd(NULL, 0, &sock);
    int status = -1;

    assert_non_null(d);
    close(sock);
    assert_int_equal(vgpu_fe_daemon_wait(d, itest_ms(5000), &status), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    vgpu_fe_daemon_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_print_capabilities),
        cmocka_unit_test(test_bad_usage),
        cmocka_unit_test(test_bad_outputs),
        cmocka_unit_test(test_outputs),
        cmocka_unit_test(test_stale_socket),
        cmocka_unit_test(test_live_socket),
        cmocka_unit_test(test_regular_file),
        cmocka_unit_test(test_socket_dir_missing),
        cmocka_unit_test(test_fd_eof),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
