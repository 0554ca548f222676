// Test support: a throwaway self-signed certificate (ECDSA P-256, for
// localhost, 127.0.0.1) and its key, made with the openssl command.
#pragma once

#include <string>

#include "support/netns.hpp"

namespace lifeline::testing {

// Writes `<prefix>.pem` and `<prefix>.key`; the result says how openssl ended.
inline CommandResult make_self_signed_certificate(const std::string& prefix) {
    return run_command(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
        prefix + ".key -out " + prefix + ".pem");
}

}  // namespace lifeline::testing
