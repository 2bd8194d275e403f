/*
 * LD_PRELOAD shim that makes an unmodified OpenSSL client (wrk) present a
 * client certificate.
 *
 * wrk has no client-certificate option, and OpenSSL's configuration file
 * cannot supply one either: its "system_default" section is applied to every
 * SSL_CTX without SSL_CONF_FLAG_CERTIFICATE (ssl/ssl_mcnf.c), so `Certificate`
 * and `PrivateKey` lines there are rejected as unknown commands. This shim
 * wraps SSL_CTX_new() and loads BENCH_CLIENT_CERT / BENCH_CLIENT_KEY (PEM)
 * into every context the program creates. The TLS 1.3 cipher suite and
 * minimum version still come from OPENSSL_CONF's system_default section.
 *
 * No OpenSSL headers are needed: symbols are looked up with dlsym().
 * Build: cc -O2 -shared -fPIC -o client_cert_shim.so client_cert_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define SSL_FILETYPE_PEM 1

typedef void *(*ctx_new_fn)(const void *method);
typedef int (*chain_file_fn)(void *ctx, const char *file);
typedef int (*key_file_fn)(void *ctx, const char *file, int type);
typedef int (*check_key_fn)(const void *ctx);

void *SSL_CTX_new(const void *method)
{
    ctx_new_fn real = (ctx_new_fn)dlsym(RTLD_NEXT, "SSL_CTX_new");
    if (real == NULL) {
        fprintf(stderr, "client_cert_shim: SSL_CTX_new not found\n");
        exit(70);
    }
    void *ctx = real(method);
    const char *crt = getenv("BENCH_CLIENT_CERT");
    const char *key = getenv("BENCH_CLIENT_KEY");
    if (ctx == NULL || crt == NULL || key == NULL)
        return ctx;
    chain_file_fn chain = (chain_file_fn)dlsym(RTLD_NEXT, "SSL_CTX_use_certificate_chain_file");
    key_file_fn pkey = (key_file_fn)dlsym(RTLD_NEXT, "SSL_CTX_use_PrivateKey_file");
    check_key_fn check = (check_key_fn)dlsym(RTLD_NEXT, "SSL_CTX_check_private_key");
    if (chain == NULL || pkey == NULL || check == NULL
        || chain(ctx, crt) != 1 || pkey(ctx, key, SSL_FILETYPE_PEM) != 1 || check(ctx) != 1) {
        fprintf(stderr, "client_cert_shim: cannot load client certificate %s / key %s\n", crt, key);
        exit(70);
    }
    if (getenv("BENCH_SHIM_VERBOSE") != NULL)
        fprintf(stderr, "client_cert_shim: loaded %s into SSL_CTX %p\n", crt, ctx);
    return ctx;
}
