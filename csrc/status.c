/* status.c — errors as values: a thread-local message beside each status. */
#include "kdx_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char errbuf[512];

const char *kdx_last_error(void) { return errbuf; }

kdx_status kdx_fail(kdx_status s, const char *fmt, ...)
{
    /* Formatted aside first: callers often pass kdx_last_error() itself as an
       argument ("%s: %s", name, kdx_last_error()), and vsnprintf must not
       read the buffer it writes. */
    char msg[sizeof errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(errbuf, msg, sizeof errbuf);
    return s;
}

const char *kdx_status_name(kdx_status s)
{
    switch (s) {
    case KDX_OK: return "ok";
    case KDX_EINVAL: return "invalid argument";
    case KDX_ESHAPE: return "shape error";
    case KDX_EDTYPE: return "dtype error";
    case KDX_EINDEX: return "index error";
    case KDX_ENOMEM: return "out of memory";
    case KDX_EIO: return "i/o error";
    case KDX_EFORMAT: return "format error";
    case KDX_ESTATE: return "state error";
    }
    return "unknown status";
}

const char *kdx_dtype_name(kdx_dtype dt)
{
    switch (dt) {
    case KDX_DTYPE_F32: return "float32";
    case KDX_DTYPE_F64: return "float64";
    case KDX_DTYPE_I64: return "int64";
    }
    return "unknown";
}

size_t kdx_dtype_size(kdx_dtype dt) { return dt == KDX_DTYPE_F32 ? 4 : 8; }

kdx_status kdx_dtype_parse(const char *name, kdx_dtype *out)
{
    static const struct { const char *name; kdx_dtype dt; } names[] = {
        {"float32", KDX_DTYPE_F32}, {"float", KDX_DTYPE_F32}, {"f32", KDX_DTYPE_F32},
        {"float64", KDX_DTYPE_F64}, {"double", KDX_DTYPE_F64}, {"f64", KDX_DTYPE_F64},
        {"int64", KDX_DTYPE_I64},   {"long", KDX_DTYPE_I64},  {"i64", KDX_DTYPE_I64},
    };
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++) {
        const char *a = names[i].name, *b = name;
        while (*a && *a == *b) a++, b++;
        if (*a == 0 && *b == 0) { *out = names[i].dt; return KDX_OK; }
    }
    return kdx_fail(KDX_EDTYPE, "dtype: unknown dtype '%s' (expected float32, float64 or int64)",
                    name ? name : "(null)");
}

kdx_dtype kdx_dtype_promote(kdx_dtype a, kdx_dtype b)
{
    if (a == KDX_DTYPE_F64 || b == KDX_DTYPE_F64) return KDX_DTYPE_F64;
    if (a == KDX_DTYPE_F32 || b == KDX_DTYPE_F32) return KDX_DTYPE_F32;
    return KDX_DTYPE_I64;
}
