// `lifeline serve --tls-cert/--tls-key` (OpenSSL through memory BIOs): wss://
// with python3-websockets (echo, liveness through many heartbeats, SIGSTOP =
// heartbeat_timeout), raw mode over TLS with Python's ssl module, plaintext
// at a TLS port and a handshake that stalls each costing only their own
// connection, and certificate mistakes refused at start-up with the file named.
// The certificates are made by the test with the openssl command.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "support/bounds.hpp"
#include "support/certificate.hpp"
#include "support/child_process.hpp"
#include "support/netns.hpp"

namespace lifeline {
namespace {

using Json = nlohmann::json;
using lifeline::testing::ChildProcess;
using lifeline::testing::run_command;
using namespace std::chrono_literals;

constexpr const char* kPython = "/usr/bin/python3";

class Tls : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = std::filesystem::temp_directory_path() / ("lifeline-tls-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
        const auto make = [](const std::string& name) {
            return testing::make_self_signed_certificate((dir_ / name).string());
        };
        const testing::CommandResult a = make("server");
        ASSERT_EQ(a.status, 0) << "openssl (scripts/install-deps.sh) could not make a certificate: " << a.output;
        ASSERT_EQ(make("other").status, 0);
    }
    static void TearDownTestSuite() {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
    static std::string file(const std::string& name) { return (dir_ / name).string(); }

    void start(const std::vector<std::string>& mode_flags) {
        std::vector<std::string> argv = {LIFELINE_BINARY, "serve",           "--listen",
                                         "127.0.0.1:0",   "--tls-cert",      file("server.pem"),
                                         "--tls-key",     file("server.key")};
        argv.insert(argv.end(), mode_flags.begin(), mode_flags.end());
        server_ = std::make_unique<ChildProcess>(argv);
        const std::optional<Json> listening = server_->wait_for_event("listening", 10s);
        ASSERT_TRUE(listening) << "the TLS server did not start";
        const std::string address = listening->value("address", "");
        port_ = address.substr(address.rfind(':') + 1);
    }

    std::optional<Json> await(const std::string& kind, const std::string& id, std::chrono::milliseconds limit) {
        return server_->seen_or_wait_for(
            [&](const Json& j) { return j.value("event", "") == kind && j.value("id", "") == id; }, limit);
    }

    static inline std::filesystem::path dir_;
    std::unique_ptr<ChildProcess> server_;
    std::string port_;
};

TEST_F(Tls, WssEchoesStaysAliveAndAStoppedClientIsHeartbeatTimeout) {
    ASSERT_NO_FATAL_FAILURE(start({"--mode", "websocket", "--heartbeat", "200ms", "--timeout", "1s", "--echo"}));
    ChildProcess client(
        {kPython, WEBSOCKET_CLIENT, "wss://127.0.0.1:" + port_ + "/live?id=secure-1", file("server.pem")});
    ASSERT_TRUE(client.wait_for_line("echo message 2 é", 10s)) << "no echo over wss://";
    EXPECT_FALSE(await("dead", "secure-1", 3s)) << "a live wss:// client was declared dead";
    client.signal(SIGSTOP);
    const std::optional<Json> dead = await("dead", "secure-1", 1s + testing::kSchedulingSlack);
    ASSERT_TRUE(dead);
    EXPECT_EQ(dead->value("reason", ""), "heartbeat_timeout");
    client.signal(SIGCONT);
}

TEST_F(Tls, RawModeOverTlsAndPlaintextOrAStalledHandshakeCostOnlyThemselves) {
    ASSERT_NO_FATAL_FAILURE(start({"--mode", "raw", "--echo"}));
    // Python's ssl: a TLS client of a raw echo server, kept open while the others misbehave.
    const std::string script =
        "import socket,ssl,sys,time\n"
        "c=ssl.create_default_context(cafile=sys.argv[2])\n"
        // CPython ignores a missing close_notify by default: see it.
        "c.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF\n"
        "s=c.wrap_socket(socket.create_connection(('127.0.0.1',int(sys.argv[1]))),server_hostname='localhost',"
        "suppress_ragged_eofs=False)\n"
        "s.sendall(b'over tls'); print('echo', s.recv(100).decode(), flush=True)\n"
        "sys.stdin.readline(); s.sendall(b'again'); print('echo', s.recv(100).decode(), flush=True)\n"
        // Larger than one TLS record (16 KiB), and than one read.
        "big=b'y'*100000; s.sendall(big); got=b''\n"
        "while len(got) < len(big): got += s.recv(65536)\n"
        "print('big echo', len(got), got == big, flush=True)\n"
        // The server's shutdown: an orderly TLS end (close_notify), not a truncation.
        "sys.stdin.readline()\n"
        "try:\n"
        "  print('after close', repr(s.recv(100)), flush=True)\n"
        "except ssl.SSLError as e:\n"
        "  print('after close', type(e).__name__, flush=True)\n";
    ChildProcess tls_client({kPython, "-c", script, port_, file("server.pem")});
    ASSERT_TRUE(tls_client.wait_for_line("echo over tls", 10s));

    const testing::CommandResult plain =
        run_command("printf 'GET / HTTP/1.1\\r\\n\\r\\n' | timeout 5 " + std::string(kPython) +
                    " -c \"import socket,sys; s=socket.create_connection(('127.0.0.1'," + port_ +
                    ")); s.sendall(sys.stdin.buffer.read()); print(len(s.recv(100)))\"");
    EXPECT_EQ(plain.status, 0) << plain.output;
    const std::optional<Json> error = server_->seen_or_wait_for(
        [](const Json& j) { return j.value("event", "") == "error" && j.value("message", "").find("TLS") == 0; }, 5s);
    ASSERT_TRUE(error) << "plaintext at a TLS port is not reported";
    const std::optional<Json> closed = server_->seen_or_wait_for(
        [](const Json& j) { return j.value("event", "") == "closed" && j.value("reason", "") == "protocol_error"; },
        5s);
    EXPECT_TRUE(closed);

    tls_client.write_stdin("\n");
    EXPECT_TRUE(tls_client.wait_for_line("echo again", 10s)) << "the TLS client was disturbed";
    EXPECT_TRUE(tls_client.wait_for_line("big echo 100000 True", 10s)) << "a write of many TLS records";
    tls_client.write_stdin("\n");
    server_->signal(SIGTERM);
    EXPECT_TRUE(tls_client.wait_for_line("after close b''", 10s)) << "no close_notify: the client saw a truncation";
}

class TlsStalled : public Tls, public ::testing::WithParamInterface<std::string> {};

// Raw mode too: a raw session is open at accept, so only the TLS deadline ends it.
TEST_P(TlsStalled, AHandshakeThatStallsMeetsTheHandshakeDeadline) {
    ASSERT_NO_FATAL_FAILURE(start({"--mode", GetParam(), "--handshake-timeout", "500ms"}));
    // Half a ClientHello's record header, then nothing.
    ChildProcess stalled({kPython, "-c",
                          "import socket,sys,time; s=socket.create_connection(('127.0.0.1'," + port_ +
                              ")); s.sendall(b'\\x16\\x03'); print('sent', flush=True); time.sleep(30)"});
    ASSERT_TRUE(stalled.wait_for_line("sent", 10s));
    const std::optional<Json> closed = server_->wait_for([](const Json& j) { return j.value("event", "") == "closed"; },
                                                         500ms + testing::kSchedulingSlack);
    ASSERT_TRUE(closed) << "a stalled TLS handshake was never ended";
    EXPECT_EQ(closed->value("reason", ""), "protocol_error") << closed->dump();
}

INSTANTIATE_TEST_SUITE_P(Modes, TlsStalled, ::testing::Values("framed", "raw", "websocket"));

TEST_F(Tls, CertificateMistakesAreRefusedAtStartWithTheFileNamed) {
    const std::string serve = std::string(LIFELINE_BINARY) + " serve --listen 127.0.0.1:0 ";
    const testing::CommandResult mismatch =
        run_command(serve + "--tls-cert " + file("server.pem") + " --tls-key " + file("other.key"));
    EXPECT_NE(mismatch.status, 0);
    EXPECT_NE(mismatch.output.find("--tls-key " + file("other.key")), std::string::npos) << mismatch.output;
    EXPECT_NE(mismatch.output.find("mismatch"), std::string::npos) << mismatch.output;
    const testing::CommandResult missing =
        run_command(serve + "--tls-cert /nonexistent.pem --tls-key " + file("server.key"));
    EXPECT_NE(missing.status, 0);
    EXPECT_NE(missing.output.find("/nonexistent.pem"), std::string::npos) << missing.output;
    const testing::CommandResult alone = run_command(serve + "--tls-cert " + file("server.pem") + " --mode raw");
    EXPECT_NE(alone.status, 0);
    EXPECT_NE(alone.output.find("tls_cert and tls_key go together"), std::string::npos) << alone.output;
}

}  // namespace
}  // namespace lifeline
