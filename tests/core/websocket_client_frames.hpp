// Test support: frames as a WebSocket client sends them (masked, RFC 6455
// 5.3), and an upgrade request, for tests that play the client by hand.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lifeline/engine/websocket.hpp"

namespace lifeline::testing_ws {

inline std::vector<std::uint8_t> masked(ws::Opcode opcode, std::string_view payload, bool fin) {
    std::vector<std::uint8_t> out;
    out.push_back(static_cast<std::uint8_t>((fin ? 0x80 : 0) | static_cast<std::uint8_t>(opcode)));
    const std::size_t n = payload.size();
    if (n < 126) {
        out.push_back(static_cast<std::uint8_t>(0x80 | n));
    } else if (n <= 0xFFFF) {
        out.insert(out.end(), {0xFE, static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)});
    } else {
        out.push_back(0xFF);
        for (int shift = 56; shift >= 0; shift -= 8)
            out.push_back(static_cast<std::uint8_t>(std::uint64_t{n} >> shift));
    }
    const std::uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    out.insert(out.end(), mask, mask + 4);
    for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(payload[i]) ^ mask[i % 4]);
    return out;
}

inline std::string upgrade_request(std::string_view target) {
    return "GET " + std::string(target) +
           " HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
}

}  // namespace lifeline::testing_ws
