/* SPDX-License-Identifier: MIT */
#include "render/virgl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <epoxy/egl.h>
/* Callbacks version 3 (write_context_fence) is behind this in 0.10.4 (CMake defines it). */
#include <virgl/virglrenderer.h>

#include "util/log.h"

/* virglrenderer's box is opaque in its header; ours has the layout it casts to. */
_Static_assert(sizeof(struct vgpu_box) == 6 * sizeof(uint32_t), "vgpu_box is six 32-bit words");

/* The library is process-global: so is its one client. Render thread only (see header). */
static struct {
    bool initialised;
    const struct vgpu_virgl_ops *ops;
    void *data;
    char *render_node;
    int cookie; /* virglrenderer wants a non-NULL cookie; it is otherwise unused */
} st;

static int neg_errno(int r)
{
    return r > 0 ? -r : r;
}

static void on_write_fence(void *cookie, uint32_t fence)
{
    st.ops->fence(st.data, fence);
}

static void on_write_context_fence(void *cookie, uint32_t ctx_id, uint32_t ring_idx,
                                   uint64_t fence_id)
{
    /* Only ring 0 exists for virglrenderer's GL contexts (we never create another). */
    st.ops->context_fence(st.data, ctx_id, fence_id);
}

/* Called by virglrenderer at init: it owns (and closes) the fd we return. */
static int on_get_drm_fd(void *cookie)
{
    if (!st.render_node)
        return -1;
    int fd = open(st.render_node, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        vgpu_err("cannot open render node %s: %s", st.render_node, strerror(errno));
    return fd;
}

/*
 * vrend prints through here (context errors, shader failures, capability notes). A guest can
 * make it print at will, so it stays at debug level.
 */
__attribute__((format(printf, 1, 0))) static void on_debug(const char *fmt, va_list ap)
{
    if (vgpu_log_get_level() < VGPU_LOG_DEBUG)
        return;
    char line[512];
    (void)vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    if (n > 0 && line[n - 1] == '\n')
        line[n - 1] = '\0';
    vgpu_dbg("virglrenderer: %s", line);
}

/*
 * virgl_renderer_init (0.10.4) crashes instead of failing when EGL has no usable surfaceless
 * display (e.g. no EGL vendor installed): check that first, so that the daemon can say why and
 * exit cleanly. The display is the one virglrenderer then opens again.
 */
static int probe_surfaceless(void)
{
    if (!epoxy_has_egl()) {
        vgpu_err("virgl: no EGL library");
        return -ENOENT;
    }
    const char *ext = eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS);
    if (!ext || !strstr(ext, "EGL_MESA_platform_surfaceless")) {
        vgpu_err("virgl: EGL has no surfaceless platform (is Mesa's libegl-mesa0 installed?)");
        return -ENOTSUP;
    }
    EGLDisplay dpy =
        eglGetPlatformDisplayEXT(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, NULL);
    EGLint major, minor;
    if (dpy == EGL_NO_DISPLAY || !eglInitialize(dpy, &major, &minor)) {
        vgpu_err("virgl: cannot initialise an EGL surfaceless display (error 0x%x)",
                 (unsigned)eglGetError());
        return -EIO;
    }
    eglTerminate(dpy);
    return 0;
}

static struct virgl_renderer_callbacks callbacks = {
    .version = 3,
    .write_fence = on_write_fence,
    .write_context_fence = on_write_context_fence,
    .get_drm_fd = on_get_drm_fd,
};

int vgpu_virgl_init(const char *render_node, const struct vgpu_virgl_ops *ops, void *data)
{
    if (st.initialised)
        return -EALREADY;
    st.ops = ops;
    st.data = data;
    st.render_node = render_node ? strdup(render_node) : NULL;
    if (render_node && !st.render_node)
        return -ENOMEM;
    virgl_set_debug_callback(on_debug);
    if (!render_node) {
        int r = probe_surfaceless();
        if (r < 0) {
            free(st.render_node);
            return r;
        }
    }
    /*
     * THREAD_SYNC: fences are waited for on virglrenderer's own thread, which signals an
     * eventfd; without it the only way to learn about fences is to poll in a loop.
     * USE_SURFACELESS without a render node: Mesa's surfaceless EGL platform, which needs no
     * /dev/dri at all (plain USE_EGL fails there, silently).
     */
    int flags = VIRGL_RENDERER_USE_EGL | VIRGL_RENDERER_THREAD_SYNC;
    if (!render_node)
        flags |= VIRGL_RENDERER_USE_SURFACELESS;
    int r = virgl_renderer_init(&st.cookie, flags, &callbacks);
    if (r != 0) {
        free(st.render_node);
        st.render_node = NULL;
        return -EIO;
    }
    st.initialised = true;
    return 0;
}

void vgpu_virgl_finish(void)
{
    if (!st.initialised)
        return;
    virgl_renderer_cleanup(&st.cookie);
    free(st.render_node);
    st.render_node = NULL;
    st.initialised = false;
}

int vgpu_virgl_poll_fd(void)
{
    return virgl_renderer_get_poll_fd();
}

void vgpu_virgl_poll(void)
{
    virgl_renderer_poll();
}

unsigned int vgpu_virgl_capsets(struct vgpu_virgl_capset *out, unsigned int max)
{
    unsigned int n = 0;
    /* Ids 1..8 cover every capset virtio-gpu defines today (VIRGL .. DRM). */
    for (uint32_t id = 1; id <= 8 && n < max; id++) {
        uint32_t version = 0, size = 0;
        virgl_renderer_get_cap_set(id, &version, &size);
        /* 0.10.4 reports VENUS with version 0 and a size even when it is not enabled. */
        if (version == 0 || size == 0)
            continue;
        out[n++] = (struct vgpu_virgl_capset){.id = id, .max_version = version, .max_size = size};
    }
    return n;
}

void vgpu_virgl_fill_caps(uint32_t id, uint32_t version, void *buf)
{
    virgl_renderer_fill_caps(id, version, buf);
}

int vgpu_virgl_resource_create(const struct vgpu_virgl_resource *a)
{
    struct virgl_renderer_resource_create_args args = {
        .handle = a->id,
        .target = a->target,
        .format = a->format,
        .bind = a->bind,
        .width = a->width,
        .height = a->height,
        .depth = a->depth,
        .array_size = a->array_size,
        .last_level = a->last_level,
        .nr_samples = a->nr_samples,
        .flags = a->flags,
    };
    return neg_errno(virgl_renderer_resource_create(&args, NULL, 0));
}

int vgpu_virgl_resource_create_blob(uint32_t id, uint32_t ctx_id, uint32_t blob_mem,
                                    uint32_t blob_flags, uint64_t blob_id, uint64_t size,
                                    struct iovec *iov, unsigned int niov)
{
    const struct virgl_renderer_resource_create_blob_args args = {
        .res_handle = id,
        .ctx_id = ctx_id,
        .blob_mem = blob_mem,
        .blob_flags = blob_flags,
        .blob_id = blob_id,
        .size = size,
        .iovecs = iov,
        .num_iovs = niov,
    };
    return neg_errno(virgl_renderer_resource_create_blob(&args));
}

void vgpu_virgl_resource_unref(uint32_t id)
{
    virgl_renderer_resource_unref(id);
}

int vgpu_virgl_resource_attach_iov(uint32_t id, struct iovec *iov, unsigned int niov)
{
    return neg_errno(virgl_renderer_resource_attach_iov((int)id, iov, (int)niov));
}

void vgpu_virgl_resource_detach_iov(uint32_t id)
{
    /* Hands back the list we attached; we own and free it ourselves. */
    virgl_renderer_resource_detach_iov((int)id, NULL, NULL);
}

int vgpu_virgl_resource_flags(uint32_t id, uint32_t *flags)
{
    struct virgl_renderer_resource_info info;
    memset(&info, 0, sizeof(info));
    int r = virgl_renderer_resource_get_info((int)id, &info);
    if (r != 0)
        return r > 0 ? -r : -EINVAL;
    *flags = info.flags;
    return 0;
}

int vgpu_virgl_transfer(bool to_host, uint32_t res_id, uint32_t ctx_id, uint32_t level,
                        uint32_t stride, uint32_t layer_stride, const struct vgpu_box *box,
                        uint64_t offset, struct iovec *iov, unsigned int niov)
{
    /* virglrenderer takes a non-const box but does not write it. */
    struct vgpu_box b = *box;
    int r;
    if (to_host)
        r = virgl_renderer_transfer_write_iov(res_id, ctx_id, (int)level, stride, layer_stride,
                                              (struct virgl_box *)(void *)&b, offset, iov, niov);
    else
        r = virgl_renderer_transfer_read_iov(res_id, ctx_id, level, stride, layer_stride,
                                             (struct virgl_box *)(void *)&b, offset, iov,
                                             (int)niov);
    return neg_errno(r);
}

int vgpu_virgl_context_create(uint32_t ctx_id, uint32_t capset_id, uint32_t nlen, const char *name)
{
    if (capset_id == 0)
        return neg_errno(virgl_renderer_context_create(ctx_id, nlen, name));
    return neg_errno(virgl_renderer_context_create_with_flags(ctx_id, capset_id, nlen, name));
}

void vgpu_virgl_context_destroy(uint32_t ctx_id)
{
    virgl_renderer_context_destroy(ctx_id);
}

void vgpu_virgl_context_attach(uint32_t ctx_id, uint32_t res_id)
{
    virgl_renderer_ctx_attach_resource((int)ctx_id, (int)res_id);
}

void vgpu_virgl_context_detach(uint32_t ctx_id, uint32_t res_id)
{
    virgl_renderer_ctx_detach_resource((int)ctx_id, (int)res_id);
}

int vgpu_virgl_submit(uint32_t ctx_id, void *buf, uint32_t ndw)
{
    return neg_errno(virgl_renderer_submit_cmd(buf, (int)ctx_id, (int)ndw));
}

void vgpu_virgl_force_ctx0(void)
{
    virgl_renderer_force_ctx_0();
}

int vgpu_virgl_create_fence(uint32_t fence_id)
{
    /* The id is an int in the API and a uint32_t in write_fence: the bits go through. */
    return neg_errno(virgl_renderer_create_fence((int)fence_id, 0));
}

int vgpu_virgl_context_create_fence(uint32_t ctx_id, uint64_t fence_id)
{
    return neg_errno(virgl_renderer_context_create_fence(ctx_id, 0, 0, fence_id));
}
