// SIGINT/SIGTERM for the long-running commands (serve, connect): blocked in
// every thread from construction on, and handled by one thread that calls a
// stop function, because stop() is not async-signal-safe. Internal to src/cli.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <thread>

namespace lifeline::cli {

class StopSignals {
public:
    // Construct before any other thread starts: threads inherit the signal mask.
    StopSignals() {
        sigemptyset(&signals_);
        sigaddset(&signals_, SIGINT);
        sigaddset(&signals_, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    }
    ~StopSignals() { finish(); }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

    // Calls `stop` (once) when SIGINT or SIGTERM arrives.
    void on_signal(std::function<void()> stop) {
        thread_ = std::thread([this, stop = std::move(stop)] {
            int sig = 0;
            sigwait(&signals_, &sig);
            if (!finished_.load()) {
                received_.store(true);
                stop();
            }
        });
    }
    // The work ended on its own (or after the signal): release the waiting thread.
    void finish() {
        if (finished_.exchange(true) || !thread_.joinable()) return;
        pthread_kill(thread_.native_handle(), SIGTERM);
        thread_.join();
    }
    bool received() const { return received_.load(); }

private:
    sigset_t signals_{};
    std::atomic<bool> finished_{false};
    std::atomic<bool> received_{false};
    std::thread thread_;
};

}  // namespace lifeline::cli
