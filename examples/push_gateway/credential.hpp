// The push gateway's client credential: lowercase hex HMAC-SHA256(key, id).
// Header-only because three programs share it: the gateway checks it, the
// client driver and the end-to-end test mint it.
#pragma once

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <string>
#include <string_view>

namespace push_gateway {

inline constexpr std::size_t kCredentialSize = 64;  // 32 bytes of SHA-256 as hex.

// The credential the holder of `key` issues for `id` (64 lowercase hex digits).
inline std::string credential_for(std::string_view key, std::string_view id) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int length = 0;
    // Key and id are bytes, so an empty key is allowed (the command line
    // refuses it): HMAC's one-shot form needs no context to clean up.
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(id.data()),
         id.size(), mac.data(), &length);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(2 * length);
    for (unsigned int i = 0; i < length; ++i) {
        hex.push_back(kHex[mac[i] >> 4]);
        hex.push_back(kHex[mac[i] & 0x0f]);
    }
    return hex;
}

// True when `presented` is id's credential. CRYPTO_memcmp takes the same
// time wherever the first wrong byte is, so a client cannot guess the MAC
// one byte at a time; only the length (public: always 64) is compared early.
inline bool credential_matches(std::string_view key, std::string_view id, std::string_view presented) {
    const std::string expected = credential_for(key, id);
    if (presented.size() != expected.size()) return false;
    return CRYPTO_memcmp(expected.data(), presented.data(), expected.size()) == 0;
}

}  // namespace push_gateway
