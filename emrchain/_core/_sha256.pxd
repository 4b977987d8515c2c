# OpenSSL's low-level SHA-256, declared once for the compiled core's modules.
#
# Deprecated in OpenSSL 3 but the fastest here for ~250-byte inputs (~185 ns against ~440 ns
# for SHA256() or EVP_Digest, which fetch the algorithm per call, and ~235 ns for a
# pre-fetched EVP_MD with a reused context); it uses the CPU's SHA extensions.

cdef extern from "<openssl/sha.h>" nogil:
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *ctx)
    int SHA256_Update(SHA256_CTX *ctx, const void *data, size_t length)
    int SHA256_Final(unsigned char *digest, SHA256_CTX *ctx)
