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
    const ws::Mask mask = {0x12, 0x34, 0x56, 0x78};
    ws::append_frame(out, opcode, {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()}, fin, &mask);
    return out;
}

inline std::string upgrade_request(std::string_view target) {
    return "GET " + std::string(target) +
           " HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
}

}  // namespace lifeline::testing_ws
