/* Whether a TLS peer's certificate names the host the client meant to reach: OpenSSL's own
 * RFC 6125 matching (X509_check_host, X509_check_ip_asc for an IP address), for the HTTP client
 * outside nginx. LuaSec (LuaSocket's TLS) checks the certificate chain but not the name, and
 * matching names by hand (wildcards, IDNA, IP literals) is where clients go wrong. Inside nginx
 * the cosocket's sslhandshake does this check itself. */
#include <limits.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "compat.h"
#include "x509.h"

/* x509_check_host(pem, host) -> true, or false and why. pem: the peer certificate as PEM text
 * (LuaSec's cert:pem()); host: a DNS name or an IP address literal. Nothing of OpenSSL's is
 * held across a Lua call, so a Lua error cannot leak it. */
static int x509_check_host(lua_State *L)
{
    size_t pem_len, host_len;
    const char *pem = luaL_checklstring(L, 1, &pem_len);
    const char *host = luaL_checklstring(L, 2, &host_len);
    BIO *bio;
    X509 *cert;
    int matched = -1, is_ip;
    const char *problem = NULL;

    luaL_argcheck(L, host_len > 0 && strlen(host) == host_len, 2, "a host name without NUL bytes");
    if (pem_len > 1 << 20 || pem_len > (size_t)INT_MAX) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "the peer certificate is over 1 MiB");
        return 2;
    }
    is_ip = strspn(host, "0123456789.") == host_len || strchr(host, ':') != NULL;
    bio = BIO_new_mem_buf(pem, (int)pem_len);
    cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    if (!cert) {
        problem = "the peer certificate cannot be read";
    } else {
        matched = is_ip ? X509_check_ip_asc(cert, host, 0) : X509_check_host(cert, host, host_len, 0, NULL);
        if (matched == 0)
            problem = is_ip ? "the certificate is not for this IP address"
                            : "the certificate is not for this host name";
        else if (matched < 0)
            problem = "the certificate's names cannot be checked";
    }
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error(); /* leave no stale error for nginx's or LuaSec's own calls */
    if (problem) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, problem);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

void x509_register(lua_State *L)
{
    lua_pushcfunction(L, x509_check_host);
    lua_setfield(L, -2, "x509_check_host");
}
